//! The write workloads: durable single-event appends, command handling and
//! bulk appends on Annals and on SQLite, and the plain-file ceiling.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Options, Store};

use super::DATA_BYTES;
use crate::workloads::{run_threads, Measured};
use crate::{event_id, payload, SqliteStore};

/// Encoded size of one Annals frame of `n` events like the workloads'.
pub fn frame_bytes(n: usize, stream: &str, event_type: &str) -> usize {
    let data = payload(0, DATA_BYTES);
    let records: Vec<annals_segment::Record<'_>> = (0..n)
        .map(|_| annals_segment::Record {
            stream,
            stream_version: 0,
            id: [0; 16],
            timestamp_us: 0,
            flags: 0,
            event_type,
            tags: annals_segment::Tags::EMPTY,
            metadata: &[],
            data: &data,
        })
        .collect();
    let bytes = annals_segment::format::frame_bytes(&records).unwrap_or(0) as u64;
    annals_segment::format::align_up(bytes) as usize
}

/// Single-event durable appends, each thread to its own stream.
pub fn annals_single(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("a")).expect("open");
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, _| {
        let event = EventData::new("Benchmarked", data.clone());
        let written = store.append(&format!("writer-{t}"), ExpectedVersion::Any, vec![event]);
        assert!(matches!(written, Ok(Ok(_))));
        1
    })
}

/// The ceiling: each thread appends `bytes` to its own plain file with
/// `write` + `fdatasync` per commit.
pub fn plain_commits(threads: usize, secs: Duration, bytes: usize) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Arc<Vec<Mutex<std::fs::File>>> = Arc::new(
        (0..threads)
            .map(|t| {
                let path = dir.path().join(format!("plain-{t}"));
                Mutex::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("plain file"),
                )
            })
            .collect(),
    );
    let buf = vec![0xA5u8; bytes];
    run_threads(dir.path(), threads, secs, move |t, _| {
        let mut file = files[t].lock().expect("file lock");
        file.write_all(&buf).expect("write");
        file.sync_data().expect("fdatasync");
        1
    })
}

/// Single-event appends on SQLite, each thread its own connection and stream.
pub fn sqlite_single(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).expect("sqlite"));
    type Slot = (SqliteStore, Option<u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).expect("sqlite"), None)))
            .collect(),
    );
    let data = payload(1, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let mut slot = conns[t].lock().expect("slot");
        let (store, version) = &mut *slot;
        let id = event_id(((t as u64) << 40) | i);
        let ok = store.append(
            &format!("writer-{t}"),
            *version,
            &[(id, "Benchmarked", &data)],
        );
        assert_eq!(ok.ok(), Some(true));
        *version = Some(version.map_or(0, |v| v + 1));
        1
    })
}

/// Command handling: each thread appends 1-3 events with an exact
/// expectation to random streams of its own, tracking their versions as an
/// application holding loaded aggregates would.
pub fn annals_commands(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("a")).expect("open");
    let versions: Arc<Vec<Mutex<HashMap<u64, u64>>>> =
        Arc::new((0..threads).map(|_| Mutex::new(HashMap::new())).collect());
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut versions = versions[t].lock().expect("versions");
        let expected = versions
            .get(&k)
            .map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(*v));
        let events = (0..n)
            .map(|_| EventData::new("Handled", data.clone()))
            .collect();
        let written = store.append(&format!("agg-{t}-{k}"), expected, events);
        let Ok(Ok(written)) = written else {
            panic!("append failed: {written:?}")
        };
        versions.insert(k, written.last_version);
        n
    })
}

/// Command handling on SQLite.
pub fn sqlite_commands(threads: usize, secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sqlite");
    drop(SqliteStore::open(&path).expect("sqlite"));
    type Slot = (SqliteStore, HashMap<u64, u64>);
    let conns: Arc<Vec<Mutex<Slot>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new((SqliteStore::open(&path).expect("sqlite"), HashMap::new())))
            .collect(),
    );
    let data = payload(2, DATA_BYTES);
    run_threads(dir.path(), threads, secs, move |t, i| {
        let k = (i.wrapping_mul(2654435761) ^ t as u64) % 1000;
        let n = 1 + (i % 3);
        let mut slot = conns[t].lock().expect("slot");
        let (store, versions) = &mut *slot;
        let expected = versions.get(&k).copied();
        let ids: Vec<[u8; 16]> = (0..n)
            .map(|j| event_id(((t as u64) << 40) | (i << 2) | j))
            .collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Handled", &data[..])).collect();
        assert_eq!(
            store
                .append(&format!("agg-{t}-{k}"), expected, &events)
                .ok(),
            Some(true)
        );
        versions.insert(k, expected.map_or(n - 1, |v| v + n));
        n
    })
}

/// Bulk: one writer, 100 events × 128 B per append, exact expectations on
/// 10,000 streams round robin; `zero_ahead` as in [`Options::zero_ahead`]
/// (on is the default for a store on ext4 or XFS).
pub fn annals_bulk(secs: Duration, zero_ahead: bool) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default().zero_ahead(zero_ahead);
    let store = Store::open_with(dir.path().join("a"), options).expect("open");
    let versions = Mutex::new(vec![None::<u64>; 10_000]);
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs, move |_, i| {
        let s = (i % 10_000) as usize;
        let mut versions = versions.lock().expect("versions");
        let expected = versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let events = (0..100)
            .map(|_| EventData::new("Bulk", data.clone()))
            .collect();
        let written = store.append(&format!("bulk-{s}"), expected, events);
        let Ok(Ok(written)) = written else {
            panic!("append failed: {written:?}")
        };
        versions[s] = Some(written.last_version);
        100
    })
}

/// Bulk on SQLite.
pub fn sqlite_bulk(secs: Duration) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("peer.sqlite")).expect("sqlite");
    let store = Mutex::new((store, vec![None::<u64>; 10_000]));
    let data = payload(3, DATA_BYTES);
    run_threads(dir.path(), 1, secs, move |_, i| {
        let s = (i % 10_000) as usize;
        let mut slot = store.lock().expect("slot");
        let (store, versions) = &mut *slot;
        let ids: Vec<[u8; 16]> = (0..100).map(|j| event_id((i << 8) | j)).collect();
        let events: Vec<([u8; 16], &str, &[u8])> =
            ids.iter().map(|id| (*id, "Bulk", &data[..])).collect();
        assert_eq!(
            store
                .append(&format!("bulk-{s}"), versions[s], &events)
                .ok(),
            Some(true)
        );
        versions[s] = Some(versions[s].map_or(99, |v| v + 100));
        100
    })
}
