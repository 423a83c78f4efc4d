//! Property: the index's memory stays bounded when index files cannot be
//! written. While every buffer is full and writing them fails, appends are
//! refused with `Error::IndexBacklog`, writing nothing and leaving the store
//! usable; once index files can be written again, appends resume and every
//! acknowledged event is readable, also after a reopen.
//! Method: `FaultyStorage` failing every rename (run files are written to a
//! temporary name, then renamed) under a 10-event index buffer.

use std::sync::Arc;

use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage, MemStorage};
use annals::{Direction, Error, EventData, ExpectedVersion, Options, Store};

const BUFFER: u64 = 10;

#[test]
fn frozen_index_buffers_stay_bounded_when_index_writes_keep_failing() {
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let options = Options::default()
        .index_buffer_events(BUFFER)
        .zero_ahead(false);
    let store = Store::open_storage(Arc::new(faulty.clone()), options.clone()).unwrap();
    faulty.inject(Fault {
        op: FaultOp::Rename,
        nth: 0,
        persistent: true,
        kind: FaultKind::NoSpace,
    });
    let mut acked = 0u64;
    let mut refused = 0u64;
    for i in 0..500u64 {
        match store.append(
            "s",
            ExpectedVersion::Any,
            vec![EventData::new("E", format!("{i}"))],
        ) {
            Ok(Ok(_)) => acked += 1,
            Ok(Err(conflict)) => panic!("unexpected conflict {conflict}"),
            Err(Error::IndexBacklog(cause)) => {
                assert!(!cause.is_empty());
                refused += 1;
            }
            Err(other) => panic!("append {i}: {other}"),
        }
        let buffered = store.stats().index_buffered;
        assert!(
            buffered <= 4 * BUFFER + 1,
            "the index holds {buffered} events in memory after {i} appends"
        );
    }
    assert!(
        refused > 0,
        "no append was refused while index files failed"
    );
    assert!(
        acked >= 3 * BUFFER,
        "refused too early: {acked} acknowledged"
    );
    // A refused append wrote nothing.
    assert_eq!(store.position_end(), acked);

    // Space is back: appends resume, nothing was lost.
    faulty.heal();
    for i in 0..50u64 {
        store
            .append(
                "s",
                ExpectedVersion::Any,
                vec![EventData::new("E", format!("after {i}"))],
            )
            .unwrap()
            .unwrap();
        acked += 1;
    }
    let events = store
        .read_stream("s", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(events.len() as u64, acked);
    store.verify().unwrap();
    drop(store);
    drop(faulty);
    let store = Store::open_storage(Arc::new(mem.handle()), options).unwrap();
    let events = store
        .read_stream("s", 0, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(events.len() as u64, acked);
    store.verify().unwrap();
}
