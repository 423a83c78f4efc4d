//! Property: every store has an identity (`IDENTITY`: magic, version, a
//! random id) written durably when it is created, kept across reopens; a
//! store made before the file existed still opens, with every event, and its
//! writable open writes one; a damaged identity file is refused, not
//! replaced. Method: real directories, the file removed or flipped.

use annals::{EventData, ExpectedVersion, Options, Store};

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

#[test]
fn a_new_store_has_an_id_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small()).unwrap();
    let id = store.id().unwrap();
    store.close().unwrap();
    assert!(dir.path().join("IDENTITY").exists());
    assert!(!dir.path().join("IDENTITY.tmp").exists());
    let store = Store::open_with(dir.path(), small()).unwrap();
    assert_eq!(store.id().unwrap(), id);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        Store::open_with(other.path(), small())
            .unwrap()
            .id()
            .unwrap(),
        id
    );
}

#[test]
fn an_older_store_without_an_identity_opens_and_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small()).unwrap();
    for i in 0..200u64 {
        let data = EventData::new("Changed", format!("{i}"));
        store
            .append(&format!("s-{}", i % 7), ExpectedVersion::Any, vec![data])
            .unwrap()
            .unwrap();
    }
    let before: Vec<_> = store.read_all(0, usize::MAX).unwrap();
    let old_id = store.id().unwrap();
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("IDENTITY")).unwrap();
    assert_eq!(
        annals::probe_dir(dir.path()).unwrap(),
        annals::DirKind::OldStore
    );

    let store = Store::open_with(dir.path(), small()).unwrap();
    assert_ne!(store.id().unwrap(), old_id, "a new random id");
    assert_eq!(store.read_all(0, usize::MAX).unwrap(), before);
    assert!(dir.path().join("IDENTITY").exists());
    assert_eq!(
        annals::probe_dir(dir.path()).unwrap(),
        annals::DirKind::Store
    );
    let id = store.id().unwrap();
    store.close().unwrap();
    assert_eq!(
        Store::open_with(dir.path(), small()).unwrap().id().unwrap(),
        id
    );
}

#[test]
fn a_damaged_identity_is_refused_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    Store::open_with(dir.path(), small())
        .unwrap()
        .close()
        .unwrap();
    let path = dir.path().join("IDENTITY");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let error = Store::open_with(dir.path(), small()).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    assert!(error.to_string().contains("IDENTITY"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
