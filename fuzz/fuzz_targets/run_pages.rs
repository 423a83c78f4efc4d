//! A store whose index runs hold fuzzed entries behind valid checksums: the
//! input (after its first two bytes, which say where to start, in steps of
//! 16 bytes) is XORed over the payloads of the data pages of the run files
//! taken one after another (header pages are left alone, so the runs are
//! trusted at open), then each page's CRC is recomputed. Stream entries, positions, byte offsets, fences, filters and
//! ids are then arbitrary. Open, reads of every stream both ways, a folded
//! read, retried appends (id lookups) and `verify` must each return a
//! result or an error: never panic, never hang.
#![no_main]

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use annals::storage::{MemStorage, Storage};
use annals::{Direction, EventData, EventId, ExpectedVersion, Options, Store};
use libfuzzer_sys::fuzz_target;

#[path = "shared/fuzzed_pages.rs"]
mod fuzzed_pages;

const STREAMS: u64 = 4;
const EVENTS: u64 = 120;

fn options() -> Options {
    Options::default()
        .index_buffer_events(32)
        .segment_bytes(16 << 10)
}

fn event(n: u64) -> EventData {
    EventData::new("Fuzzed", n.to_le_bytes().to_vec()).with_id(EventId([n as u8 + 1; 16]))
}

/// The files of a store with `EVENTS` events over `STREAMS` streams and
/// their index runs, built once.
fn base() -> &'static Vec<(String, Vec<u8>)> {
    static BASE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    BASE.get_or_init(|| {
        let storage = MemStorage::new();
        {
            let store = Store::open_storage(Arc::new(storage.handle()), options()).expect("open");
            for n in 0..EVENTS {
                let stream = format!("s-{}", n % STREAMS);
                store
                    .append(&stream, ExpectedVersion::Any, vec![event(n)])
                    .expect("append")
                    .expect("any");
            }
            store.maintain_index().expect("index");
        }
        let mut names = storage.list().expect("list");
        names.sort();
        names
            .into_iter()
            .filter_map(|n| storage.read_file(&n).map(|b| (n, b)))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let storage =
        fuzzed_pages::storage_with_fuzzed_pages(base(), data, |name| name.ends_with(".run"));
    let Ok(store) = Store::open_storage(Arc::new(storage), options()) else {
        return;
    };
    for k in 0..STREAMS {
        let stream = format!("s-{k}");
        let _ = store.stream_version(&stream);
        let _ = store.read_stream(&stream, 0, Direction::Forward, usize::MAX);
        let _ = store.read_stream(&stream, u64::MAX, Direction::Backward, 7);
        let _ = store.read_stream(&stream, 5, Direction::Backward, usize::MAX);
        let _ = store.read_stream_with(&stream, 3, Direction::Forward, 50, |_| {
            ControlFlow::Continue(())
        });
        // A retry of an early append: its id is looked up in the runs.
        let _ = store.append(&stream, ExpectedVersion::Any, vec![event(k)]);
    }
    let _ = store.stream_version("never-written");
    let _ = store.read_all(0, usize::MAX);
    let _ = store.verify();
});
