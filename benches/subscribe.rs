//! Subscriptions, in one run:
//! - catch-up scan of `$all` (store in the page cache, checksums verified)
//!   through the zero-copy visitor, through a subscription, and through
//!   `read_all`, beside SQLite's `ORDER BY position` scan (every column
//!   read borrowed, as the visitor gets every field; and, as this bench
//!   first measured it, only the data column, copied) and a plain read of
//!   the same log bytes (the ceiling): events/s and GB/s of log;
//! - live delivery latency from an append's return to an idle in-process
//!   subscriber receiving the event (p50 / p99);
//! - writers' commits/s with 8 live subscribers vs none.
//!
//! `cargo bench -p annals-benches --bench subscribe` prints the figures
//! table first (`ANNALS_BENCH_SCALE=N` multiplies the store: 200,000
//! events × N), then runs the criterion groups.

use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use annals::{
    Durability, EventData, ExpectedVersion, Options, Store, SubscriptionItem, SubscriptionItemRef,
    SubscriptionOptions,
};
use annals_benches::SqliteStore;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn visitor_scan(store: &Store) -> (u64, u64) {
    let (mut events, mut bytes) = (0u64, 0u64);
    store
        .read_all_with(0, usize::MAX, |e| {
            events += 1;
            bytes += e.data.len() as u64;
            ControlFlow::Continue(())
        })
        .unwrap();
    (events, bytes)
}

fn subscription_scan(store: &Store) -> u64 {
    let mut events = 0;
    let options = SubscriptionOptions::all()
        .batch_events(1024)
        .no_timed_checkpoints();
    for item in store.subscribe(options) {
        match item.unwrap() {
            SubscriptionItem::Event(_) => events += 1,
            SubscriptionItem::CaughtUp { .. } => break,
            SubscriptionItem::Checkpoint { .. } => {}
        }
    }
    events
}

fn read_all_scan(store: &Store) -> u64 {
    let mut from = 0;
    loop {
        let page = store.read_all(from, 10_000).unwrap();
        if page.is_empty() {
            return from;
        }
        from += page.len() as u64;
    }
}

/// Every column of every row, borrowed from SQLite's page (no copy), as
/// the Annals visitor gets every field borrowed from the mapped log; the
/// data's length is summed like `visitor_scan` sums it.
fn sqlite_scan(sqlite: &SqliteStore) -> (u64, u64) {
    let mut query = sqlite
        .conn
        .prepare_cached(
            "SELECT position, stream, version, id, type, data FROM events ORDER BY position",
        )
        .unwrap();
    let mut cursor = query.query([]).unwrap();
    let (mut rows, mut bytes) = (0u64, 0u64);
    while let Ok(Some(row)) = cursor.next() {
        let position = row.get_ref(0).unwrap().as_i64().unwrap();
        let stream = row.get_ref(1).unwrap().as_bytes().unwrap();
        let version = row.get_ref(2).unwrap().as_i64().unwrap();
        let id = row.get_ref(3).unwrap().as_blob().unwrap();
        let event_type = row.get_ref(4).unwrap().as_bytes().unwrap();
        let data = row.get_ref(5).unwrap().as_blob().unwrap();
        let named = !stream.is_empty() && !event_type.is_empty() && id.len() == 16;
        rows += u64::from(named && position > 0 && version >= 0);
        bytes += data.len() as u64;
    }
    (rows, bytes)
}

/// What this bench measured before every column was read: the same query,
/// only the data column fetched (copied into a `Vec`). Kept beside the
/// borrowed scan because it is the faster of the two here.
fn sqlite_scan_data_only(sqlite: &SqliteStore) -> u64 {
    let mut query = sqlite
        .conn
        .prepare_cached(
            "SELECT position, stream, version, id, type, data FROM events ORDER BY position",
        )
        .unwrap();
    let mut cursor = query.query([]).unwrap();
    let mut rows = 0;
    while let Ok(Some(row)) = cursor.next() {
        let data: Vec<u8> = row.get(5).unwrap();
        rows += u64::from(!data.is_empty());
    }
    rows
}

/// The segment files and how many of their bytes hold frames.
fn log_files(dir: &Path) -> Vec<(PathBuf, usize)> {
    let mut files: Vec<(PathBuf, usize)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            (p, end)
        })
        .collect();
    files.sort();
    files
}

