//! The backup workloads (issue 21), run by `annals-bench --backup`:
//! backup throughput of a seeded store beside `cp` of the same files
//! (the ceiling: `cp -r` then an `fsync` of every copied file, as a backup
//! syncs) and SQLite's `VACUUM INTO` of a database of the same events (the
//! peer); and 8 writers' durable commits/s alone vs during back-to-back
//! full backups, on Annals (backups without links, with links, and paced)
//! and on SQLite (during back-to-back `VACUUM INTO`), alternated in rounds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{BackupOptions, EventData, ExpectedVersion, Store};

use super::report::{Comparison, Figure};
use crate::workloads::{run_threads, Measured};
use crate::{event_id, payload, SqliteStore};

/// Bytes of data per seeded event (large, so a store of many MB builds fast).
const SEED_DATA_BYTES: usize = 2_000;
/// Events per seeding append (and per SQLite seeding transaction).
const SEED_BATCH: usize = 100;
/// Writer threads.
const WRITERS: usize = 8;
/// Pause after a measurement with a background copy, before the next.
const SETTLE: Duration = Duration::from_secs(2);

/// Sizes and durations of the backup workloads.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Approximate bytes of events in the seeded stores.
    pub store_bytes: u64,
    /// Seconds per writer measurement.
    pub seconds: f64,
    /// Rounds of the writer measurements (alone and during, alternated).
    pub rounds: usize,
    /// The paced backup's rate, bytes per second.
    pub rate_bytes_per_sec: u64,
}

/// What a background loop of backups did while writers ran.
#[derive(Debug, Default)]
struct Loop {
    backups: AtomicU64,
    bytes: AtomicU64,
}

/// Runs the backup workloads, calling `step` before each.
pub fn backup_workloads(config: &BackupConfig, step: &mut dyn FnMut(&str)) -> Vec<Comparison> {
    let root = tempfile::tempdir().expect("temp dir");
    let annals_dir = root.path().join("annals");
    let sqlite_path = root.path().join("peer.sqlite");
    step("seeding the stores");
    let events = seed_annals(&annals_dir, config.store_bytes);
    seed_sqlite(&sqlite_path, events);
    let mut out = throughput(root.path(), &annals_dir, &sqlite_path, config.rounds, step);
    out.extend(writers(
        root.path(),
        &annals_dir,
        &sqlite_path,
        config,
        step,
    ));
    out
}

fn seed_annals(dir: &Path, bytes: u64) -> u64 {
    let store = Store::open(dir).expect("open");
    let data = payload(7, SEED_DATA_BYTES);
    let appends = (bytes / (SEED_DATA_BYTES * SEED_BATCH) as u64).max(1);
    for i in 0..appends {
        let batch = (0..SEED_BATCH)
            .map(|_| EventData::new("Seeded", data.clone()))
            .collect();
        let written = store.append(&format!("seed-{}", i % 100), ExpectedVersion::Any, batch);
        assert!(matches!(written, Ok(Ok(_))));
    }
    store.close().expect("close");
    appends * SEED_BATCH as u64
}

fn seed_sqlite(path: &Path, events: u64) {
    let mut peer = SqliteStore::open(path).expect("sqlite");
    let data = payload(7, SEED_DATA_BYTES);
    let mut versions = vec![None::<u64>; 100];
    for i in 0..events / SEED_BATCH as u64 {
        let slot = (i % 100) as usize;
        let batch: Vec<_> = (0..SEED_BATCH as u64)
            .map(|j| (event_id(i * 1_000 + j), "Seeded", &data[..]))
            .collect();
        let ok = peer.append(&format!("seed-{slot}"), versions[slot], &batch);
        assert_eq!(ok.ok(), Some(true));
        versions[slot] = Some(versions[slot].map_or(SEED_BATCH as u64 - 1, |v| v + 100));
    }
}

fn seconds(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64()
}

/// `cp -r` of `from` to `to`, then an `fsync` of every copied file and of
/// the directory. `live`: the store is being written (an index run may be
/// merged away while `cp` lists and copies: tolerated).
fn cp_and_sync(from: &Path, to: &Path, live: bool) {
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .stderr(if live {
            std::process::Stdio::null()
        } else {
            std::process::Stdio::inherit()
        })
        .status()
        .expect("cp");
    assert!(status.success() || live);
    for entry in std::fs::read_dir(to).expect("list") {
        let path = entry.expect("entry").path();
        let synced = std::fs::File::open(&path).and_then(|f| f.sync_all());
        assert!(synced.is_ok() || live, "fsync {}", path.display());
    }
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
}

fn vacuum_into(conn: &rusqlite::Connection, to: &Path) {
    conn.execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .expect("VACUUM INTO");
}

