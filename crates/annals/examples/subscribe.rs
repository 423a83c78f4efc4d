//! A read model fed by a subscription: count orders per category while a
//! writer thread appends, saving the consumer's checkpoint every few
//! events; then "restart" and resume from the saved checkpoint, receiving
//! exactly the rest.
//! Run: `cargo run -p annals --example subscribe`.

use std::collections::BTreeMap;
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Start, Store, SubscriptionItem, SubscriptionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || -> annals::Result<()> {
            for i in 0..200u64 {
                let stream = format!("{}-{}", ["order", "invoice"][(i % 2) as usize], i % 7);
                store.append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![EventData::new("Placed", "{}")],
                )??;
            }
            Ok(())
        })
    };

    // First run: follow `order` streams until 60 events were handled.
    let start = Start::after(store.load_checkpoint("orders")?);
    let mut handled = 0;
    let mut per_stream: BTreeMap<String, u64> = BTreeMap::new();
    for item in store.subscribe(SubscriptionOptions::category("order").start(start)) {
        match item? {
            SubscriptionItem::Event(event) => {
                *per_stream.entry(event.stream.clone()).or_default() += 1;
                handled += 1;
                if handled % 10 == 0 {
                    store.save_checkpoint("orders", event.position)?;
                }
                if handled == 60 {
                    break;
                }
            }
            SubscriptionItem::CaughtUp { position } => println!("caught up at {position:?}"),
            SubscriptionItem::Checkpoint { position } => {
                store.save_checkpoint("orders", position).map(drop)?
            }
        }
    }
    writer.join().map_err(|_| "writer panicked")??;
    println!("first run handled {handled} events: {per_stream:?}");

    // "Restart": resume after the saved checkpoint; no gap, no repeat.
    let saved = store.load_checkpoint("orders")?;
    let mut resumed =
        store.subscribe(SubscriptionOptions::category("order").start(Start::after(saved)));
    let mut rest = 0;
    while let Some(item) = resumed.next_timeout(Duration::from_millis(200)) {
        match item? {
            SubscriptionItem::Event(_) => rest += 1,
            SubscriptionItem::CaughtUp { .. } => break,
            SubscriptionItem::Checkpoint { .. } => {}
        }
    }
    println!("resumed after {saved:?}: {rest} more order events");
    // The checkpoint was saved at the 60th event handled: exactly the
    // other 40 of the 100 order events follow it.
    assert_eq!(handled + rest, 100);
    Ok(())
}
