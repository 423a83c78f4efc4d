//! Open times: opening a store of the read workloads' size and one a tenth
//! of it, beside opening the SQLite peer and reading its last position.

use std::path::Path;
use std::time::Instant;

use annals::Store;

use super::reads::build_read_stores;
use super::report::{Comparison, Figure};
use crate::SqliteStore;

/// Opening a store of `streams` × 100 events and one a tenth of its size.
pub(super) fn open_times(dir: &Path, streams: u64) -> Vec<Comparison> {
    let total = streams * 100;
    let big = open_ms(&dir.join("annals"));
    let small_dir = tempfile::tempdir().expect("temp dir");
    let small_streams = (streams / 10).max(1);
    let (small, _) = build_read_stores(small_dir.path(), small_streams);
    drop(small);
    let small = open_ms(&small_dir.path().join("annals"));
    let sqlite_open = {
        let started = Instant::now();
        let peer = SqliteStore::open(&dir.join("peer.sqlite")).expect("sqlite");
        let _: i64 = peer
            .conn
            .query_row("SELECT MAX(position) FROM events", [], |r| r.get(0))
            .expect("max");
        started.elapsed().as_secs_f64() * 1e3
    };
    vec![
        Comparison {
            workload: format!("open a store of {} events (ms)", small_streams * 100),
            unit: "ms",
            higher_is_better: false,
            annals: Figure::value(small),
            sqlite: None,
            ceiling: None,
            rounds: 1,
            paired: None,
        },
        Comparison {
            workload: format!("open a store of {total} events (ms)"),
            unit: "ms",
            higher_is_better: false,
            annals: Figure::value(big),
            sqlite: Some(Figure::value(sqlite_open)),
            ceiling: None,
            rounds: 1,
            paired: None,
        },
    ]
}

/// Milliseconds to open the store in `dir`.
fn open_ms(dir: &Path) -> f64 {
    let started = Instant::now();
    let store = Store::open(dir).expect("open");
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(store);
    ms
}
