//! A fixed number of the DCB bench's `Durability::Buffered` appends
//! (`annals_benches::dcb::append_once`), plain or conditional, from 4
//! threads: for instruction counts and profiles, which a timed run cannot
//! compare (callgrind: `valgrind --tool=callgrind
//! target/release/examples/dcb_fixed_appends conditional 5000`).
//!
//! `cargo run --release -p annals-benches --example dcb_fixed_appends --
//! [plain|conditional] [appends per thread]`

use std::time::Instant;

use annals::{Durability, Options, Store};
use annals_benches::dcb::append_once;

const THREADS: u64 = 4;

fn main() {
    let mut args = std::env::args().skip(1);
    let conditional = args.next().as_deref() == Some("conditional");
    let appends: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default().durability(Durability::Buffered);
    let store = Store::open_with(dir.path().join("a"), options).expect("open");
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..appends {
                    append_once(&store, t, i, conditional);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("appender");
    }
    let took = started.elapsed();
    let commits = appends * THREADS;
    println!(
        "{} appends: {commits} commits in {took:?} ({:.0}/s), {:?}",
        if conditional { "conditional" } else { "plain" },
        commits as f64 / took.as_secs_f64(),
        store.write_stats()
    );
}
