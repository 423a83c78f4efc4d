//! Scan the global feed of a store of 300,000 events ten times; prints the
//! rate. Used to profile the read path (`perf record`).
//! Run: `cargo run --release -p annals --example scan`.

use std::time::Instant;

use annals::{EventData, ExpectedVersion, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    for round in 0..300 {
        let appends = (0..1000)
            .map(|s| {
                (
                    format!("stream-{s}"),
                    ExpectedVersion::Any,
                    vec![EventData::new("Scanned", vec![round as u8; 128])],
                )
            })
            .collect();
        store.append_many(appends)??;
    }
    let started = Instant::now();
    let mut events = 0usize;
    for _ in 0..10 {
        let mut from = 0;
        loop {
            let page = store.read_all(from, 10_000)?;
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            events += page.len();
        }
    }
    println!(
        "{events} events scanned: {:.0} events/s",
        events as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
