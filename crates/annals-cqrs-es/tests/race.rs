//! Lost races: commands on the same aggregate that loaded the same version
//! and commit at once. Exactly one wins; every other gets
//! `OptimisticLockError` (cqrs-es: `AggregateConflict`) and writes
//! nothing; the store holds the winner's events and nothing else.

mod common;

use std::sync::Arc;

use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_persists_of_the_same_next_sequence_one_wins_the_other_gets_a_lock_error() {
    let (_dir, repo) = repository();
    let id = "raced";
    let rounds = 50;
    for sequence in 1..=rounds {
        let racers = ["left", "right"].map(|side| {
            let repo = repo.clone();
            let event = test_event(id, sequence, tested(side));
            tokio::spawn(async move { repo.persist::<TestAggregate>(&[event], None).await })
        });
        let mut winners = Vec::new();
        let mut losers = 0;
        for (side, racer) in ["left", "right"].iter().zip(racers) {
            match racer.await.unwrap() {
                Ok(()) => winners.push(*side),
                Err(PersistenceError::OptimisticLockError) => losers += 1,
                Err(other) => panic!("round {sequence}: {other}"),
            }
        }
        assert_eq!((winners.len(), losers), (1, 1), "round {sequence}");
        let stored = repo.get_events::<TestAggregate>(id).await.unwrap();
        assert_eq!(stored.len(), sequence, "round {sequence}");
        let last = stored.last().unwrap();
        assert_eq!(
            last.payload,
            serde_json::to_value(tested(winners[0])).unwrap()
        );
    }
    assert_eq!(repo.store().position_end(), rounds as u64);
    assert!(repo.store().verify().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_commands_on_one_aggregate_race_and_one_gets_a_conflict() {
    let (_dir, repo) = repository();
    let id = "account";
    // Both commands load the aggregate, then wait for each other before
    // deciding, so both commit on top of the same version.
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    let services = TestServices {
        gate: Some(gate.clone()),
    };
    let store = PersistedEventStore::<_, TestAggregate>::new_event_store(repo.clone());
    let cqrs = Arc::new(CqrsFramework::new(store, vec![], services));
    // A first event, so the race is on version 0, not on creation.
    let opener = tokio::spawn({
        let gate = gate.clone();
        async move { gate.wait().await }
    });
    cqrs.execute(id, TestCommand::Create { id: id.into() })
        .await
        .unwrap();
    opener.await.unwrap();

    let racers = ["left", "right"].map(|name| {
        let cqrs = cqrs.clone();
        let command = TestCommand::Test {
            test_name: name.into(),
        };
        tokio::spawn(async move { cqrs.execute(id, command).await })
    });
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    let wins = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let conflicts = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(AggregateError::AggregateConflict)))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{outcomes:?}");

    let events = repo.get_events::<TestAggregate>(id).await.unwrap();
    let sequences: Vec<usize> = events.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, [1, 2]);
    let reader = PersistedEventStore::<_, TestAggregate>::new_event_store(repo.clone());
    let loaded = reader.load_aggregate(id).await.unwrap();
    assert_eq!(loaded.aggregate.tests.len(), 1);
    assert_eq!(loaded.current_sequence, 2);
    assert!(repo.store().verify().is_ok());
}
