//! Reading one category through the secondary index (issue 19): 1,000
//! events of one category among N events in 1,000 categories (default 1M;
//! `ANNALS_BENCH_EVENTS`), the category's events spread over the whole log
//! (every 1,000th position). Beside, in the same run:
//! - SQLite with an index on `(category, position)`: `WHERE category = ?
//!   AND position >= ? ORDER BY position LIMIT 1000`, every column read,
//!   copied into owned values and (beside the visitor) borrowed from the row;
//! - the ceiling of Annals' own read path: the visitor over 1,000
//!   *consecutive* events (no index work, no scattered access).
//!
//! Both stores in the page cache (each read once before timing). Medians of
//! `ANNALS_BENCH_REPS` (default 200) repetitions, then ratios.
//! `cargo bench -p annals-benches --bench category_read`.

use std::ops::ControlFlow;
use std::time::Instant;

use annals::{Durability, EventData, ExpectedVersion, Options, Store};
use annals_benches::payload;
use rusqlite::Connection;

const CATEGORIES: u64 = 1_000;
const READ: usize = 1_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn stream_of(n: u64) -> String {
    format!("cat{}-{}", n % CATEGORIES, (n / CATEGORIES) % 10)
}

fn build_annals(dir: &std::path::Path, events: u64) -> Store {
    let options = Options::default().durability(Durability::Buffered);
    {
        let store = Store::open_with(dir, options.clone()).unwrap();
        let mut n = 0;
        while n < events {
            let appends = (n..(n + 1_000).min(events))
                .map(|i| {
                    (
                        stream_of(i),
                        ExpectedVersion::Any,
                        vec![EventData::new("Happened", payload(i, 100))],
                    )
                })
                .collect();
            store.append_many(appends).unwrap().unwrap();
            n += 1_000;
        }
    }
    // Reopened: the indexes as a store that has been running has them.
    Store::open_with(dir, options).unwrap()
}

