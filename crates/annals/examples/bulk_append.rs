//! Bulk durable appends: one writer, 100 events × 128 B per append, exact
//! expectations over 10,000 streams round robin. Prints the rate; used to
//! profile the write path (`perf record`, `valgrind --tool=callgrind`).
//! Run: `cargo run --release -p annals --example bulk_append -- [appends] [fsync|buffered]`.

use std::time::Instant;

use annals::{Durability, EventData, ExpectedVersion, Options, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let appends: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let durability = match args.next().as_deref() {
        Some("buffered") => Durability::Buffered,
        _ => Durability::Fsync,
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open_with(dir.path(), Options::default().durability(durability))?;
    let data = vec![0xA5u8; 128];
    let mut versions = vec![None; 10_000];
    let started = Instant::now();
    for i in 0..appends {
        let s = i % versions.len();
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (0..100)
            .map(|_| EventData::new("Bulk", data.clone()))
            .collect();
        let written = store.append(&format!("bulk-{s}"), expected, events)??;
        versions[s] = Some(written.last_version);
    }
    let elapsed = started.elapsed();
    println!(
        "{appends} appends of 100 events ({durability:?}): {:.0} appends/s, {:.0} us each",
        appends as f64 / elapsed.as_secs_f64(),
        elapsed.as_micros() as f64 / appends as f64
    );
    Ok(())
}
