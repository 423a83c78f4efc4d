//! Replication API: a replica fed with `append_replicated`, one source
//! append at a time, holds the source's `$all` record for record (ids,
//! versions, positions, timestamps, boundaries, tombstones), passes
//! `verify`, and refuses anything but the source's next append, writing
//! nothing.

use annals::{EventData, ExpectedVersion, ReplicatedEvent, Store};

/// Appends of every shape: single, multi-stream (one stream twice),
/// metadata, a delete, and a stream appended after the delete of another.
fn fill(source: &Store) {
    source
        .append(
            "order-1",
            ExpectedVersion::NoStream,
            vec![EventData::new("Placed", "{}").with_metadata("m1")],
        )
        .unwrap()
        .unwrap();
    source
        .append_many(vec![
            (
                "order-2".into(),
                ExpectedVersion::Any,
                vec![EventData::new("A", "a"), EventData::new("B", "b")],
            ),
            (
                "order-1".into(),
                ExpectedVersion::Exact(0),
                vec![EventData::new("C", "c")],
            ),
            (
                "weird. *>stream ü".into(),
                ExpectedVersion::Any,
                vec![EventData::new("D", vec![0u8, 255, 10])],
            ),
        ])
        .unwrap()
        .unwrap();
    source
        .delete_stream("order-2", ExpectedVersion::Exact(1))
        .unwrap()
        .unwrap();
    source
        .append(
            "order-1",
            ExpectedVersion::Exact(1),
            (0..5)
                .map(|i| EventData::new("E", format!("{i}")))
                .collect(),
        )
        .unwrap()
        .unwrap();
}

/// The source's `$all` cut into its appends.
fn appends_of(source: &Store) -> Vec<Vec<ReplicatedEvent>> {
    let mut appends = Vec::new();
    let mut current = Vec::new();
    for event in source.read_all_replicated(0, usize::MAX).unwrap() {
        let last = event.append_last;
        current.push(event);
        if last {
            appends.push(std::mem::take(&mut current));
        }
    }
    assert!(current.is_empty());
    appends
}

#[test]
fn a_replica_holds_the_sources_feed_record_for_record() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = Store::open(a.path()).unwrap();
    fill(&source);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let replica = Store::open(b.path()).unwrap();
    let appends = appends_of(&source);
    assert_eq!(appends.len(), 4);
    for append in appends {
        let results = replica.append_replicated(append).unwrap();
        assert!(results.iter().all(|r| !r.duplicate));
    }
    let all = |s: &Store| s.read_all_replicated(0, usize::MAX).unwrap();
    assert_eq!(all(&replica), all(&source));
    assert_eq!(
        replica.read_all(0, 100).unwrap(),
        source.read_all(0, 100).unwrap()
    );
    assert!(replica
        .read_stream("order-2", 0, annals::Direction::Forward, 9)
        .is_err());
    replica.verify().unwrap();
    drop(replica);
    // Reopened (index replayed from the log), still the same.
    let replica = Store::open(b.path()).unwrap();
    assert_eq!(all(&replica), all(&source));
    assert_eq!(
        replica.stream_version("order-1").unwrap(),
        source.stream_version("order-1").unwrap()
    );
}

#[test]
fn a_replica_refuses_anything_but_the_next_append_and_writes_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = Store::open(a.path()).unwrap();
    fill(&source);
    let replica = Store::open(b.path()).unwrap();
    let appends = appends_of(&source);
    // Skipping an append.
    let err = replica.append_replicated(appends[1].clone()).unwrap_err();
    assert!(matches!(err, annals::Error::InvalidInput(_)), "{err}");
    assert_eq!(replica.position_end(), 0);
    replica.append_replicated(appends[0].clone()).unwrap();
    // Repeating one.
    let err = replica.append_replicated(appends[0].clone()).unwrap_err();
    assert!(matches!(err, annals::Error::InvalidInput(_)), "{err}");
    // Half an append.
    let mut half = appends[1].clone();
    half.truncate(2);
    assert!(replica.append_replicated(half).is_err());
    // A version that does not follow the stream.
    let mut shifted = appends[1].clone();
    shifted[3].event.version += 1;
    assert!(replica.append_replicated(shifted).is_err());
    // Two commit times in one append.
    let mut split = appends[1].clone();
    split[0].event.timestamp_us += 1;
    assert!(replica.append_replicated(split).is_err());
    assert!(replica.append_replicated(Vec::new()).is_err());
    assert_eq!(replica.position_end(), 1);
    replica.append_replicated(appends[1].clone()).unwrap();
    assert_eq!(replica.position_end(), 5);
    replica.verify().unwrap();
}

#[test]
fn a_read_only_store_waits_for_the_owners_appends_and_refuses_replicated_ones() {
    let a = tempfile::tempdir().unwrap();
    let source = Store::open(a.path()).unwrap();
    fill(&source);
    let reader = Store::open_read_only(a.path()).unwrap();
    let end = source.position_end();
    let short = std::time::Duration::from_millis(20);
    assert_eq!(reader.wait_for_end(end, short).unwrap(), end);
    let appends = appends_of(&source);
    assert!(matches!(
        reader.append_replicated(appends[0].clone()),
        Err(annals::Error::ReadOnly(_))
    ));
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(30));
        source
            .append(
                "late-1",
                ExpectedVersion::Any,
                vec![EventData::new("L", "l")],
            )
            .unwrap()
            .unwrap();
    });
    let seen = reader
        .wait_for_end(end, std::time::Duration::from_secs(10))
        .unwrap();
    writer.join().unwrap();
    assert_eq!(seen, end + 1);
    let late = reader.read_all_replicated(end, 10).unwrap();
    assert_eq!(late.len(), 1);
    assert!(late[0].append_first && late[0].append_last);
}
