//! Timed, concurrent write workloads with latency percentiles, run the same
//! way on Annals, on the plain file and on SQLite.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Operations completed (commits).
    pub ops: u64,
    /// Events written.
    pub events: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency percentiles in microseconds: p50, p99, p99.9.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Bytes the block device reported written during the run (whole
    /// device: includes filesystem journal and anything else running).
    pub device_bytes: u64,
}

impl Measured {
    /// Commits per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(thread, iteration)` on `threads` threads until `duration` has
/// passed; `op` returns the number of events it wrote.
pub fn run_threads<F>(dir: &Path, threads: usize, duration: Duration, op: F) -> Measured
where
    F: Fn(usize, u64) -> u64 + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let device_before = device_written_bytes(dir);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, barrier) = (Arc::clone(&op), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut events = 0;
                barrier.wait();
                let deadline = Instant::now() + duration;
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    events += op(t, i);
                    latencies.push(started.elapsed().as_micros() as u64);
                    i += 1;
                }
                (latencies, events)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut all = Vec::new();
    let mut events = 0;
    for handle in handles {
        let (latencies, n) = handle.join().expect("worker panicked");
        all.extend(latencies);
        events += n;
    }
    let elapsed = started.elapsed();
    let device_bytes = device_written_bytes(dir).saturating_sub(device_before);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Measured {
        ops: all.len() as u64,
        events,
        elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        device_bytes,
    }
}

/// Sectors written × 512 for the block device holding `dir`, from
/// `/proc/diskstats` (0 if it cannot be read).
pub fn device_written_bytes(dir: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(dir) else {
        return 0;
    };
    let dev = meta.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) as u32,
        ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32,
    );
    let Ok(stats) = std::fs::read_to_string("/proc/diskstats") else {
        return 0;
    };
    for line in stats.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 9 && fields[0].parse() == Ok(major) && fields[1].parse() == Ok(minor) {
            return fields[9].parse::<u64>().unwrap_or(0) * 512;
        }
    }
    0
}