fn throughput(
    root: &Path,
    annals_dir: &Path,
    sqlite_path: &Path,
    rounds: usize,
    step: &mut dyn FnMut(&str),
) -> Vec<Comparison> {
    let source = Store::open_read_only(annals_dir).expect("open");
    let dest = root.join("dest");
    let mb = |bytes: u64, secs: f64| bytes as f64 / secs / 1e6;
    let mut bytes = 0;
    // Per round, one after another: copied, linked, cp (seconds each).
    let mut times: Vec<[f64; 3]> = Vec::new();
    for round in 0..rounds.max(1) {
        step(&format!(
            "backup throughput: annals copied, linked, cp -r + fsync (round {})",
            round + 1
        ));
        let copy_secs = seconds(|| {
            let options = BackupOptions::default().link(false);
            bytes = source
                .backup_with(&dest, &options, &mut |_, _| {})
                .expect("backup")
                .bytes_copied;
        });
        std::fs::remove_dir_all(&dest).expect("rm");
        let link_secs = seconds(|| {
            source.backup(&dest).expect("backup");
        });
        std::fs::remove_dir_all(&dest).expect("rm");
        let cp_secs = seconds(|| cp_and_sync(annals_dir, &dest, false));
        std::fs::remove_dir_all(&dest).expect("rm");
        times.push([copy_secs, link_secs, cp_secs]);
    }
    let at = |i: usize| median(times.iter().map(|t| t[i]).collect()).unwrap_or(f64::MAX);
    step("backup throughput: sqlite VACUUM INTO");
    let peer = SqliteStore::open(sqlite_path).expect("sqlite");
    let sqlite_bytes = std::fs::metadata(sqlite_path).map_or(0, |m| m.len());
    let vacuum = root.join("vacuum.sqlite");
    let sqlite_secs = seconds(|| vacuum_into(&peer.conn, &vacuum));
    std::fs::remove_file(&vacuum).expect("rm");
    let row = |workload: String, annals: f64| Comparison {
        workload,
        unit: "MB/s",
        higher_is_better: true,
        annals: Figure::value(annals),
        sqlite: Some(Figure::value(mb(sqlite_bytes, sqlite_secs))),
        ceiling: Some(Figure::value(mb(bytes, at(2)))),
        rounds: times.len(),
        paired: None,
    };
    vec![
        row(
            format!(
                "full backup of {} MB, copied (vs cp -r + fsync)",
                bytes / 1_000_000
            ),
            mb(bytes, at(0)),
        ),
        row(
            format!(
                "full backup of {} MB, hard links (vs cp -r + fsync)",
                bytes / 1_000_000
            ),
            mb(bytes, at(1)),
        ),
    ]
}

fn writers(
    root: &Path,
    annals_dir: &Path,
    sqlite_path: &Path,
    config: &BackupConfig,
    step: &mut dyn FnMut(&str),
) -> Vec<Comparison> {
    let secs = Duration::from_secs_f64(config.seconds);
    let paced = BackupOptions::default()
        .link(false)
        .rate_bytes_per_sec(config.rate_bytes_per_sec);
    let variants: [(&str, Background); 4] = [
        (
            "backups, copied",
            Background::Backup(BackupOptions::default().link(false)),
        ),
        (
            "backups, hard links",
            Background::Backup(BackupOptions::default()),
        ),
        ("backups, copied, paced", Background::Backup(paced)),
        ("cp -r + fsync of the store", Background::Cp),
    ];
    // Each figure "during" is paired with an "alone" measured just before
    // it (this disk is shared: its speed drifts over minutes); ratios are
    // the median over the rounds of each pair's ratio.
    let mut alone_all = Vec::new();
    let mut during: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
    let mut sqlite_pairs = Vec::new();
    let store = Store::open(annals_dir).expect("open");
    for round in 0..config.rounds.max(1) {
        for (i, (label, beside)) in variants.iter().enumerate() {
            step(&format!(
                "8 writers alone, then during {label} (round {})",
                round + 1
            ));
            let alone = annals_writers(&store, root, Background::Nothing, secs).ops_per_sec();
            let with = annals_writers(&store, root, beside.clone(), secs).ops_per_sec();
            eprintln!("  {label}: alone {alone:.0}, during {with:.0} commits/s");
            // Let the disk settle (the last copy's deletion, writeback)
            // before the next "alone".
            std::thread::sleep(SETTLE);
            alone_all.push(alone);
            during[i].push((alone, with));
        }
        step(&format!(
            "8 sqlite writers, alone and during VACUUM INTO (round {})",
            round + 1
        ));
        let alone = sqlite_writers(sqlite_path, root, false, secs).ops_per_sec();
        let with = sqlite_writers(sqlite_path, root, true, secs).ops_per_sec();
        eprintln!("  sqlite: alone {alone:.0}, during {with:.0} commits/s");
        std::thread::sleep(SETTLE);
        sqlite_pairs.push((alone, with));
    }
    let ratio = |pairs: &[(f64, f64)]| {
        median(pairs.iter().map(|(a, d)| d / a.max(1.0)).collect()).unwrap_or(0.0)
    };
    let sqlite_alone = median(sqlite_pairs.iter().map(|p| p.0).collect()).unwrap_or(0.0);
    let sqlite_during = median(sqlite_pairs.iter().map(|p| p.1).collect()).unwrap_or(0.0);
    let sqlite_ratio = ratio(&sqlite_pairs);
    let rounds = config.rounds.max(1);
    let mut out = vec![Comparison {
        workload: "8 writers, durable single-event appends, alone".into(),
        unit: "commits/s",
        higher_is_better: true,
        annals: Figure::value(median(alone_all).unwrap_or(0.0)),
        sqlite: Some(Figure::value(sqlite_alone)),
        ceiling: None,
        rounds,
        paired: None,
    }];
    for ((label, _), pairs) in variants.iter().zip(&during) {
        let with = median(pairs.iter().map(|p| p.1).collect()).unwrap_or(0.0);
        out.push(Comparison {
            workload: format!(
                "8 writers during back-to-back {label}: {:.2}x of alone (sqlite during VACUUM INTO: {sqlite_ratio:.2}x)",
                ratio(pairs)
            ),
            unit: "commits/s",
            higher_is_better: true,
            annals: Figure::value(with),
            sqlite: Some(Figure::value(sqlite_during)),
            ceiling: None,
            rounds,
            paired: None,
        });
    }
    out
}

