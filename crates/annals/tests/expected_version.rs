//! Property: every expected-version kind against a stream that is absent,
//! present, or deleted, behaves as documented — accepted appends get dense
//! versions, rejected ones report the true actual version and write nothing.
//! Method: a table, run on a fresh store per row, checked again after reopen.

use annals::{CurrentVersion, Direction, Error, EventData, ExpectedVersion, Store};

#[derive(Debug, Clone, Copy)]
enum Setup {
    Absent,
    /// Holds versions 0..=2.
    Present,
    /// Held versions 0..=2, then was deleted (tombstone at 3).
    Deleted,
}

fn prepare(store: &Store, setup: Setup) {
    if matches!(setup, Setup::Present | Setup::Deleted) {
        let events = (0..3)
            .map(|i| EventData::new("Seeded", format!("{i}")))
            .collect();
        store
            .append("s-1", ExpectedVersion::NoStream, events)
            .unwrap()
            .unwrap();
    }
    if matches!(setup, Setup::Deleted) {
        store
            .delete_stream("s-1", ExpectedVersion::Exact(2))
            .unwrap()
            .unwrap();
    }
}

#[test]
fn every_expectation_against_absent_present_and_deleted_streams() {
    use ExpectedVersion as E;
    // (setup, expected, Ok(first version) or Err(actual))
    let table: Vec<(Setup, E, Result<u64, CurrentVersion>)> = vec![
        (Setup::Absent, E::Any, Ok(0)),
        (Setup::Absent, E::NoStream, Ok(0)),
        (
            Setup::Absent,
            E::StreamExists,
            Err(CurrentVersion::NoStream),
        ),
        (Setup::Absent, E::Exact(0), Err(CurrentVersion::NoStream)),
        (Setup::Present, E::Any, Ok(3)),
        (Setup::Present, E::NoStream, Err(CurrentVersion::Version(2))),
        (Setup::Present, E::StreamExists, Ok(3)),
        (Setup::Present, E::Exact(2), Ok(3)),
        (Setup::Present, E::Exact(1), Err(CurrentVersion::Version(2))),
        (Setup::Present, E::Exact(3), Err(CurrentVersion::Version(2))),
        (
            Setup::Deleted,
            E::Any,
            Err(CurrentVersion::Deleted { last: 3 }),
        ),
        (
            Setup::Deleted,
            E::NoStream,
            Err(CurrentVersion::Deleted { last: 3 }),
        ),
        (
            Setup::Deleted,
            E::StreamExists,
            Err(CurrentVersion::Deleted { last: 3 }),
        ),
        (
            Setup::Deleted,
            E::Exact(2),
            Err(CurrentVersion::Deleted { last: 3 }),
        ),
        (
            Setup::Deleted,
            E::Exact(3),
            Err(CurrentVersion::Deleted { last: 3 }),
        ),
    ];
    for (setup, expected, want) in table {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        prepare(&store, setup);
        let before = store.position_end();
        let events = vec![EventData::new("Tested", "a"), EventData::new("Tested", "b")];
        let got = store.append("s-1", expected, events).unwrap();
        match (want, got) {
            (Ok(first), Ok(result)) => {
                assert_eq!(result.first_version, first, "{setup:?} {expected}");
                assert_eq!(result.last_version, first + 1);
                assert_eq!(result.first_position, before);
                assert_eq!(result.last_position, before + 1);
                assert_eq!(
                    store.stream_version("s-1").unwrap(),
                    CurrentVersion::Version(first + 1)
                );
            }
            (Err(actual), Err(conflict)) => {
                assert_eq!(conflict.actual, actual, "{setup:?} {expected}");
                assert_eq!(conflict.expected, expected);
                assert_eq!(conflict.stream, "s-1");
                assert_eq!(
                    store.position_end(),
                    before,
                    "a rejected append wrote something"
                );
                assert_eq!(store.stream_version("s-1").unwrap(), actual);
            }
            (want, got) => panic!("{setup:?} {expected}: wanted {want:?}, got {got:?}"),
        }
        // The outcome survives reopen.
        let version = store.stream_version("s-1").unwrap();
        let dump = store.index_dump().unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stream_version("s-1").unwrap(), version);
        assert_eq!(store.index_dump().unwrap(), dump);
        match setup {
            Setup::Deleted => assert!(matches!(
                store.read_stream("s-1", 0, Direction::Forward, 10),
                Err(Error::StreamDeleted(_))
            )),
            _ => {
                let events = store.read_stream("s-1", 0, Direction::Forward, 10).unwrap();
                let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
                assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>());
            }
        }
    }
}

#[test]
fn a_deleted_stream_leaves_a_tombstone_in_the_global_feed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append("a-1", ExpectedVersion::Any, vec![EventData::new("E", "x")])
        .unwrap()
        .unwrap();
    let conflict = store
        .delete_stream("a-1", ExpectedVersion::Exact(5))
        .unwrap()
        .unwrap_err();
    assert_eq!(conflict.actual, CurrentVersion::Version(0));
    let deleted = store
        .delete_stream("a-1", ExpectedVersion::Exact(0))
        .unwrap()
        .unwrap();
    assert_eq!(deleted.first_version, 1);
    let all = store.read_all(0, 10).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[1].is_tombstone());
    assert_eq!(all[1].stream, "a-1");
    assert!(store
        .delete_stream("a-1", ExpectedVersion::Any)
        .unwrap()
        .is_err());
}