fn plain_read(files: &[(PathBuf, usize)], buf: &mut [u8]) -> u64 {
    let mut total = 0;
    for (path, end) in files {
        let mut file = std::fs::File::open(path).unwrap();
        let mut left = *end;
        while left > 0 {
            let want = left.min(buf.len());
            file.read_exact(&mut buf[..want]).unwrap();
            left -= want;
            total += want as u64;
        }
    }
    total
}

/// Best of `runs` timings of `f`.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Append's return → an idle subscriber (parked on the feed) has the event.
fn live_latency(durability: Durability, appends: usize) -> (u64, u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let (tx, rx) = mpsc::channel();
    let subscriber = {
        let mut subscription = store.subscribe(SubscriptionOptions::all().no_timed_checkpoints());
        std::thread::spawn(move || {
            for item in &mut subscription {
                if let SubscriptionItem::Event(e) = item.unwrap() {
                    if tx.send((e.position, Instant::now())).is_err() {
                        return;
                    }
                }
            }
        })
    };
    let mut latencies = Vec::with_capacity(appends);
    let mut before_return = 0;
    for i in 0..appends {
        let r = store
            .append(
                "live-1",
                ExpectedVersion::Any,
                vec![EventData::new("Ping", format!("{i}"))],
            )
            .unwrap()
            .unwrap();
        let returned = Instant::now();
        let (position, received) = rx.recv().unwrap();
        assert_eq!(position, r.first_position);
        match received.checked_duration_since(returned) {
            Some(d) => latencies.push(d.as_nanos() as u64),
            None => {
                before_return += 1;
                latencies.push(0);
            }
        }
        // Let the subscriber go idle again (parked).
        std::thread::sleep(Duration::from_micros(300));
    }
    drop(rx);
    store
        .append(
            "live-1",
            ExpectedVersion::Any,
            vec![EventData::new("Ping", "end")],
        )
        .unwrap()
        .unwrap();
    subscriber.join().unwrap();
    latencies.sort_unstable();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        before_return,
    )
}

/// CPU time (user + system) this process has used so far, all threads
/// (`/proc/self/stat`, in USER_HZ = 100 ticks a second). On a machine
/// shared with other work, commits per CPU-second compare the cost of a
/// commit with and without subscribers even when the share of the cores the
/// process gets changes with its thread count.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last ')'):
    // utime and stime are the 12th and 13th of them.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// CPU time the calling thread has used so far, in nanoseconds (the first
/// field of `/proc/thread-self/schedstat`; 0 where it cannot be read).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Commits/s of `writers` threads appending one event each, for `secs`,
/// with `subscribers` live `$all` subscribers consuming everything; also
/// the share of the events written that the subscribers had received when
/// the writers stopped (1.0 without subscribers).
fn commits_per_sec(
    durability: Durability,
    writers: usize,
    subscribers: usize,
    secs: u64,
    consume: Consume,
) -> Commits {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().durability(durability)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let options = match consume {
                // As before wake-up coalescing: woken at every publish.
                Consume::OwnedUncoalesced => SubscriptionOptions::all().coalesce(Duration::ZERO),
                Consume::OwnedWideWindow => SubscriptionOptions::all().coalesce(WIDE_WINDOW),
                Consume::Owned | Consume::Visitor => SubscriptionOptions::all(),
            };
            let mut subscription = store.subscribe(options);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut events = 0u64;
                let cpu_before = thread_cpu_ns();
                while !stop.load(Ordering::Relaxed) {
                    match consume {
                        Consume::Owned | Consume::OwnedUncoalesced | Consume::OwnedWideWindow => {
                            if let Some(Ok(SubscriptionItem::Event(_))) =
                                subscription.next_timeout(Duration::from_millis(50))
                            {
                                events += 1;
                            }
                        }
                        Consume::Visitor => {
                            subscription
                                .visit_timeout(Duration::from_millis(50), |item| {
                                    if let SubscriptionItemRef::Event(e) = item {
                                        std::hint::black_box(e.data);
                                        events += 1;
                                    }
                                })
                                .unwrap();
                        }
                    }
                }
                (events, thread_cpu_ns().saturating_sub(cpu_before))
            })
        })
        .collect();
    let cpu_before = cpu_time();
    let m = annals_benches::workloads::run_threads(
        dir.path(),
        writers,
        Duration::from_secs(secs),
        move |t, i| {
            let event = EventData::new("Written", format!("{t}:{i}"));
            store
                .append(&format!("w-{t}"), ExpectedVersion::Any, vec![event])
                .unwrap()
                .unwrap();
            1
        },
    );
    let cpu = cpu_time().saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let (received, subscribers_cpu_ns) = readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .fold((0u64, 0u64), |(e, c), (events, cpu)| (e + events, c + cpu));
    Commits {
        per_sec: m.ops_per_sec(),
        per_cpu_sec: m.ops as f64 / cpu.as_secs_f64().max(1e-3),
        received: if subscribers == 0 {
            1.0
        } else {
            received as f64 / (subscribers as u64 * m.events.max(1)) as f64
        },
        subscriber_ns_per_event: subscribers_cpu_ns as f64 / received.max(1) as f64,
    }
}

