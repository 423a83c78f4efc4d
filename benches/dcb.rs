//! Issue 22 (Dynamic Consistency Boundary) in one run: conditional appends'
//! commits/s beside plain appends' (Annals durable and buffered, SQLite,
//! with the plain-file ceiling), `read_query` of one tag, and of a common
//! tag and a rare one, among many events beside SQLite with a tags table
//! and index (owned and borrowed forms of both, the same fields read, with
//! the ceiling of copying the same records' bytes), and a condition check's cost as
//! the number of events matching its query grows; the one-tag rows again
//! with the query cache on. A custom harness:
//! commits/s under concurrency and medians, printed as lines.
//!
//! `cargo bench -p annals-benches --bench dcb` (ANNALS_BENCH_SECS: seconds
//! per throughput run, default 3; ANNALS_DCB_EVENTS: events in the read
//! store, default 1,000,000; ANNALS_DCB_THREADS: writers, default 4;
//! ANNALS_DCB_ROUNDS: interleaved rounds of the durable throughput runs,
//! default 3; ANNALS_DCB_BUFFERED_ROUNDS: rounds of the buffered ones,
//! default 5; ANNALS_DCB_READS: timed repetitions per read median, default
//! 21; ANNALS_DCB_READ_ROUNDS: rounds of the read rows, default 3). With
//! ANNALS_DCB_ROUNDS=0 ANNALS_DCB_BUFFERED_ROUNDS=0 only the read rows and
//! the condition lookups run (the throughput sections are not printed).

use std::time::Duration;

