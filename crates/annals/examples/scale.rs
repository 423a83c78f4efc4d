//! Index at scale: build a store of many streams, then measure a fresh
//! open and stream loads.
//!
//! ```text
//! cargo run --release -p annals --example scale -- build DIR STREAMS EVENTS_PER_STREAM [INDEX_BUFFER_EVENTS]
//! cargo run --release -p annals --example scale -- open DIR STREAMS EVENTS_PER_STREAM
//! ```
//!
//! `build` appends in rounds: round v gives every stream its event v, 1,000
//! streams per atomic `append_many` (one frame, one fsync), so each
//! stream's events are spread over the whole log. It prints the append
//! rate, the index files, and the peak anonymous memory (heap) sampled
//! every 50 ms. `open` times `Store::open` and loads random whole streams
//! (p50/p99).

use std::time::{Duration, Instant};

use annals::{Direction, EventData, ExpectedVersion, Options, Store};

const BATCH: u64 = 1_000;

/// Resident anonymous memory (heap, stacks) of this process, in bytes.
fn rss_anon() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn name(k: u64) -> String {
    format!("account-{k:08}")
}

fn build(
    dir: &str,
    streams: u64,
    per_stream: u64,
    options: Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = rss_anon();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_anon(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let store = Store::open_with(dir, options)?;
    let started = Instant::now();
    let mut events = 0u64;
    let mut last_report = Instant::now();
    for version in 0..per_stream {
        let mut first = 0;
        while first < streams {
            let last = (first + BATCH).min(streams);
            let appends = (first..last)
                .map(|k| {
                    let expected = match version {
                        0 => ExpectedVersion::NoStream,
                        v => ExpectedVersion::Exact(v - 1),
                    };
                    let data = format!("{{\"k\":{k},\"v\":{version},\"amount\":100}}");
                    (name(k), expected, vec![EventData::new("Deposited", data)])
                })
                .collect();
            store
                .append_many(appends)?
                .map_err(|c| format!("conflict: {c}"))?;
            events += last - first;
            first = last;
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                let stats = store.stats();
                eprintln!(
                    "{events} events, {:.0} events/s, index runs {} checkpoint {} heap {} MiB",
                    events as f64 / started.elapsed().as_secs_f64(),
                    stats.index_runs,
                    stats.index_checkpoint,
                    rss_anon() >> 20
                );
            }
        }
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    drop(store);
    let closed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let reopened = Store::open(dir)?;
    let final_stats = reopened.stats();
    println!("streams                 {}", stats.streams);
    println!("events                  {events}");
    println!(
        "append rate             {:.0} events/s ({:.0} appends/s of {BATCH} streams, index persisted in the background)",
        events as f64 / elapsed.as_secs_f64(),
        events as f64 / BATCH as f64 / elapsed.as_secs_f64()
    );
    println!(
        "build time              {:.1} s (+{:.1} s close)",
        elapsed.as_secs_f64(),
        (closed - elapsed).as_secs_f64()
    );
    println!(
        "log data bytes/event    {:.1}",
        final_stats.data_bytes as f64 / events as f64
    );
    println!(
        "index files             {} runs, {} bytes, {:.1} bytes/event",
        final_stats.index_runs,
        final_stats.index_bytes,
        final_stats.index_bytes as f64 / events as f64
    );
    println!(
        "heap (RssAnon) peak     {} MiB, baseline {} MiB: {:.1} bytes/stream",
        peak >> 20,
        baseline >> 20,
        (peak - baseline) as f64 / stats.streams as f64
    );
    Ok(())
}

fn open(dir: &str, streams: u64, per_stream: u64) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = rss_anon();
    let started = Instant::now();
    let store = Store::open(dir)?;
    let opened = started.elapsed();
    let heap_after_open = rss_anon().saturating_sub(baseline);
    let report = store.index_report().clone();
    let stats = store.stats();
    println!(
        "open                    {:.2} ms ({} events, {} streams, index runs {}, checkpoint {}, replayed {})",
        opened.as_secs_f64() * 1e3,
        stats.events,
        stats.streams,
        stats.index_runs,
        report.checkpoint,
        report.replayed
    );
    println!("heap after open         {} KiB", heap_after_open >> 10);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut times = Vec::new();
    for _ in 0..2_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let stream = name(rng % streams);
        let t = Instant::now();
        let events = store.read_stream(&stream, 0, Direction::Forward, usize::MAX)?;
        times.push(t.elapsed());
        if events.len() as u64 != per_stream {
            return Err(format!("{stream}: {} events, expected {per_stream}", events.len()).into());
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "load one stream         p50 {:.1} µs, p99 {:.1} µs ({per_stream} events, 2,000 random streams, first reads after open)",
        at(0.5),
        at(0.99)
    );
    println!(
        "heap after reads        {} KiB",
        rss_anon().saturating_sub(baseline) >> 10
    );
    Ok(())
}

/// Opens the store `count` times; prints the median open time (closing is
/// not timed).
fn reopen(dir: &str, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let store = Store::open(dir)?;
        times.push(started.elapsed());
        drop(store);
    }
    times.sort_unstable();
    println!(
        "open p50 {:.0} µs over {count} opens",
        times[count / 2].as_secs_f64() * 1e6
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: scale build DIR STREAMS EVENTS_PER_STREAM [INDEX_BUFFER_EVENTS] | scale open DIR STREAMS EVENTS_PER_STREAM | scale reopen DIR COUNT";
    if let (Some("reopen"), Some(dir), Some(count)) =
        (args.get(1).map(String::as_str), args.get(2), args.get(3))
    {
        return reopen(dir, count.parse()?);
    }
    let (Some(command), Some(dir), Some(streams), Some(per_stream)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        return Err(usage.into());
    };
    let streams: u64 = streams.parse()?;
    let per_stream: u64 = per_stream.parse()?;
    match command.as_str() {
        "build" => {
            let mut options = Options::default();
            if let Some(buffer) = args.get(5) {
                options = options.index_buffer_events(buffer.parse()?);
            }
            build(dir, streams, per_stream, options)
        }
        "open" => open(dir, streams, per_stream),
        _ => Err(usage.into()),
    }
}
