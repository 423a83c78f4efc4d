//! Group commit under a slow disk: writers appending in a loop share one
//! `fdatasync` (the leader gathers the callers the previous group answered)
//! instead of taking turns in two halves; a caller alone never waits; every
//! append is answered once, at the version it expects.
//! Method: `FaultyStorage::slow_syncs` over the memory backend, so that an
//! fsync takes milliseconds whatever the machine's disk, and
//! `Store::write_stats` to count groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::storage::{FaultyStorage, MemStorage};
use annals::{Durability, EventData, ExpectedVersion, Options, Store};

/// A store whose every fsync takes `sync` longer.
fn slow_store(sync: Duration, options: Options) -> Store {
    let faulty = FaultyStorage::new(Arc::new(MemStorage::new().handle()));
    faulty.slow_syncs(sync);
    Store::open_storage(Arc::new(faulty), options).unwrap()
}

/// What the write path did during a workload.
#[derive(Debug)]
struct Counts {
    groups: u64,
    requests: u64,
    gathers: u64,
    gather_timeouts: u64,
}

/// `writers` threads each append `appends` single events to their own
/// stream with exact expectations, pausing `think` after each; returns
/// what the write path did meanwhile.
fn appends_in_a_loop(store: &Store, writers: usize, appends: u64, think: Duration) -> Counts {
    let before = store.write_stats();
    let threads: Vec<_> = (0..writers)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let stream = format!("writer-{t}");
                for i in 0..appends {
                    let expected = match i {
                        0 => ExpectedVersion::NoStream,
                        _ => ExpectedVersion::Exact(i - 1),
                    };
                    let written = store
                        .append(&stream, expected, vec![EventData::new("E", format!("{i}"))])
                        .unwrap()
                        .unwrap();
                    assert_eq!(written.first_version, i, "writer {t}");
                    std::thread::sleep(think);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let after = store.write_stats();
    Counts {
        groups: after.groups - before.groups,
        requests: after.requests - before.requests,
        gathers: after.gathers - before.gathers,
        gather_timeouts: after.gather_timeouts - before.gather_timeouts,
    }
}

#[test]
fn writers_in_a_loop_share_one_fsync_instead_of_taking_turns() {
    // Without gathering, four writers settle into groups of one and three
    // (the leader's request, then the three that queued during its sync):
    // two on average. With it, the leader of the three waits for the one
    // it knows is coming back.
    let store = slow_store(Duration::from_millis(3), Options::default());
    let stats = appends_in_a_loop(&store, 4, 60, Duration::ZERO);
    assert_eq!(stats.requests, 240);
    assert!(
        stats.groups * 3 <= stats.requests,
        "groups average fewer than 3 of 4 writers: {stats:?}"
    );
    assert!(stats.gathers > 0, "{stats:?}");
    assert_eq!(store.stream_version("writer-3").unwrap().to_string(), "59");
}

#[test]
fn a_caller_alone_never_waits_to_gather() {
    let store = slow_store(Duration::from_millis(1), Options::default());
    let stats = appends_in_a_loop(&store, 1, 40, Duration::ZERO);
    assert_eq!((stats.groups, stats.requests), (40, 40));
    assert_eq!(stats.gathers, 0, "{stats:?}");
}

#[test]
fn gathering_can_be_turned_off() {
    let store = slow_store(Duration::from_millis(2), Options::default().gather(false));
    let stats = appends_in_a_loop(&store, 4, 30, Duration::ZERO);
    assert_eq!(stats.requests, 120);
    assert_eq!((stats.gathers, stats.gather_timeouts), (0, 0), "{stats:?}");
}

#[test]
fn callers_that_do_not_come_back_soon_turn_gathering_off_for_a_while() {
    // Two writers that think 3 ms between appends, longer than a gather
    // may last (a quarter of a 4 ms commit): the leader expects the one it
    // answered back, but that one is thinking, so the gather ends at its
    // limit with nobody new. Without the rule below, 79 of 80 groups paid
    // that wait. Each such gather turns gathering off for the next 8
    // groups, so at most one group in 9 pays it.
    let store = slow_store(Duration::from_millis(4), Options::default());
    let stats = appends_in_a_loop(&store, 2, 40, Duration::from_millis(3));
    assert_eq!(stats.requests, 80);
    assert!(
        stats.gather_timeouts <= stats.groups / 9 + 1,
        "futile gathers not bounded: {stats:?}"
    );
}

#[test]
fn batched_mode_gathers_writers_for_its_delay() {
    let options = Options::default().durability(Durability::Batched {
        delay: Duration::from_millis(20),
    });
    let store = slow_store(Duration::ZERO, options);
    let stats = appends_in_a_loop(&store, 4, 10, Duration::ZERO);
    assert_eq!(stats.requests, 40);
    assert!(
        stats.groups * 3 <= stats.requests,
        "a 20 ms batching delay left groups under 3 of 4 writers: {stats:?}"
    );
    assert_eq!(stats.gathers, 0, "gathering is for Fsync mode: {stats:?}");
}

#[test]
fn a_full_batch_commits_without_waiting_out_the_delay() {
    // Groups of at most 4 and 4 writers: every group fills at once, so 3
    // rounds take far less than one 2 s delay.
    let mut options = Options::default().durability(Durability::Batched {
        delay: Duration::from_secs(2),
    });
    options.group_max = 4;
    let store = slow_store(Duration::ZERO, options);
    let started = Instant::now();
    let stats = appends_in_a_loop(&store, 4, 3, Duration::ZERO);
    let took = started.elapsed();
    assert_eq!((stats.groups, stats.requests), (3, 12), "{stats:?}");
    assert!(
        took < Duration::from_secs(2),
        "waited out the delay: {took:?}"
    );
}
