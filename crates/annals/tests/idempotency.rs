//! Property: a retried append whose events are already stored (same ids,
//! same streams, at the positions the original got) returns the original
//! result marked `duplicate` and writes nothing — for every expectation
//! kind, after a restart, for multi-stream appends and for concurrent
//! retries; a retry that matches only part of an earlier append is a clear
//! error. Method: real directories, explicit ids.

use annals::{Error, EventData, EventId, ExpectedVersion, Store};

fn events(tag: u8, n: u8) -> Vec<EventData> {
    (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[0] = tag;
            id[1] = i;
            id[15] = 0xEE;
            EventData::new("Placed", format!("{tag}/{i}")).with_id(EventId(id))
        })
        .collect()
}

#[test]
fn a_retry_after_a_timeout_is_not_duplicated_for_every_expectation_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("other", ExpectedVersion::Any, events(99, 2))
        .unwrap()
        .unwrap();
    let cases = [
        ("s-any", ExpectedVersion::Any, None),
        ("s-new", ExpectedVersion::NoStream, None),
        ("s-exists", ExpectedVersion::StreamExists, Some(1u8)),
        ("s-exact", ExpectedVersion::Exact(0), Some(1)),
    ];
    for (tag, (stream, expected, seed)) in cases.into_iter().enumerate() {
        if let Some(n) = seed {
            store
                .append(stream, ExpectedVersion::NoStream, events(50 + tag as u8, n))
                .unwrap()
                .unwrap();
        }
        let batch = events(tag as u8, 3);
        let original = store
            .append(stream, expected, batch.clone())
            .unwrap()
            .unwrap();
        assert!(!original.duplicate);
        let end = store.position_end();
        // The caller timed out and retries the very same call.
        let retried = store
            .append(stream, expected, batch.clone())
            .unwrap()
            .unwrap();
        assert!(retried.duplicate, "{stream}");
        assert_eq!(
            (
                retried.first_version,
                retried.last_version,
                retried.first_position,
                retried.last_position
            ),
            (
                original.first_version,
                original.last_version,
                original.first_position,
                original.last_position
            ),
        );
        assert_eq!(
            store.position_end(),
            end,
            "{stream}: the retry wrote something"
        );
    }
    // After a restart the ids are still known.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let end = store.position_end();
    let retried = store
        .append("s-exact", ExpectedVersion::Exact(0), events(3, 3))
        .unwrap()
        .unwrap();
    assert!(retried.duplicate);
    assert_eq!((retried.first_version, retried.last_version), (1, 3));
    assert_eq!(store.position_end(), end);
    store.verify().unwrap();
}

#[test]
fn a_retry_matching_only_part_of_an_earlier_append_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("s", ExpectedVersion::NoStream, events(1, 3))
        .unwrap()
        .unwrap();
    let end = store.position_end();
    let mut superset = events(1, 3);
    superset.extend(events(2, 1));
    let partials = vec![
        // Regression: a prefix was once accepted as a duplicate, because
        // nothing marked where the original append ended in its frame.
        ("s", events(1, 2)),               // a prefix only
        ("s", superset),                   // the original plus a new event
        ("t", events(1, 3)),               // the same ids in another stream
        ("s", events(1, 3)[1..].to_vec()), // shifted
    ];
    for (stream, batch) in partials {
        let got = store.append(stream, ExpectedVersion::Any, batch);
        assert!(
            matches!(got, Err(Error::InvalidInput(ref m)) if m.contains("part of an earlier append")),
            "{got:?}"
        );
    }
    assert_eq!(store.position_end(), end);
    // Ids repeated inside one append are refused up front.
    let mut twice = events(7, 1);
    twice.push(twice[0].clone());
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, twice),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn a_multi_stream_retry_returns_the_original_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let request = || {
        vec![
            ("from".to_owned(), ExpectedVersion::NoStream, events(1, 1)),
            ("to".to_owned(), ExpectedVersion::NoStream, events(2, 2)),
        ]
    };
    let original = store.append_many(request()).unwrap().unwrap();
    let retried = store.append_many(request()).unwrap().unwrap();
    assert!(retried.iter().all(|r| r.duplicate));
    for (a, b) in original.iter().zip(&retried) {
        assert_eq!(
            (&a.stream, a.first_version, a.last_position),
            (&b.stream, b.first_version, b.last_position)
        );
    }
    assert_eq!(store.position_end(), 3);
}

#[test]
fn concurrent_retries_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..40u8 {
        let stream = format!("order-{round}");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (store, stream) = (store.clone(), stream.clone());
                std::thread::spawn(move || {
                    store
                        .append(&stream, ExpectedVersion::Any, events(round, 2))
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| !r.duplicate).count(),
            1,
            "round {round}: {results:?}"
        );
        assert!(results
            .iter()
            .all(|r| r.first_position == results[0].first_position));
    }
    assert_eq!(store.position_end(), 80);
}
