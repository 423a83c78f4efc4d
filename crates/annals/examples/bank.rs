//! Load an aggregate, decide, append with the version you saw; retry on a
//! conflict. Run: `cargo run -p annals --example bank`.

use std::ops::ControlFlow;

use annals::{Direction, EventData, ExpectedVersion, Store};

/// Folds the account's events into its balance, and returns the version of
/// the last event folded: the decision is based on exactly that version, so
/// that is what the append must expect. (Asking `stream_version` after the
/// read could return a newer version than the events folded, and a stale
/// decision would then be accepted.)
fn balance(store: &Store, account: &str) -> annals::Result<(i64, ExpectedVersion)> {
    let (mut total, mut seen) = (0, ExpectedVersion::NoStream);
    store.read_stream_with(account, 0, Direction::Forward, usize::MAX, |event| {
        total += std::str::from_utf8(event.data)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        seen = ExpectedVersion::Exact(event.version);
        ControlFlow::Continue(())
    })?;
    Ok((total, seen))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let tellers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || -> annals::Result<u32> {
                let mut retries = 0;
                for _ in 0..100 {
                    loop {
                        let (_, expected) = balance(&store, "account-1")?;
                        let deposit = EventData::new("Deposited", (t + 1).to_string());
                        match store.append("account-1", expected, vec![deposit])? {
                            Ok(_) => break,
                            Err(_conflict) => retries += 1,
                        }
                    }
                }
                Ok(retries)
            })
        })
        .collect();
    let mut retries = 0;
    for teller in tellers {
        retries += teller.join().map_err(|_| "teller panicked")??;
    }
    let (total, version) = balance(&store, "account-1")?;
    println!("balance {total} after 400 deposits at {version:?}; {retries} conflicts retried");
    // The four tellers' appends share fsyncs: group commit.
    let writes = store.write_stats();
    println!(
        "{} appends (conflicts included) in {} group commits",
        writes.requests, writes.groups
    );
    assert_eq!(total, 100 * (1 + 2 + 3 + 4));
    Ok(())
}
