//! The bank-account example under cqrs-es' `CqrsFramework` on Annals, in
//! each of cqrs-es' three modes (events, snapshots every 3 events,
//! aggregate store), against cqrs-es' in-memory store as the reference;
//! and a reopened store loads the same account.

#[path = "../examples/bank_account/account.rs"]
mod account;
mod common;

use account::{BankAccount, BankAccountCommand as Command};
use annals_cqrs_es::AnnalsEventRepository;
use cqrs_es::mem_store::MemStore;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{CqrsFramework, EventStore};

fn commands(id: &str) -> Vec<Command> {
    let mut commands = vec![Command::OpenAccount {
        account_id: id.into(),
    }];
    for n in 0..10 {
        commands.push(Command::DepositMoney {
            amount: 10.0 * f64::from(n),
        });
        commands.push(Command::WithdrawMoney { amount: 7.5 });
        commands.push(Command::WriteCheck {
            check_number: n.to_string(),
            amount: 1000.0, // refused while the balance is lower
        });
    }
    commands
}

/// Runs the commands and returns which succeeded.
async fn run<ES: EventStore<BankAccount>>(store: ES, id: &str) -> Vec<bool> {
    let cqrs = CqrsFramework::new(store, vec![], ());
    let mut accepted = Vec::new();
    for command in commands(id) {
        accepted.push(cqrs.execute(id, command).await.is_ok());
    }
    accepted
}

#[tokio::test]
async fn the_bank_account_runs_on_annals_as_on_the_in_memory_store_in_every_mode() {
    let id = "acct";
    let memory = MemStore::<BankAccount>::default();
    let accepted_memory = run(memory.clone(), id).await;
    let reference = memory.load_aggregate(id).await.unwrap();
    assert!(accepted_memory.contains(&false) && accepted_memory.contains(&true));

    for mode in ["events", "snapshots", "aggregate"] {
        let dir = tempfile::tempdir().unwrap();
        let repo = AnnalsEventRepository::new(annals::Store::open(dir.path()).unwrap());
        let make = |repo: AnnalsEventRepository| match mode {
            "events" => PersistedEventStore::<_, BankAccount>::new_event_store(repo),
            "snapshots" => PersistedEventStore::new_snapshot_store(repo, 3),
            _ => PersistedEventStore::new_aggregate_store(repo),
        };
        let accepted = run(make(repo.clone()), id).await;
        assert_eq!(accepted, accepted_memory, "{mode}");
        let loaded = make(repo.clone()).load_aggregate(id).await.unwrap();
        assert_eq!(loaded.aggregate, reference.aggregate, "{mode}");
        assert_eq!(
            loaded.current_sequence, reference.current_sequence,
            "{mode}"
        );
        let snapshot = repo.get_snapshot::<BankAccount>(id).await.unwrap();
        assert_eq!(snapshot.is_some(), mode != "events", "{mode}");

        // Reopened, the store loads the same account.
        drop(repo);
        let repo = AnnalsEventRepository::new(annals::Store::open(dir.path()).unwrap());
        let loaded = make(repo).load_aggregate(id).await.unwrap();
        assert_eq!(loaded.aggregate, reference.aggregate, "{mode} after reopen");
    }
}

#[tokio::test]
async fn a_crash_between_the_append_and_the_snapshot_leaves_an_older_snapshot_never_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let repo = AnnalsEventRepository::new(annals::Store::open(dir.path()).unwrap());
    let id = "acct";
    let snapshots = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo.clone(), 2);
    let cqrs = CqrsFramework::new(snapshots, vec![], ());
    cqrs.execute(
        id,
        Command::OpenAccount {
            account_id: id.into(),
        },
    )
    .await
    .unwrap();
    cqrs.execute(id, Command::DepositMoney { amount: 5.0 })
        .await
        .unwrap();
    let saved = repo.get_snapshot::<BankAccount>(id).await.unwrap().unwrap();
    assert_eq!(saved.current_sequence, 2);
    // Events committed without their snapshot: what a crash between the
    // append and the snapshot save leaves behind.
    let events = PersistedEventStore::<_, BankAccount>::new_event_store(repo.clone());
    let bare = CqrsFramework::new(events, vec![], ());
    for amount in [1.0, 2.0] {
        bare.execute(id, Command::DepositMoney { amount })
            .await
            .unwrap();
    }
    drop((cqrs, bare, repo));
    let repo = AnnalsEventRepository::new(annals::Store::open(dir.path()).unwrap());
    let stale = repo.get_snapshot::<BankAccount>(id).await.unwrap().unwrap();
    assert_eq!(stale, saved, "the older snapshot, as saved");
    let reader = PersistedEventStore::<_, BankAccount>::new_snapshot_store(repo, 2);
    let loaded = reader.load_aggregate(id).await.unwrap();
    assert_eq!(loaded.current_sequence, 4);
    assert_eq!(
        loaded.aggregate.balance, 8.0,
        "the snapshot plus the events after it"
    );
}

#[tokio::test]
async fn in_aggregate_store_mode_a_snapshot_left_behind_conflicts_until_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = AnnalsEventRepository::new(annals::Store::open(dir.path()).unwrap());
    let id = "acct";
    let aggregates = PersistedEventStore::<_, BankAccount>::new_aggregate_store(repo.clone());
    let cqrs = CqrsFramework::new(aggregates, vec![], ());
    cqrs.execute(
        id,
        Command::OpenAccount {
            account_id: id.into(),
        },
    )
    .await
    .unwrap();
    // A commit whose snapshot save was lost (a crash between the two).
    let events = PersistedEventStore::<_, BankAccount>::new_event_store(repo.clone());
    let bare = CqrsFramework::new(events, vec![], ());
    bare.execute(id, Command::DepositMoney { amount: 5.0 })
        .await
        .unwrap();

    // As saved, the snapshot is behind: the next command conflicts and
    // writes nothing.
    let deposit = || Command::DepositMoney { amount: 2.0 };
    let refused = cqrs.execute(id, deposit()).await.unwrap_err();
    assert!(
        matches!(refused, cqrs_es::AggregateError::AggregateConflict),
        "{refused}"
    );
    assert_eq!(repo.store().position_end(), 2);

    // Caught up, the same command succeeds on the right state.
    let repo = repo.with_snapshot_catch_up();
    let snapshot = repo.get_snapshot::<BankAccount>(id).await.unwrap().unwrap();
    assert_eq!(
        (snapshot.current_sequence, snapshot.current_snapshot),
        (2, 1)
    );
    let aggregates = PersistedEventStore::<_, BankAccount>::new_aggregate_store(repo.clone());
    let cqrs = CqrsFramework::new(aggregates, vec![], ());
    cqrs.execute(id, deposit()).await.unwrap();
    let loaded = PersistedEventStore::<_, BankAccount>::new_event_store(repo)
        .load_aggregate(id)
        .await
        .unwrap();
    assert_eq!(
        (loaded.current_sequence, loaded.aggregate.balance),
        (3, 7.0)
    );
}
