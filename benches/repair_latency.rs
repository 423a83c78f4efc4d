//! Append latency while a damaged index run is rebuilt: an appender on
//! fresh streams, measured for a while with nothing else going on, then
//! while another caller's append meets a damaged run and rebuilds it from
//! the log (on that caller's thread: the write path does bounded work
//! only). Percentiles of both windows, in one run.
//! A custom harness (not criterion): what matters is the latency tail.
//!
//! `cargo bench -p annals-benches --bench repair_latency`
//! (`ANNALS_REPAIR_EVENTS` sets the events in the damaged run, default
//! 400,000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{Durability, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options::default().index_buffer_events(10_000_000)
}

/// Single-event durable appends to fresh streams until `stop`; latencies
/// in microseconds.
fn appender(
    store: Store,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            store
                .append(
                    &format!("{prefix}-{i}"),
                    ExpectedVersion::NoStream,
                    vec![EventData::new("E", "x")],
                )
                .expect("append")
                .expect("no conflict");
            latencies.push(started.elapsed().as_micros() as u64);
            i += 1;
        }
        latencies
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

fn report(what: &str, mut latencies: Vec<u64>, window: Duration) {
    latencies.sort_unstable();
    println!(
        "{what:<38} {:>7} appends in {:>6.2} s   p50 {:>6} us   p99 {:>6} us   max {:>7} us",
        latencies.len(),
        window.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let events: u64 = std::env::var("ANNALS_REPAIR_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400_000);
    let dir = tempfile::tempdir().expect("temp dir");
    {
        // One run of `events` events over 1,000 streams (written at close).
        let store =
            Store::open_with(dir.path(), options().durability(Durability::Buffered)).expect("open");
        for batch in 0..events / 100 {
            let stream = format!("old-{}", batch % 1_000);
            let data: Vec<EventData> = (0..100).map(|_| EventData::new("E", "y")).collect();
            store
                .append(&stream, ExpectedVersion::Any, data)
                .expect("fill")
                .expect("no conflict");
        }
        store.close().expect("close");
    }
    let runs: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "run"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    // Damage every page of the stream table (146 entries a page, one entry
    // per 100-event append, right after the header page): any lookup of
    // an old stream meets it. The header, fences and Bloom filter stay
    // intact, so open trusts the run and the damage is found on read.
    let mut bytes = std::fs::read(&runs[0]).expect("read run");
    let stream_pages = (events / 100).div_ceil(146) as usize;
    for page in 1..=stream_pages {
        bytes[page * 4096 + 100] ^= 0x10;
    }
    std::fs::write(&runs[0], &bytes).expect("write run");

    let store = Store::open_with(dir.path(), options()).expect("reopen");
    let stop = Arc::new(AtomicBool::new(false));
    let baseline_window = Duration::from_secs(3);
    let started = Instant::now();
    let quiet = appender(store.clone(), "quiet", Arc::clone(&stop));
    std::thread::sleep(baseline_window);
    stop.store(true, Ordering::Relaxed);
    report(
        "fresh streams, no repair",
        quiet.join().expect("appender"),
        started.elapsed(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let during = appender(store.clone(), "during", Arc::clone(&stop));
    // Let the appender settle, then an append to an old stream meets the
    // damaged run and rebuilds it on this thread.
    std::thread::sleep(Duration::from_millis(200));
    let repair_started = Instant::now();
    store
        .append(
            "old-7",
            ExpectedVersion::Any,
            vec![EventData::new("E", "z")],
        )
        .expect("append after repair")
        .expect("no conflict");
    let repair = repair_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    report(
        "fresh streams, during the rebuild",
        during.join().expect("appender"),
        started.elapsed(),
    );
    println!(
        "the append that met the damaged run ({events} events) returned after {:.0} ms (rebuild included)",
        repair.as_secs_f64() * 1e3
    );
    store.verify().expect("verify");
}
