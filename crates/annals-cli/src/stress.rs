//! `annals stress`: a load generator. Threads append 1-3 events with exact
//! expectations to streams of their own and print one JSON line per
//! acknowledged append, only after `append` returned `Ok` — so a parent that
//! kills the process knows exactly what was acknowledged. Event data is
//! `"<stream>@<version>"` (then `pad_bytes` dots), so every event can be
//! checked byte for byte. With `compact`, one more thread keeps a stream
//! `retained` under a max-count rule and compacts the store again and
//! again (what `scripts/kill9.sh N compact` kills in the middle of).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{CurrentVersion, EventData, ExpectedVersion};
use serde_json::json;

use crate::commands::open;
use crate::Failure;

/// The data of event `version` of `stream` in a stress run.
pub fn stress_data(stream: &str, version: u64, pad_bytes: usize) -> String {
    format!("\"{stream}@{version}{}\"", ".".repeat(pad_bytes))
}

/// What a stress run does.
pub struct Load {
    /// Writer threads.
    pub threads: usize,
    /// Streams per thread.
    pub streams: usize,
    /// How long to run.
    pub seconds: f64,
    /// The index buffer, if not the default.
    pub index_buffer_events: Option<u64>,
    /// Dots appended to each event's data.
    pub pad_bytes: usize,
    /// The size of new segment files, if not the default.
    pub segment_bytes: Option<u64>,
    /// Compact again and again while appending.
    pub compact: bool,
    /// At most this many appends per second, all threads together (each
    /// thread paced to its share); `None`: as fast as the store goes. A
    /// capped load writes about as much on any filesystem (unpaced, a
    /// tmpfs store, whose `fdatasync` costs nothing, grows tens of times
    /// faster than one on a disk).
    pub rate: Option<f64>,
}

/// Runs the load until `seconds` have passed (or the process is killed).
pub fn run(dir: &Path, load: Load) -> Result<(), Failure> {
    let Load {
        threads,
        streams,
        seconds,
        index_buffer_events,
        pad_bytes,
        segment_bytes,
        compact,
        rate,
    } = load;
    if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Failure::usage(
            "--rate must be a positive number of appends per second",
        ));
    }
    let threads = threads.max(1);
    // Each thread's share of the rate: its appends are due at this interval
    // (in seconds).
    let interval = rate.map(|r| threads as f64 / r);
    let store = if index_buffer_events.is_none() && segment_bytes.is_none() {
        open(dir, true)?
    } else {
        crate::store_dir::check(dir, true)?;
        let mut options = annals::Options::default();
        if let Some(events) = index_buffer_events {
            options = options.index_buffer_events(events);
        }
        if let Some(bytes) = segment_bytes {
            options = options.segment_bytes(bytes);
        }
        annals::Store::open_with(dir, options)?
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, out) = (store.clone(), Arc::clone(&out));
            std::thread::spawn(move || -> Result<u64, Failure> {
                let mut versions: HashMap<usize, CurrentVersion> = HashMap::new();
                let mut rng = (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ annals_rand();
                let mut appends = 0;
                while Instant::now() < deadline {
                    if let Some(interval) = interval {
                        // Due times from the start, not from the last
                        // append: a slow append is made up, never the rate
                        // exceeded over the run. One due after the end
                        // waits for the end (the store is held `seconds`).
                        let due = (interval * appends as f64).min(seconds);
                        let due = started + Duration::from_secs_f64(due);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let k = (rng % streams.max(1) as u64) as usize;
                    let stream = format!("stress-{t}-{k}");
                    let current = match versions.get(&k) {
                        Some(current) => *current,
                        None => store.stream_version(&stream)?,
                    };
                    let (expected, next) = match current {
                        CurrentVersion::Version(v) => (ExpectedVersion::Exact(v), v + 1),
                        _ => (ExpectedVersion::NoStream, 0),
                    };
                    let n = 1 + (rng >> 20) % 3;
                    let events = (next..next + n)
                        .map(|v| EventData::new("Stressed", stress_data(&stream, v, pad_bytes)))
                        .collect();
                    let written = store.append(&stream, expected, events)?.map_err(|c| {
                        Failure::error(format!("unexpected conflict in a stress run: {c}"))
                    })?;
                    versions.insert(k, CurrentVersion::Version(written.last_version));
                    let line = json!({
                        "stream": written.stream,
                        "first_version": written.first_version,
                        "last_version": written.last_version,
                        "first_position": written.first_position,
                        "last_position": written.last_position,
                    });
                    let mut out = out
                        .lock()
                        .map_err(|_| Failure::error("stdout lock poisoned"))?;
                    writeln!(out, "{line}").map_err(|e| Failure::error(format!("stdout: {e}")))?;
                    out.flush()
                        .map_err(|e| Failure::error(format!("stdout: {e}")))?;
                    appends += 1;
                }
                Ok(appends)
            })
        })
        .collect();
    let compactor = compact.then(|| {
        let store = store.clone();
        std::thread::spawn(move || compact_loop(&store, deadline, pad_bytes))
    });
    let mut total = 0;
    if let Some(compactor) = compactor {
        compactor
            .join()
            .map_err(|_| Failure::error("the compacting thread panicked"))??;
    }
    for worker in workers {
        total += worker
            .join()
            .map_err(|_| Failure::error("a stress thread panicked"))??;
    }
    eprintln!("annals stress: {total} appends acknowledged");
    Ok(())
}

/// A per-process seed so that runs differ.
fn annals_rand() -> u64 {
    annals::EventId::random()
        .0
        .iter()
        .fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(*b))
}

/// Appends to `retained` (max-count 5) and compacts, until `deadline`.
/// `retained` takes a large share of the log (100 events per round), so
/// the rewritten segments are small and compactions also merge them.
fn compact_loop(store: &annals::Store, deadline: Instant, pad_bytes: usize) -> Result<(), Failure> {
    let mut rule_set = false;
    while Instant::now() < deadline {
        let events = (0..100)
            .map(|_| EventData::new("Retained", stress_data("retained", 0, pad_bytes)))
            .collect();
        store
            .append("retained", ExpectedVersion::Any, events)?
            .map_err(|c| Failure::error(format!("unexpected conflict in a stress run: {c}")))?;
        if !rule_set {
            store.set_max_count("retained", 5)?;
            rule_set = true;
        }
        store.compact(&annals::CompactionOptions::default())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
