//! Property: under injected I/O faults — the Nth write, fsync, directory
//! fsync, rename, open, read or truncate failing once or persistently, with
//! EIO, ENOSPC or a short write — a failed append returns `Err` (never `Ok`),
//! no `Ok` follows an I/O failure until the store is reopened, nothing panics,
//! and every acknowledged append survives a crash and reopen.
//! Method: `FaultyStorage` over the crash-simulating `MemStorage`.

use std::sync::Arc;

use annals::storage::{CrashMode, Fault, FaultKind, FaultOp, FaultyStorage, MemStorage};
use annals::{AppendResult, Direction, Error, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    // Small segments, so rolls (create, fsync dir, rename) happen often.
    Options::default().segment_bytes(8 << 10)
}

fn event(i: u64) -> EventData {
    EventData::new(
        "Happened",
        format!("event {i} {}", "x".repeat((i % 200) as usize)),
    )
}

/// Every acknowledged append is readable at its versions and positions, and
/// the log verifies.
fn check_acked(store: &Store, acked: &[(AppendResult, u64)]) {
    for (result, i) in acked {
        let read = store
            .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(read.len(), 1, "lost {result:?}");
        assert_eq!(read[0].position, result.first_position);
        assert_eq!(read[0].data, event(*i).data);
    }
    store.verify().unwrap();
}

#[test]
fn an_fsync_failure_poisons_the_store_until_reopen() {
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push((
            store
                .append("s", ExpectedVersion::Any, vec![event(i)])
                .unwrap()
                .unwrap(),
            i,
        ));
    }
    // One fsync fails, once. The store must not retry it, and must not
    // accept anything else, even though the next fsync would succeed.
    faulty.inject(Fault {
        op: FaultOp::Sync,
        nth: 0,
        persistent: false,
        kind: FaultKind::Eio,
    });
    let failed = store.append("s", ExpectedVersion::Any, vec![event(5)]);
    assert!(
        matches!(&failed, Err(e) if matches!(e.poison_cause(), Some(Error::Log(_)))),
        "{failed:?}"
    );
    for i in 6..9 {
        // Every later request is refused with the same cause.
        let refused = store.append("t", ExpectedVersion::Any, vec![event(i)]);
        assert!(
            matches!(&refused, Err(e) if matches!(e.poison_cause(), Some(Error::Log(_)))),
            "{refused:?}"
        );
    }
    // What was acknowledged is still readable from the open store.
    check_acked(&store, &acked);
    drop(store);

    // Linux may drop the dirty pages of a failed fsync: the crash image
    // without unsynced data is what the reopened store must live with.
    let image = mem.crash_image(1, CrashMode::DropUnsynced);
    let store = Store::open_storage(Arc::new(image), options()).unwrap();
    check_acked(&store, &acked);
    assert!(store
        .append("s", ExpectedVersion::Any, vec![event(9)])
        .unwrap()
        .is_ok());
}

#[test]
fn disk_full_is_a_clear_error_nothing_partial_is_visible_and_writes_resume_after_reopen() {
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push((
            store
                .append("s", ExpectedVersion::Any, vec![event(i)])
                .unwrap()
                .unwrap(),
            i,
        ));
    }
    let before = store.read_all(0, usize::MAX).unwrap();
    faulty.inject(Fault {
        op: FaultOp::Write,
        nth: 0,
        persistent: true,
        kind: FaultKind::ShortWrite,
    });
    let full = store
        .append("s", ExpectedVersion::Any, vec![event(3), event(4)])
        .unwrap_err();
    let message = full.to_string();
    assert!(
        message.contains("No space left") || message.contains("os error 28"),
        "{message}"
    );
    assert_eq!(
        store.read_all(0, usize::MAX).unwrap(),
        before,
        "a partial append is visible"
    );
    assert_eq!(store.position_end(), 3);
    drop(store);

    // Space is back: the same directory (and lock holder) reopens.
    faulty.heal();
    let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
    assert_eq!(
        store.read_all(0, usize::MAX).unwrap(),
        before,
        "the half-written append survived"
    );
    check_acked(&store, &acked);
    let resumed = store
        .append("s", ExpectedVersion::Exact(2), vec![event(5)])
        .unwrap()
        .unwrap();
    assert_eq!((resumed.first_version, resumed.first_position), (3, 3));
}

#[test]
fn injected_faults_of_every_kind_never_lose_an_acknowledged_append() {
    let ops = [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::SyncDir,
        FaultOp::Rename,
        FaultOp::Open,
        FaultOp::Truncate,
    ];
    let kinds = [FaultKind::Eio, FaultKind::NoSpace, FaultKind::ShortWrite];
    let (mut runs, mut injected, mut verified) = (0u64, 0u64, 0u64);
    let mut fired_ops = std::collections::HashSet::new();
    for op in ops {
        for nth in [0u64, 1, 2, 3, 5, 8, 13] {
            for (k, kind) in kinds.iter().enumerate() {
                let persistent = (nth + k as u64).is_multiple_of(2);
                let mem = MemStorage::new();
                let faulty = FaultyStorage::new(Arc::new(mem.handle()));
                let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
                faulty.inject(Fault {
                    op,
                    nth,
                    persistent,
                    kind: *kind,
                });
                let mut acked = Vec::new();
                let mut failed = false;
                for i in 0..150u64 {
                    let stream = format!("s-{}", i % 4);
                    match store.append(&stream, ExpectedVersion::Any, vec![event(i)]) {
                        Ok(Ok(result)) => {
                            assert!(!failed, "{op:?}/{nth}/{kind:?}: Ok after an I/O failure");
                            acked.push((result, i));
                        }
                        Ok(Err(conflict)) => panic!("unexpected conflict {conflict}"),
                        Err(_) => failed = true,
                    }
                }
                injected += faulty.injected();
                if faulty.injected() > 0 {
                    fired_ops.insert(format!("{op:?}"));
                    assert!(
                        failed,
                        "{op:?}/{nth}/{kind:?}: a fault fired but no append failed"
                    );
                }
                drop(store);
                let image = mem.crash_image(nth * 31 + k as u64, CrashMode::TearUnsynced);
                let store = Store::open_storage(Arc::new(image), options())
                    .unwrap_or_else(|e| panic!("{op:?}/{nth}/{kind:?}: reopen failed: {e}"));
                check_acked(&store, &acked);
                verified += acked.len() as u64;
                runs += 1;
            }
        }
    }
    eprintln!(
        "fault runs {runs}, faults injected {injected}, acknowledged appends verified {verified}"
    );
    assert_eq!(
        fired_ops.len(),
        ops.len(),
        "faults of some kinds never fired: {fired_ops:?}"
    );
    assert!(
        injected >= runs / 2,
        "too few faults fired: {injected} in {runs} runs"
    );
}
