//! Property: what a subscriber sees depends on the durability mode as
//! documented. In `Fsync` mode every event a subscriber has received
//! survives a simulated crash (unsynced writes dropped, torn or garbled);
//! in `Buffered` mode a subscriber sees acknowledged events before they are
//! flushed, and such an event can be taken back by a crash (after a flush
//! it cannot). Saved consumer checkpoints survive crashes like appends.
//! Method: the in-memory crash-image storage, writer threads, a live
//! subscriber; the image is taken after reading what the subscriber saw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{CrashMode, MemStorage};
use annals::{
    Durability, EventData, ExpectedVersion, Options, Store, SubscriptionItem, SubscriptionOptions,
};

fn small() -> Options {
    Options::default().segment_bytes(64 << 10)
}

#[test]
fn in_fsync_mode_every_event_a_subscriber_saw_survives_a_crash() {
    let mut verified = 0;
    for seed in 0..12u64 {
        let mem = MemStorage::new();
        let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let (store, stop) = (store.clone(), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && i < 2000 {
                        let event = EventData::new("E", format!("{seed}/{t}/{i}"));
                        store
                            .append(&format!("w-{t}"), ExpectedVersion::Any, vec![event])
                            .unwrap()
                            .unwrap();
                        i += 1;
                    }
                })
            })
            .collect();
        let mut subscription = store.subscribe(SubscriptionOptions::all());
        let mut seen = Vec::new();
        while seen.len() < 50 + seed as usize * 20 {
            if let Some(SubscriptionItem::Event(e)) = subscription
                .next_timeout(Duration::from_secs(10))
                .transpose()
                .unwrap()
            {
                seen.push(e);
            }
        }
        // Taken while the writers still append: only what was synced is kept.
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        drop((subscription, store));
        let store = Store::open_storage(Arc::new(image), small()).unwrap();
        let after = store.read_all(0, usize::MAX).unwrap();
        for e in &seen {
            let kept = after
                .get(e.position as usize)
                .expect("a seen event was lost");
            assert_eq!(kept, e);
            verified += 1;
        }
    }
    assert!(verified >= 12 * 50, "{verified}");
}

#[test]
fn in_buffered_mode_a_subscriber_sees_unflushed_events_a_crash_can_take_back() {
    let mem = MemStorage::new();
    let options = small().durability(Durability::Buffered).zero_ahead(false);
    let store = Store::open_storage(Arc::new(mem.handle()), options.clone()).unwrap();
    store
        .append(
            "a-1",
            ExpectedVersion::Any,
            vec![EventData::new("Flushed", "1")],
        )
        .unwrap()
        .unwrap();
    store.flush().unwrap();
    let mut subscription =
        store.subscribe(SubscriptionOptions::all().start(annals::Start::After(0)));
    store
        .append(
            "a-1",
            ExpectedVersion::Any,
            vec![EventData::new("Unflushed", "2")],
        )
        .unwrap()
        .unwrap();
    let item = subscription
        .next_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert!(matches!(&item, SubscriptionItem::Event(e) if e.event_type == "Unflushed"));
    let lost = Store::open_storage(
        Arc::new(mem.crash_image(1, CrashMode::DropUnsynced)),
        options.clone(),
    )
    .unwrap();
    assert_eq!(lost.position_end(), 1, "the unflushed event is taken back");
    drop(lost);
    store.flush().unwrap();
    let kept = Store::open_storage(
        Arc::new(mem.crash_image(2, CrashMode::DropUnsynced)),
        options,
    )
    .unwrap();
    assert_eq!(kept.position_end(), 2);
}

#[test]
fn saved_checkpoints_survive_a_crash() {
    for seed in 0..6u64 {
        let mem = MemStorage::new();
        let store = Store::open_storage(Arc::new(mem.handle()), small()).unwrap();
        for p in 0..20 {
            store.save_checkpoint("reader", p * 3).unwrap();
        }
        let mode = [
            CrashMode::DropUnsynced,
            CrashMode::TearUnsynced,
            CrashMode::GarbleUnsynced,
        ][seed as usize % 3];
        let image = mem.crash_image(seed, mode);
        drop(store);
        let store = Store::open_storage(Arc::new(image), small()).unwrap();
        assert_eq!(store.load_checkpoint("reader").unwrap(), Some(57));
    }
}
