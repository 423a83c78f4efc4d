//! The bank-account example of cqrs-es' documentation on an Annals store:
//! `cargo run -p annals-cqrs-es --example bank_account [-- DIR]`. Runs a few
//! commands (one refused), then shows the account's events as cqrs-es and
//! as Annals see them. Without DIR the store lives in a temporary directory.

mod account;

use std::collections::HashMap;

use account::{BankAccount, BankAccountCommand};
use annals::Direction;
use annals_cqrs_es::AnnalsEventRepository;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::CqrsFramework;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| temporary.path().to_path_buf(), Into::into);
    let repo = AnnalsEventRepository::new(annals::Store::open(&dir)?);
    // Snapshots every 2 events, so the example saves some.
    let store = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), 2);
    let cqrs = CqrsFramework::new(store, vec![], ());

    let id = format!("{}", uuid::Uuid::new_v4());
    let commands = [
        BankAccountCommand::OpenAccount {
            account_id: id.clone(),
        },
        BankAccountCommand::DepositMoney { amount: 1000.0 },
        BankAccountCommand::WriteCheck {
            check_number: "1170".into(),
            amount: 256.28,
        },
        BankAccountCommand::WithdrawMoney { amount: 5000.0 },
        BankAccountCommand::WithdrawMoney { amount: 200.0 },
    ];
    for command in commands {
        let shown = format!("{command:?}");
        let metadata = HashMap::from([("teller".to_string(), "example".to_string())]);
        match cqrs.execute_with_metadata(&id, command, metadata).await {
            Ok(()) => println!("ok       {shown}"),
            Err(refused) => println!("refused  {shown}: {refused}"),
        }
    }

    println!("\ncqrs-es sees account {id}:");
    for event in repo.get_events::<BankAccount>(&id).await? {
        println!(
            "  #{} {} v{} {} metadata {}",
            event.sequence, event.event_type, event.event_version, event.payload, event.metadata
        );
    }
    let stream = annals_cqrs_es::stream_name("account", &id)?;
    println!("\nAnnals holds stream {stream}:");
    for event in repo
        .store()
        .read_stream(&stream, 0, Direction::Forward, 100)?
    {
        println!(
            "  version {} position {} {}",
            event.version, event.position, event.event_type
        );
    }
    if let Some(snapshot) = repo.get_snapshot::<BankAccount>(&id).await? {
        println!(
            "\nsnapshot #{} after sequence {}: {}",
            snapshot.current_snapshot, snapshot.current_sequence, snapshot.aggregate
        );
    }
    Ok(())
}
