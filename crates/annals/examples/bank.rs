//! Load an aggregate, decide, append with the version you saw; retry on a
//! conflict. Run: `cargo run -p annals --example bank`.

use annals::{CurrentVersion, Direction, EventData, ExpectedVersion, Store};

fn balance(store: &Store, account: &str) -> annals::Result<(i64, ExpectedVersion)> {
    let events = store.read_stream(account, 0, Direction::Forward, usize::MAX)?;
    let total = events
        .iter()
        .map(|e| {
            std::str::from_utf8(&e.data)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum();
    let expected = match store.stream_version(account)? {
        CurrentVersion::Version(v) => ExpectedVersion::Exact(v),
        _ => ExpectedVersion::NoStream,
    };
    Ok((total, expected))
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
    assert_eq!(total, 100 * (1 + 2 + 3 + 4));
    Ok(())
}