/// The wider coalescing window of one row (`Consume::OwnedWideWindow`).
const WIDE_WINDOW: Duration = Duration::from_micros(500);

/// How the subscribers consume: one owned event per `next_timeout` (with
/// the default wake-up coalescing, without any, as before it existed, or
/// with a wider window), or zero-copy batches through `visit_timeout`.
#[derive(Clone, Copy)]
enum Consume {
    Owned,
    OwnedUncoalesced,
    /// With a coalescing window of [`WIDE_WINDOW`] instead of the default
    /// 100 us: fewer wake-ups, for up to that much added delay under load.
    OwnedWideWindow,
    Visitor,
}

/// What one run of writers measured.
#[derive(Clone, Copy)]
struct Commits {
    per_sec: f64,
    /// Commits per CPU-second the whole process used meanwhile.
    per_cpu_sec: f64,
    /// Share of the events written that the subscribers had received when
    /// the writers stopped (1.0 without subscribers).
    received: f64,
    /// CPU the subscriber threads used (waiting, waking, reading and
    /// consuming), per event they received, in nanoseconds: what the
    /// writers' cores lose to each delivery (0 without subscribers).
    subscriber_ns_per_event: f64,
}

impl Commits {
    fn show(label: &str, none: Commits, eight: Commits) {
        eprintln!(
            "{label}: none {:.0}/s, 8 subscribers {:.0}/s, ratio {:.2}; per CPU-second {:.0} vs {:.0}, ratio {:.2}; received {:.1} % at the stop; subscribers' CPU {:.0} ns per event received",
            none.per_sec,
            eight.per_sec,
            eight.per_sec / none.per_sec,
            none.per_cpu_sec,
            eight.per_cpu_sec,
            eight.per_cpu_sec / none.per_cpu_sec,
            eight.received * 100.0,
            eight.subscriber_ns_per_event
        );
    }
}

/// Busy work of about `work` of CPU (calibrated once, fastest of runs).
fn spin(iterations: u64) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.rotate_left(5) ^ i).wrapping_mul(0x100_0000_01B3);
    }
    x
}

fn spin_iterations(work: Duration) -> u64 {
    let probe = 1_000_000u64;
    let took = best(5, || {
        std::hint::black_box(spin(probe));
    });
    (probe as f64 * work.as_secs_f64() / took.as_secs_f64()).max(1.0) as u64
}