use annals::{Durability, Options, Store};
use annals_benches::dcb::{
    annals_appends, annals_read_owned, annals_read_visit, build_pairs, build_tagged,
    condition_lookup_cost, median_us, sqlite_appends, sqlite_read_borrowed, sqlite_read_owned,
    tags_query, PlainCopy, ReadSum, ReadTags, DATA_BYTES, WRITTEN_SINCE,
};
use annals_benches::suite::writes::{frame_bytes, plain_commits};
use rusqlite::Connection;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (sorted in place); 0 when empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `lo..hi` of `v`.
fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}..{hi:.2}")
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = Duration::from_secs_f64(env("ANNALS_BENCH_SECS", 3.0));
    let events: u64 = env("ANNALS_DCB_EVENTS", 1_000_000);
    let threads: usize = env("ANNALS_DCB_THREADS", 4);

    // The disk is shared and its fsync latency drifts: the workloads run
    // interleaved, round after round, and each is reported as its median.
    let rounds: usize = env("ANNALS_DCB_ROUNDS", 3);
    let bytes = frame_bytes(1, "student-0", "StudentSubscribed") + DATA_BYTES / 2;
    let mut runs: [Vec<f64>; 5] = Default::default();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "running: appends, round {}/{rounds}, {threads} threads, {secs:?} each",
            round + 1
        );
        // Each goes first every other round (the first run of a round meets
        // a disk the round before left busy).
        let (plain, conditional) = if round % 2 == 0 {
            let plain = annals_appends(threads, secs, false, Durability::Fsync).ops_per_sec();
            (
                plain,
                annals_appends(threads, secs, true, Durability::Fsync).ops_per_sec(),
            )
        } else {
            let conditional = annals_appends(threads, secs, true, Durability::Fsync).ops_per_sec();
            (
                annals_appends(threads, secs, false, Durability::Fsync).ops_per_sec(),
                conditional,
            )
        };
        eprintln!(
            "  round {}: plain {plain:.0}, conditional {conditional:.0}",
            round + 1
        );
        ratios.push(conditional / plain);
        runs[0].push(plain);
        runs[1].push(conditional);
        runs[2].push(sqlite_appends(threads, secs, false).ops_per_sec());
        runs[3].push(sqlite_appends(threads, secs, true).ops_per_sec());
        runs[4].push(plain_commits(threads, secs, bytes).ops_per_sec());
    }
    let medians = runs.each_mut().map(|v| median(v));
    let ratio = median(&mut ratios);
    if rounds > 0 {
        print_durable(threads, rounds, medians, ratio);
    }

    // Buffered: commits are CPU-bound (no fsync), so the condition's own
    // cost shows through.
    let buffered_rounds: usize = env("ANNALS_DCB_BUFFERED_ROUNDS", 5);
    let (mut buffered, mut buffered_ratios) = ([Vec::new(), Vec::new()], Vec::new());
    for round in 0..buffered_rounds {
        eprintln!(
            "running: buffered appends, round {}/{buffered_rounds}",
            round + 1
        );
        let run = |conditional| {
            annals_appends(threads, secs, conditional, Durability::Buffered).ops_per_sec()
        };
        let (plain, conditional) = if round % 2 == 0 {
            let plain = run(false);
            (plain, run(true))
        } else {
            let conditional = run(true);
            (run(false), conditional)
        };
        eprintln!(
            "  round {}: plain {plain:.0}, conditional {conditional:.0}",
            round + 1
        );
        buffered[0].push(plain);
        buffered[1].push(conditional);
        buffered_ratios.push(conditional / plain);
    }
    let ratio_spread = spread(&buffered_ratios);
    let [buffered_plain, buffered_conditional] = buffered.each_mut().map(|v| median(v));
    let buffered_ratio = median(&mut buffered_ratios);
    if buffered_rounds > 0 {
        println!(
        "commits/s, {threads} threads, Durability::Buffered (no fsync), median of {buffered_rounds} interleaved rounds:"
    );
        println!("  annals plain        {buffered_plain:>10.0}");
        println!(
        "  annals conditional  {buffered_conditional:>10.0}  (median per-round ratio to plain {buffered_ratio:.2}x, per-round ratios {ratio_spread})"
    );
    }

    eprintln!("running: building {events} tagged events in both stores");
    let dir = tempfile::tempdir().expect("temp dir");
    let students = 10_000u64;
    let (store, mut conn) = build_tagged(dir.path(), events, students);
    let reads: usize = env("ANNALS_DCB_READS", 21);
    let read_rounds: usize = env("ANNALS_DCB_READ_ROUNDS", 3);
    let rows = ReadRows {
        reads,
        read_rounds,
        events,
        // Each record of the read store takes 210 bytes in its segment.
        plain: PlainCopy::new(events, 210),
    };
    // Event n carries student:{n % 10000} and course:{n % 1000}: course:42
    // is on 10x the events student:42 is on, and on all of those. The
    // first two read the same tags every time (their records stay in the
    // CPU's caches and in SQLite's page cache); the third reads a
    // different student's events each time, as a command handler deciding
    // for one student after another does (`ReadTags::Rotating`).
    let reads_of: [(&str, ReadTags); 3] = [
        (
            "one tag student:42, query cache off",
            ReadTags::Fixed(&["student:42"], 42),
        ),
        (
            "course:42 AND student:42 (first tag 10x commoner), query cache off",
            ReadTags::Fixed(&["course:42", "student:42"], 42),
        ),
        (
            "one tag, a different student each read, query cache off",
            ReadTags::Rotating { students },
        ),
    ];
    for (what, tags) in reads_of {
        rows.read(what, &store, &conn, tags, students as usize);
    }
    // The same store reopened with the default options, the query cache on
    // (`Options::query_cache_bytes`, 2 MiB: what SQLite's default page
    // cache, `cache_size` -2000 KiB, holds on the SQLite side, which reads
    // through it): the first row reads one tag again and
    // again (a decide loop's reads), served from the cache after the
    // second (the first notes the positions, the second copies); in the
    // second row, each of the visitor's reads is a student's first (it
    // misses and notes), and the owned form's is the same student's second,
    // 20,100 events after its first: by then those events have overwritten
    // nearly every note in the 4,096 slots of 2 MiB, so it mostly notes
    // again rather than copies (the cost of the cache to reads that do not
    // repeat; a copy's cost is in `docs/PERFORMANCE.md`).
    store.close().expect("close");
    let options = Options::default();
    assert_eq!(options.query_cache_bytes, annals::QUERY_CACHE_BYTES_DEFAULT);
    let store = Store::open_with(dir.path().join("annals"), options).expect("reopen");
    let cached: [(&str, ReadTags); 2] = [
        (
            "one tag student:42, query cache on (the default, 2 MiB)",
            ReadTags::Fixed(&["student:42"], 42),
        ),
        (
            "one tag, a different student each read, query cache on (visitor: first reads; owned: second reads, 20,100 events later, their notes mostly overwritten)",
            ReadTags::Rotating { students },
        ),
    ];
    for (what, tags) in cached {
        let before = store.query_cache_stats();
        rows.read(what, &store, &conn, tags, students as usize);
        let after = store.query_cache_stats();
        let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
        println!(
            "  query cache over this row's Annals reads: {hits} events served, {misses} read from the log ({:.1}% served), {} copies kept; it holds {} events, {} of {} bytes",
            100.0 * hits as f64 / (hits + misses).max(1) as f64,
            after.kept - before.kept,
            after.entries,
            after.bytes,
            after.budget
        );
    }
    {
        // Event n carries a:{n % 100}, b:{n % 101} and c:{n % 7}: an a or
        // b tag is on 1 % of the events, a and b together on 0.01 % (n =
        // 10003 mod 10100), a c on 1/7.
        eprintln!("running: building {events} events tagged a:, b:, c: in both stores");
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, conn) = build_pairs(dir.path(), events);
        let tags = ReadTags::Fixed(&["a:3", "b:4"], 10_003);
        let what = "a:3 AND b:4 (each on 1% of the events, together on 0.01%)";
        rows.read(what, &store, &conn, tags, 10_100);
        // n % 100 == 3 and n % 7 == 4: n = 403 mod 700.
        let tags = ReadTags::Fixed(&["a:3", "c:4"], 403);
        let what = "a:3 AND c:4 (c 14x as common as a, together on 1/700)";
        rows.read(what, &store, &conn, tags, 700);
    }

    println!(
        "condition lookup ({WRITTEN_SINCE} non-matching events after `after`, N matches at or below it), median of {reads}:"
    );
    for (tag, matches) in [
        ("course:none", 0),
        ("student:42", events / students),
        ("course:7", events / 1000),
    ] {
        let (annals, sqlite) = condition_lookup_cost(&store, &mut conn, tag, reads);
        println!("  N = {matches:>7}: annals {annals:>9.2} us, sqlite {sqlite:>9.2} us");
    }
}

