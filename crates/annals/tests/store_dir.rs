//! Property: a writable open creates a store only in a missing or empty
//! directory; a non-empty directory that is not a store is refused with
//! `Error::NotAStore` and left exactly as it was (no `LOCK`, no segment,
//! no `CLEAN`, its `*.tmp` files and a user's file named `CLEAN` kept).
//! Method: real directories listed and hashed before and after each open,
//! and the same on the in-memory storage.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use annals::storage::{MemStorage, Storage};
use annals::{Error, Options, Store};

/// Every file: name → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn a_writable_open_refuses_a_foreign_directory_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"my notes").unwrap();
    std::fs::write(dir.path().join("draft.tmp"), b"unsaved").unwrap();
    std::fs::write(dir.path().join("CLEAN"), b"mine").unwrap();
    let before = files(dir.path());
    for open in [
        Store::open(dir.path()),
        Store::open_with(dir.path(), Options::default()),
        Store::rebuild_index(dir.path(), Options::default(), &mut |_, _| {}),
    ] {
        let error = open.unwrap_err();
        assert!(matches!(error, Error::NotAStore(_)), "{error}");
        assert!(error.to_string().starts_with("not an Annals store: "));
        assert_eq!(files(dir.path()), before);
    }
}

#[test]
fn a_writable_open_creates_a_store_in_a_missing_or_empty_directory() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("new");
    let store = Store::open(&missing).unwrap();
    assert!(store.id().is_some());
    store.close().unwrap();
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Store::open(&empty).unwrap().close().unwrap();
    assert!(empty.join("IDENTITY").exists());
    // And the store it made opens again.
    Store::open(&empty).unwrap().close().unwrap();
}

#[test]
fn a_foreign_in_memory_storage_is_refused_too() {
    let storage = Arc::new(MemStorage::new());
    storage.create("photo.jpg").unwrap();
    let before = storage.list().unwrap();
    let error = Store::open_storage(storage.clone(), Options::default()).unwrap_err();
    assert!(matches!(error, Error::NotAStore(_)), "{error}");
    assert_eq!(storage.list().unwrap(), before);
}
