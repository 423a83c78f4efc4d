//! Property: an event's tags are stored with it and read back by every read
//! (stream, global feed, visitors, after a reopen); bad tags are a typed
//! error that writes nothing; a store written before tags existed (a
//! checked-in fixture, written by the build before this change) still
//! opens, reads with no tags, and takes tagged appends. Method: examples.

use std::ops::ControlFlow;
use std::path::Path;

use annals::{Direction, Error, EventData, ExpectedVersion, Store, TAGS_MAX, TAG_BYTES_MAX};

fn tagged(event_type: &str, tags: &[&str]) -> EventData {
    EventData::new(event_type, "{}").with_tags(tags.iter().copied())
}

#[test]
fn tags_come_back_from_every_read_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append(
                "student-42",
                ExpectedVersion::NoStream,
                vec![
                    tagged("StudentSubscribed", &["student:42", "course:7"]),
                    tagged("Untagged", &[]),
                ],
            )
            .unwrap()
            .unwrap();
        let events = store
            .read_stream("student-42", 0, Direction::Forward, 10)
            .unwrap();
        assert_eq!(events[0].tags, ["student:42", "course:7"]);
        assert!(events[1].tags.is_empty());
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let all = store.read_all(0, 10).unwrap();
    assert_eq!(all[0].tags, ["student:42", "course:7"]);
    let mut seen = Vec::new();
    store
        .read_all_with(0, 10, |event| {
            seen.push(event.tags.iter().map(str::to_owned).collect::<Vec<_>>());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(seen, [vec!["student:42", "course:7"], vec![]]);
    assert_eq!(store.verify().unwrap().events, store.position_end());
}

#[test]
fn bad_tags_are_invalid_input_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let long = "t".repeat(TAG_BYTES_MAX + 1);
    let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("tag:{i}")).collect();
    let bad = [
        EventData::new("E", "{}").with_tag(""),
        EventData::new("E", "{}").with_tag(long),
        EventData::new("E", "{}").with_tags(["a", "a"]),
        EventData::new("E", "{}").with_tags(many),
    ];
    for event in bad {
        let shown = format!("{:?}", event.tags);
        let error = store
            .append("s", ExpectedVersion::Any, vec![tagged("Ok", &["x"]), event])
            .unwrap_err();
        assert!(matches!(error, Error::InvalidInput(_)), "{shown}: {error}");
    }
    assert_eq!(store.position_end(), 0, "nothing written");
    let most: Vec<String> = (0..TAGS_MAX).map(|i| format!("{i:0>128}")).collect();
    store
        .append(
            "s",
            ExpectedVersion::Any,
            vec![EventData::new("E", "{}").with_tags(most.clone())],
        )
        .unwrap()
        .unwrap();
    assert_eq!(store.read_all(0, 1).unwrap()[0].tags, most);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_store_written_before_tags_opens_reads_and_takes_tagged_events() {
    // Written by `annals append` of the build before tags (segment cut to
    // the bytes written; no index files: the open rebuilds them).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-tags");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let store = Store::open(dir.path()).unwrap();
    let all = store.read_all(0, 10).unwrap();
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Registered", "Renamed", "CourseDefined"]);
    assert!(all.iter().all(|e| e.tags.is_empty()));
    assert_eq!(&all[1].metadata[..], br#"{"by":"x"}"#);
    store
        .append(
            "course-7",
            ExpectedVersion::Exact(0),
            vec![tagged("StudentSubscribed", &["course:7"])],
        )
        .unwrap()
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let all = store.read_all(0, 10).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].tags, ["course:7"]);
    assert_eq!(store.verify().unwrap().events, store.position_end());
}