fn build_sqlite(path: &std::path::Path, events: u64) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE events(
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            category TEXT NOT NULL,
            version INTEGER NOT NULL,
            type TEXT NOT NULL,
            data BLOB NOT NULL);
         CREATE INDEX by_category ON events(category, position);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        for i in 0..events {
            let stream = stream_of(i);
            let category = format!("cat{}", i % CATEGORIES);
            insert
                .execute(rusqlite::params![
                    i as i64,
                    stream,
                    category,
                    (i / CATEGORIES / 10) as i64,
                    "Happened",
                    payload(i, 100)
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    conn
}

fn annals_category(store: &Store, category: &str, from: u64) -> (usize, u64) {
    let mut bytes = 0u64;
    let read = store
        .read_category_with(category, from, READ, |e| {
            bytes += e.data.len() as u64;
            ControlFlow::Continue(())
        })
        .unwrap();
    (read, bytes)
}

fn annals_category_owned(store: &Store, category: &str, from: u64) -> (usize, u64) {
    let events = store.read_category(category, from, READ).unwrap();
    let bytes = events.iter().map(|e| e.data.len() as u64).sum();
    (events.len(), bytes)
}

fn annals_consecutive(store: &Store, from: u64) -> (usize, u64) {
    let mut bytes = 0u64;
    let read = store
        .read_all_with(from, READ, |e| {
            bytes += e.data.len() as u64;
            ControlFlow::Continue(())
        })
        .unwrap();
    (read, bytes)
}

fn sqlite_category(conn: &Connection, category: &str, from: u64) -> (usize, u64) {
    sqlite_category_rows(conn, category, from, |row| {
        let _stream: String = row.get(1).unwrap();
        let _type: String = row.get(3).unwrap();
        let data: Vec<u8> = row.get(4).unwrap();
        data.len()
    })
}

/// The category's rows from `from` on, each handed to `read` (which
/// returns the data's length); (rows, data bytes).
fn sqlite_category_rows(
    conn: &Connection,
    category: &str,
    from: u64,
    mut read: impl FnMut(&rusqlite::Row<'_>) -> usize,
) -> (usize, u64) {
    let mut query = conn
        .prepare_cached(
            "SELECT position, stream, version, type, data FROM events \
             WHERE category = ?1 AND position >= ?2 ORDER BY position LIMIT 1000",
        )
        .unwrap();
    let mut rows = query
        .query(rusqlite::params![category, from as i64])
        .unwrap();
    let (mut count, mut bytes) = (0usize, 0u64);
    while let Ok(Some(row)) = rows.next() {
        bytes += read(row) as u64;
        count += 1;
    }
    (count, bytes)
}

/// [`sqlite_category`] reading every column borrowed from the row (no
/// copy): the like-for-like peer of Annals' visitor.
fn sqlite_category_borrowed(conn: &Connection, category: &str, from: u64) -> (usize, u64) {
    sqlite_category_rows(conn, category, from, |row| {
        let _stream = row.get_ref(1).unwrap().as_str().unwrap();
        let _type = row.get_ref(3).unwrap().as_str().unwrap();
        row.get_ref(4).unwrap().as_blob().unwrap().len()
    })
}

/// Median time of `reps` runs of `op` (after one untimed run), in µs; and
/// what `op` returned.
fn median_us(reps: u64, mut op: impl FnMut() -> (usize, u64)) -> (f64, (usize, u64)) {
    let result = op();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            let got = op();
            let elapsed = start.elapsed().as_secs_f64() * 1e6;
            assert_eq!(got, result);
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], result)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events = env("ANNALS_BENCH_EVENTS", 1_000_000);
    let reps = env("ANNALS_BENCH_REPS", 200);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let store = build_annals(&dir.path().join("annals"), events);
    eprintln!("annals store: {events} events in {:?}", started.elapsed());
    let started = Instant::now();
    let sqlite = build_sqlite(&dir.path().join("sqlite.db"), events);
    eprintln!("sqlite store: {events} rows in {:?}", started.elapsed());
    let report = store.index_report();
    println!(
        "annals secondary index on open: checkpoint {}, replayed {}",
        report.secondary.checkpoint, report.secondary.replayed
    );
    let secondary_bytes: u64 = std::fs::read_dir(dir.path().join("annals"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("secondary-"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let log_bytes: u64 = std::fs::read_dir(dir.path().join("annals"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    println!("secondary index files: {secondary_bytes} bytes; log segments: {log_bytes} bytes");
    // What the secondary index costs off the write path: opening with it
    // persisted, and opening after its files were removed (the whole log is
    // then scanned into the secondary memtable: the work the merge thread
    // does per event during appends).
    drop(store);
    let reopen = |what: &str| {
        let started = Instant::now();
        let store = Store::open_with(
            dir.path().join("annals"),
            Options::default().durability(Durability::Buffered),
        )
        .unwrap();
        let took = started.elapsed();
        println!(
            "open, {what}: {took:?} (secondary replayed {})",
            store.index_report().secondary.replayed
        );
        (store, took)
    };
    let (store, persisted) = reopen("secondary index persisted");
    drop(store);
    for entry in std::fs::read_dir(dir.path().join("annals")).unwrap() {
        let entry = entry.unwrap();
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("secondary-")
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let (store, rebuilt) = reopen("secondary index files removed");
    println!(
        "secondary index built from the log: {:.0} ns/event ({events} events)",
        rebuilt.saturating_sub(persisted).as_nanos() as f64 / events as f64
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "read 1,000 events of one category", "annals µs", "sqlite µs", "ratio"
    );
    for (label, category, from) in [
        ("cat500 from position 0", "cat500", 0),
        ("cat7 from a third of the log", "cat7", events / 3),
    ] {
        let (annals, a) = median_us(reps, || annals_category(&store, category, from));
        let (owned, o) = median_us(reps, || annals_category_owned(&store, category, from));
        let (sqlite_us, s) = median_us(reps, || sqlite_category(&sqlite, category, from));
        let (borrowed_us, b) =
            median_us(reps, || sqlite_category_borrowed(&sqlite, category, from));
        let (ceiling, c) = median_us(reps, || annals_consecutive(&store, from));
        assert_eq!(a, s, "both read the same events");
        assert_eq!(o, s);
        assert_eq!(b, s);
        assert_eq!(c.0, READ);
        println!("{label}: {} events read", a.0);
        println!(
            "{:<44} {annals:>12.1} {sqlite_us:>12.1} {:>9.1}x",
            format!("{label} (visitor)"),
            sqlite_us / annals
        );
        println!(
            "{:<44} {annals:>12.1} {borrowed_us:>12.1} {:>9.1}x",
            format!("{label} (visitor vs SQLite borrowed)"),
            borrowed_us / annals
        );
        println!(
            "{:<44} {owned:>12.1} {sqlite_us:>12.1} {:>9.1}x",
            format!("{label} (owned events)"),
            sqlite_us / owned
        );
        println!(
            "{:<44} {ceiling:>12.1} {:>12} {:>9.2}x of ceiling",
            "  ceiling: 1,000 consecutive events (visitor)",
            "",
            ceiling / annals
        );
    }
}