/// The ceiling for "writers with live subscribers": `writers` threads each
/// spend `work` of CPU, then publish one entry into a trivial in-memory
/// log (a `Mutex<Vec>` and an atomic end) and, if a reader waits, wake
/// them all with a condvar; `readers` threads wait on the condvar whenever
/// they are at the end and copy every entry up to the end when woken.
/// Commits/s of the writers over `secs`.
fn ceiling_commits_per_sec(writers: usize, readers: usize, work: Duration, secs: u64) -> Commits {
    use std::sync::atomic::{AtomicU64, AtomicUsize};
    use std::sync::{Condvar, Mutex};
    struct Log {
        entries: Mutex<Vec<u64>>,
        end: AtomicU64,
        waiters: AtomicUsize,
        feed: Mutex<()>,
        changed: Condvar,
        stop: AtomicBool,
    }
    let log = Arc::new(Log {
        entries: Mutex::new(Vec::with_capacity(1 << 20)),
        end: AtomicU64::new(0),
        waiters: AtomicUsize::new(0),
        feed: Mutex::new(()),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let iterations = spin_iterations(work);
    let reader_threads: Vec<_> = (0..readers)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let cpu_before = thread_cpu_ns();
                let (mut seen, mut copy) = (0u64, Vec::new());
                while !log.stop.load(Ordering::Relaxed) {
                    {
                        let mut guard = log.feed.lock().unwrap();
                        log.waiters.fetch_add(1, Ordering::SeqCst);
                        while log.end.load(Ordering::SeqCst) <= seen
                            && !log.stop.load(Ordering::Relaxed)
                        {
                            guard = log
                                .changed
                                .wait_timeout(guard, Duration::from_millis(50))
                                .unwrap()
                                .0;
                        }
                        log.waiters.fetch_sub(1, Ordering::SeqCst);
                    }
                    let entries = log.entries.lock().unwrap();
                    copy.clear();
                    copy.extend_from_slice(&entries[seen as usize..]);
                    seen = entries.len() as u64;
                }
                std::hint::black_box(copy);
                (seen, thread_cpu_ns().saturating_sub(cpu_before))
            })
        })
        .collect();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let writer_threads: Vec<_> = (0..writers)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut commits = 0u64;
                while Instant::now() < deadline {
                    let entry = spin(iterations) ^ t as u64;
                    {
                        let mut entries = log.entries.lock().unwrap();
                        entries.push(entry);
                        log.end.store(entries.len() as u64, Ordering::SeqCst);
                    }
                    if log.waiters.load(Ordering::SeqCst) > 0 {
                        let _guard = log.feed.lock().unwrap();
                        log.changed.notify_all();
                    }
                    commits += 1;
                }
                commits
            })
        })
        .collect();
    let commits: u64 = writer_threads.into_iter().map(|w| w.join().unwrap()).sum();
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    log.stop.store(true, Ordering::Relaxed);
    let (received, readers_cpu_ns) = reader_threads
        .into_iter()
        .map(|r| r.join().unwrap())
        .fold((0u64, 0u64), |(e, c), (seen, cpu)| (e + seen, c + cpu));
    Commits {
        per_sec: commits as f64 / elapsed.as_secs_f64(),
        per_cpu_sec: commits as f64 / cpu.as_secs_f64().max(1e-3),
        received: if readers == 0 {
            1.0
        } else {
            received as f64 / (readers as u64 * commits.max(1)) as f64
        },
        subscriber_ns_per_event: readers_cpu_ns as f64 / received.max(1) as f64,
    }
}

fn figures(store: &Store, sqlite: &SqliteStore, files: &[(PathBuf, usize)], total: u64) {
    let log_bytes: u64 = files.iter().map(|(_, n)| *n as u64).sum();
    let mut buf = vec![0u8; 1 << 20];
    plain_read(files, &mut buf);
    let rows = [
        (
            "annals read_all_with (visitor)",
            best(5, || assert_eq!(visitor_scan(store).0, total)),
        ),
        (
            "annals subscription ($all, batch 1024)",
            best(5, || assert_eq!(subscription_scan(store), total)),
        ),
        (
            "annals read_all (owned, pages of 10k)",
            best(5, || assert_eq!(read_all_scan(store), total)),
        ),
        (
            "sqlite ORDER BY position",
            best(3, || assert_eq!(sqlite_scan(sqlite).0, total)),
        ),
        (
            "sqlite ORDER BY position, data only (copied)",
            best(3, || assert_eq!(sqlite_scan_data_only(sqlite), total)),
        ),
        (
            "plain read of the log bytes (ceiling)",
            best(5, || assert_eq!(plain_read(files, &mut buf), log_bytes)),
        ),
    ];
    eprintln!(
        "catch-up scan of $all: {total} events, {log_bytes} bytes of log, page cache, best of runs"
    );
    for (name, took) in rows {
        let s = took.as_secs_f64();
        eprintln!(
            "  {name:<42} {:>8.2} M events/s  {:>6.2} GB/s of log  ({:.1} ms)",
            total as f64 / s / 1e6,
            log_bytes as f64 / s / 1e9,
            s * 1e3
        );
    }
    let (visitor, sqlite, data_only, ceiling) = (rows[0].1, rows[3].1, rows[4].1, rows[5].1);
    eprintln!(
        "  visitor: {:.2}x SQLite's scan of every column, {:.2}x its data-only scan, {:.2}x the plain read's time (same run)",
        sqlite.as_secs_f64() / visitor.as_secs_f64(),
        data_only.as_secs_f64() / visitor.as_secs_f64(),
        visitor.as_secs_f64() / ceiling.as_secs_f64()
    );
    live_figures();
}