/// Runs `work` while a thread loops `background` until `stop` is set
/// (by `work`), then waits for the last `background` to finish.
fn beside<T>(
    background: impl Fn() + Send + 'static,
    stop: Arc<AtomicBool>,
    work: impl FnOnce() -> T,
) -> T {
    let handle = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            background();
        }
    });
    let out = work();
    handle.join().expect("background panicked");
    out
}

/// What runs in a loop beside the writers.
#[derive(Debug, Clone)]
enum Background {
    Nothing,
    Backup(BackupOptions),
    /// `cp -r` of the store's directory, then an `fsync` of every file.
    Cp,
}

fn annals_writers(store: &Store, root: &Path, with: Background, secs: Duration) -> Measured {
    let data = payload(1, super::DATA_BYTES);
    let writer = store.clone();
    let dir = PathBuf::from(store.location());
    let run = move || {
        run_threads(&dir, WRITERS, secs, move |t, _| {
            let event = EventData::new("Benchmarked", data.clone());
            let written = writer.append(&format!("writer-{t}"), ExpectedVersion::Any, vec![event]);
            assert!(matches!(written, Ok(Ok(_))));
            1
        })
    };
    let options = match with {
        Background::Nothing => return run(),
        Background::Backup(options) => Some(options),
        Background::Cp => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Loop::default());
    let (source, dest, flag, seen) = (
        store.clone(),
        root.join("during"),
        Arc::clone(&stop),
        Arc::clone(&stats),
    );
    let measured = beside(
        move || {
            let bytes = match &options {
                Some(options) => {
                    source
                        .backup_with(&dest, options, &mut |_, _| {})
                        .expect("backup")
                        .bytes_copied
                }
                None => {
                    cp_and_sync(Path::new(source.location()), &dest, true);
                    0
                }
            };
            seen.backups.fetch_add(1, Ordering::Relaxed);
            seen.bytes.fetch_add(bytes, Ordering::Relaxed);
            let _ = std::fs::remove_dir_all(&dest);
        },
        Arc::clone(&stop),
        || {
            let m = run();
            flag.store(true, Ordering::Relaxed);
            m
        },
    );
    eprintln!(
        "  ({} backups, {} MB copied beside the writers)",
        stats.backups.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed) / 1_000_000
    );
    measured
}

fn sqlite_writers(path: &Path, root: &Path, vacuum: bool, secs: Duration) -> Measured {
    type Slot = (SqliteStore, Option<u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..WRITERS)
            .map(|_| Mutex::new((SqliteStore::open(path).expect("sqlite"), None)))
            .collect(),
    );
    let data = payload(1, super::DATA_BYTES);
    // Fresh ids and streams for every run on the same database.
    static RUNS: AtomicU64 = AtomicU64::new(1);
    let salt = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(root);
    let run = move || {
        run_threads(&dir, WRITERS, secs, move |t, i| {
            let mut slot = conns[t].lock().expect("slot");
            let (store, version) = &mut *slot;
            let id = event_id((1 << 62) | (salt << 48) | ((t as u64) << 40) | i);
            let stream = format!("writer-{t}-{salt}");
            let ok = store.append(&stream, *version, &[(id, "Benchmarked", &data)]);
            assert_eq!(ok.ok(), Some(true));
            *version = Some(version.map_or(0, |v| v + 1));
            1
        })
    };
    if !vacuum {
        return run();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (source, dest, flag) = (
        path.to_path_buf(),
        root.join("vacuum-during.sqlite"),
        Arc::clone(&stop),
    );
    let peer = Arc::new(Mutex::new(SqliteStore::open(&source).expect("sqlite")));
    beside(
        move || {
            vacuum_into(&peer.lock().expect("peer").conn, &dest);
            let _ = std::fs::remove_file(&dest);
        },
        Arc::clone(&stop),
        || {
            let m = run();
            flag.store(true, Ordering::Relaxed);
            m
        },
    )
}

/// The median of `values` (`None` if empty).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => values.get(mid).copied(),
        _ => Some((values.get(mid - 1)? + values.get(mid)?) / 2.0),
    }
}