/// The read rows' settings: how many reads per round, how many rounds,
/// and the physical ceiling (copying records out of memory).
struct ReadRows {
    reads: usize,
    read_rounds: usize,
    events: u64,
    plain: PlainCopy,
}

impl ReadRows {
    /// Times the reads of `tags` on every side, round after round, and
    /// prints the medians: Annals' visitor and owned reads beside SQLite's
    /// borrowed and owned rows, and the ceiling (the matches' records,
    /// `stride` records apart).
    fn read(&self, what: &str, store: &Store, conn: &Connection, tags: ReadTags, stride: usize) {
        let (reads, read_rounds, events) = (self.reads, self.read_rounds, self.events);
        let matches = annals_read_visit(store, &tags_query(&tags.at(0).0)).0;
        let mut rows: [Vec<f64>; 5] = Default::default();
        for round in 0..read_rounds {
            // Every side reads the same tags in the same order; each round
            // starts where the one before ended.
            let start = round * (reads + 1);
            let mut timed = |i: usize, op: &mut dyn FnMut(&[String], usize) -> ReadSum| {
                let mut read = start;
                let (first_tags, first_record) = tags.at(read);
                let mut got = op(&first_tags, first_record);
                let us = median_us(reads, || {
                    read += 1;
                    let (tags, first_record) = tags.at(read);
                    got = op(&tags, first_record);
                });
                rows[i].push(us);
                got
            };
            let want = timed(0, &mut |tags, _| {
                annals_read_visit(store, &tags_query(tags))
            });
            let got = [
                timed(1, &mut |tags, _| {
                    annals_read_owned(store, &tags_query(tags))
                }),
                timed(2, &mut |tags, _| sqlite_read_borrowed(conn, tags)),
                timed(3, &mut |tags, _| sqlite_read_owned(conn, tags)),
            ];
            assert!(
                got.iter().all(|&g| g == want),
                "{what}: every side reads the same: {want:?} vs {got:?}"
            );
            timed(4, &mut |_, first| self.plain.read(first, stride, matches));
            eprintln!(
                "  {what}, round {}: {:?}",
                round + 1,
                rows.iter()
                    .map(|r| r.last().copied().unwrap_or(0.0))
                    .collect::<Vec<_>>()
            );
        }
        let spreads: Vec<String> = rows.iter().map(|r| spread(r)).collect();
        let [visit, owned, sqlite_borrowed, sqlite_owned, ceiling] =
            rows.each_mut().map(|v| median(v));
        println!(
            "read_query, {what}: {matches} matches among {events} events, median of {read_rounds} rounds of medians of {reads} (spread of the rounds in brackets):"
        );
        println!(
            "  annals visitor (read_query_with)   {visit:>9.1} us [{}]  sqlite borrowed {sqlite_borrowed:>9.1} us [{}]  {:.2}x",
            spreads[0], spreads[2], sqlite_borrowed / visit
        );
        println!(
            "  annals owned (read_query)          {owned:>9.1} us [{}]  sqlite owned    {sqlite_owned:>9.1} us [{}]  {:.2}x",
            spreads[1], spreads[3], sqlite_owned / owned
        );
        println!(
            "  ceiling: copying the {matches} records' bytes from memory {ceiling:>9.1} us [{}] (the visitor read takes {:.1}x as long)",
            spreads[4], visit / ceiling
        );
    }
}

/// The durable throughput section: medians of Annals plain and conditional,
/// SQLite plain and conditional, and the plain-file ceiling.
fn print_durable(threads: usize, rounds: usize, medians: [f64; 5], ratio: f64) {
    let [plain, conditional, sqlite_plain, sqlite_conditional, ceiling] = medians;
    println!(
        "commits/s, {threads} threads, 1 tagged event each, median of {rounds} interleaved rounds:"
    );
    println!("  annals plain        {plain:>10.0}");
    println!(
        "  annals conditional  {conditional:>10.0}  (median per-round ratio to plain {ratio:.2}x)"
    );
    println!("  sqlite plain        {sqlite_plain:>10.0}");
    println!(
        "  sqlite conditional  {sqlite_conditional:>10.0}  (annals conditional {:.2}x)",
        conditional / sqlite_conditional
    );
    println!(
        "  plain file ceiling  {ceiling:>10.0}  (write + fdatasync per commit, per thread file)"
    );
}