/// Live delivery latency and writers' commits/s with 8 live subscribers,
/// beside the ceiling (a trivial in-memory log woken by a condvar per
/// publish: what 2 cores allow for 4 writers and 8 readers).
fn live_figures() {
    // `ANNALS_SUBSCRIBE_LIVE_ONLY=buffered`: only the `Buffered` figures.
    let modes: &[Durability] = match std::env::var("ANNALS_SUBSCRIBE_LIVE_ONLY").as_deref() {
        Ok("buffered") => &[Durability::Buffered],
        _ => &[Durability::Fsync, Durability::Buffered],
    };
    for &durability in modes {
        let (p50, p99, early) = live_latency(durability, 2000);
        eprintln!(
            "live delivery ({durability:?}): p50 {:.1} us, p99 {:.1} us over 2000 appends ({early} received before append returned, counted 0)",
            p50 as f64 / 1e3,
            p99 as f64 / 1e3
        );
    }
    for &durability in modes {
        let mut runs = Vec::new();
        for _ in 0..2 {
            let none = commits_per_sec(durability, 4, 0, 3, Consume::Owned);
            let uncoalesced = commits_per_sec(durability, 4, 8, 3, Consume::OwnedUncoalesced);
            let eight = commits_per_sec(durability, 4, 8, 3, Consume::Owned);
            let visiting = commits_per_sec(durability, 4, 8, 3, Consume::Visitor);
            let wide = commits_per_sec(durability, 4, 8, 3, Consume::OwnedWideWindow);
            runs.push((none, eight, visiting, uncoalesced, wide));
        }
        for (none, eight, visiting, uncoalesced, wide) in &runs {
            Commits::show(
                &format!("commits, 4 writers ({durability:?}), owned events, no coalescing"),
                *none,
                *uncoalesced,
            );
            Commits::show(
                &format!("commits, 4 writers ({durability:?}), owned events"),
                *none,
                *eight,
            );
            Commits::show(
                &format!("commits, 4 writers ({durability:?}), zero-copy visitor"),
                *none,
                *visiting,
            );
            Commits::show(
                &format!(
                    "commits, 4 writers ({durability:?}), owned events, {} us window",
                    WIDE_WINDOW.as_micros()
                ),
                *none,
                *wide,
            );
        }
        if durability == Durability::Buffered {
            // The ceiling at the same CPU per commit: each writer spends
            // what an Annals commit took without subscribers.
            let rate =
                runs.iter().map(|(none, ..)| none.per_cpu_sec).sum::<f64>() / runs.len() as f64;
            let work = Duration::from_secs_f64(1.0 / rate);
            for _ in 0..2 {
                let none = ceiling_commits_per_sec(4, 0, work, 3);
                let eight = ceiling_commits_per_sec(4, 8, work, 3);
                Commits::show(
                    &format!(
                        "ceiling, 4 writers spinning {:.1} us a commit, readers woken per publish",
                        work.as_secs_f64() * 1e6
                    ),
                    none,
                    eight,
                );
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    if std::env::var_os("ANNALS_SUBSCRIBE_LIVE_ONLY").is_some() {
        // Only the live figures (no scan store, no criterion groups).
        live_figures();
        return;
    }
    let streams = 2_000 * annals_benches::scale() as u64;
    let total = streams * 100;
    let dir = tempfile::tempdir().unwrap();
    eprintln!("building {total} events over {streams} streams in Annals and SQLite...");
    let (store, sqlite) = annals_benches::suite::build_read_stores(dir.path(), streams);
    let files = log_files(&dir.path().join("annals"));
    figures(&store, &sqlite, &files, total);

    let mut group = c.benchmark_group("catch_up_scan_all");
    group.sample_size(10);
    group.throughput(Throughput::Elements(total));
    group.bench_function("annals_visitor", |b| b.iter(|| visitor_scan(&store)));
    group.bench_function("annals_subscription", |b| {
        b.iter(|| subscription_scan(&store))
    });
    group.bench_function("sqlite_order_by_position", |b| {
        b.iter(|| sqlite_scan(&sqlite))
    });
    group.bench_function("sqlite_order_by_position_data_only", |b| {
        b.iter(|| sqlite_scan_data_only(&sqlite))
    });
    let mut buf = vec![0u8; 1 << 20];
    group.bench_function("plain_read_ceiling", |b| {
        b.iter(|| plain_read(&files, &mut buf))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
