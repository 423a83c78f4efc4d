//! Secondary-key hash collisions everywhere: in this process every stream
//! name and every category and event type hashes to one of four values
//! (`annals_index::collisions::force`), so every secondary run holds many
//! keys under one hash and each read must tell them apart by reading the
//! event. Category and type reads are checked against a filtered scan of
//! `$all`, with runs written, merged and reopened.
//!
//! One test in its own binary: the switch is process-wide and must be set
//! before any store is opened.

use std::ops::ControlFlow;

use annals::{Durability, EventData, ExpectedVersion, Options, Store};
use annals_index::SecondaryKey;

fn check(store: &Store, categories: &[String], types: &[String]) {
    let all = store.read_all(0, usize::MAX).unwrap();
    for from in [0, 7, all.len() as u64 / 2] {
        for category in categories {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from)
                .filter(|e| annals::category_of(&e.stream) == Some(category.as_str()))
                .map(|e| e.position)
                .collect();
            let mut got = Vec::new();
            store
                .read_category_with(category, from, usize::MAX, |e| {
                    got.push(e.position);
                    ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(got, want, "category {category} from {from}");
        }
        for pair in types.chunks(2) {
            let want: Vec<u64> = all
                .iter()
                .filter(|e| e.position >= from)
                .filter(|e| pair.contains(&e.event_type))
                .map(|e| e.position)
                .collect();
            let got: Vec<u64> = store
                .read_event_types(pair, from, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.position)
                .collect();
            assert_eq!(got, want, "types {pair:?} from {from}");
        }
    }
}

#[test]
fn colliding_secondary_hashes_never_mix_keys_up() {
    annals_index::collisions::force();
    let categories: Vec<String> = (0..12).map(|i| format!("cat{i}")).collect();
    let types: Vec<String> = (0..10).map(|i| format!("Type{i}")).collect();
    let hashes: std::collections::HashSet<u64> = categories
        .iter()
        .map(|c| SecondaryKey::category(c).hash())
        .chain(types.iter().map(|t| SecondaryKey::event_type(t).hash()))
        .collect();
    assert!(hashes.len() <= 4, "collisions are forced: {hashes:?}");

    let dir = tempfile::tempdir().unwrap();
    let options = || {
        Options::default()
            .index_buffer_events(40)
            .durability(Durability::Buffered)
    };
    let write = |store: &Store, salt: usize| {
        for i in 0..400 {
            let stream = format!("{}-{}", categories[(i * 5 + salt) % 12], i % 9);
            let events = (0..1 + i % 3)
                .map(|k| EventData::new(types[(i + k * 3 + salt) % 10].clone(), "{}"))
                .collect();
            store
                .append(&stream, ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
    };
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        write(&store, 0);
        check(&store, &categories, &types);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(
        store.index_report().secondary.replayed,
        0,
        "{:?}",
        store.index_report()
    );
    check(&store, &categories, &types);
    write(&store, 1);
    check(&store, &categories, &types);
    store.verify().unwrap();
}
