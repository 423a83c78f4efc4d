//! An aggregate loaded from a snapshot plus the events after it: a bank
//! account takes 1,010 deposits, a snapshot of its balance is saved every
//! 250 events, and loading (folding the events after the newest snapshot,
//! zero-copy) gives the same balance as replaying the whole stream — also
//! after the store is reopened.
//! Run: `cargo run -p annals --example snapshots`.

use std::ops::ControlFlow;

use annals::{AggregatePart, Direction, EventData, ExpectedVersion, Store};

/// The balance after a deposit event's data (an amount, u64 LE).
fn deposit(balance: u64, data: &[u8]) -> u64 {
    let amount: [u8; 8] = data.try_into().unwrap_or_default();
    balance + u64::from_le_bytes(amount)
}

/// Loads the account: the newest snapshot, then the events after it.
fn load(store: &Store) -> annals::Result<(u64, Option<u64>, usize)> {
    let mut balance = 0;
    let loaded = store.load_aggregate_with("account-1", |part| {
        match part {
            AggregatePart::Snapshot(snapshot) => {
                let bytes: [u8; 8] = snapshot.data.try_into().unwrap_or_default();
                balance = u64::from_le_bytes(bytes);
            }
            AggregatePart::Event(event) => balance = deposit(balance, event.data),
        }
        ControlFlow::Continue(())
    })?;
    Ok((balance, loaded.snapshot_version, loaded.events))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let mut balance = 0;
    for n in 0..1_010u64 {
        let amount = n % 17 + 1;
        let event = EventData::new("Deposited", amount.to_le_bytes().to_vec());
        let expected = match n {
            0 => ExpectedVersion::NoStream,
            n => ExpectedVersion::Exact(n - 1),
        };
        let written = store.append("account-1", expected, vec![event])??;
        balance += amount;
        if written.last_version % 250 == 249 {
            store.save_snapshot(
                "account-1",
                written.last_version,
                "Balance.v1",
                &balance.to_le_bytes(),
            )?;
        }
    }
    let (loaded, from, events) = load(&store)?;
    println!("loaded balance {loaded} from the snapshot at version {from:?} and {events} events");

    let mut replayed = 0;
    store.read_stream_with("account-1", 0, Direction::Forward, usize::MAX, |event| {
        replayed = deposit(replayed, event.data);
        ControlFlow::Continue(())
    })?;
    assert_eq!((loaded, replayed), (balance, balance));

    store.close()?;
    let store = Store::open(dir.path())?;
    assert_eq!(load(&store)?, (balance, Some(999), 10));
    println!("after reopen: the same balance, from the snapshot at version 999");
    Ok(())
}
