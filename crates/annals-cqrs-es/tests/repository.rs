//! The repository against a real store in a temporary directory, mirroring
//! the SQL backends' own tests (events, snapshots, stream, conflict), plus
//! what is Annals' own: the sequence ↔ version mapping, the exact
//! round-trip of type, version and metadata, the category of a type, and
//! refusals that write nothing.

mod common;

use annals::{Direction, EventData, ExpectedVersion};
use annals_cqrs_es::Error;
use common::*;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedSnapshot};
use serde_json::json;

fn is_lock_error(result: Result<(), PersistenceError>) -> bool {
    matches!(result, Err(PersistenceError::OptimisticLockError))
}

/// The backend's typed error inside a `PersistenceError`.
fn backend_error(error: &PersistenceError) -> &Error {
    let source = match error {
        PersistenceError::UnknownError(source)
        | PersistenceError::DeserializationError(source)
        | PersistenceError::ConnectionError(source) => source,
        PersistenceError::OptimisticLockError => panic!("a lock error, not the backend's"),
    };
    source.downcast_ref::<Error>().expect("the backend's Error")
}

#[tokio::test]
async fn event_repositories() {
    let (_dir, repo) = repository();
    let repo = repo.with_streaming_channel_size(1);
    let id = uuid::Uuid::new_v4().to_string();
    assert!(repo
        .get_events::<TestAggregate>(&id)
        .await
        .unwrap()
        .is_empty());

    let first = [
        test_event(&id, 1, created(&id)),
        test_event(&id, 2, tested("a test was run")),
    ];
    repo.persist::<TestAggregate>(&first, None).await.unwrap();
    assert_eq!(repo.get_events::<TestAggregate>(&id).await.unwrap(), first);

    // Sequence 2 is taken: the stale writer loses, nothing of it is written.
    let stale = [
        test_event(&id, 2, something_else("this should not persist")),
        test_event(&id, 3, something_else("nor this")),
    ];
    assert!(is_lock_error(
        repo.persist::<TestAggregate>(&stale, None).await
    ));
    // So does one that starts over at sequence 1.
    let restart = [test_event(&id, 1, created(&id))];
    assert!(is_lock_error(
        repo.persist::<TestAggregate>(&restart, None).await
    ));
    assert_eq!(repo.get_events::<TestAggregate>(&id).await.unwrap(), first);

    let mut stream = repo.stream_events::<TestAggregate>(&id).await.unwrap();
    let mut found = 0;
    while let Some(event) = stream.next::<TestAggregate>(&[]).await {
        assert_eq!(event.unwrap().sequence, found + 1);
        found += 1;
    }
    assert_eq!(found, 2);
    let all = drain(repo.stream_all_events::<TestAggregate>().await.unwrap()).await;
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn snapshot_repositories() {
    let (_dir, repo) = repository();
    let id = uuid::Uuid::new_v4().to_string();
    assert_eq!(repo.get_snapshot::<TestAggregate>(&id).await.unwrap(), None);

    let state = |description: &str| {
        serde_json::to_value(TestAggregate {
            id: id.clone(),
            description: description.to_string(),
            tests: vec!["testA".into(), "testB".into()],
        })
        .unwrap()
    };
    let first = [test_event(&id, 1, created(&id))];
    let update = Some((id.clone(), state("first"), 1));
    repo.persist::<TestAggregate>(&first, update).await.unwrap();
    let expected = |sequence, counter, description| SerializedSnapshot {
        aggregate_id: id.clone(),
        aggregate: state(description),
        current_sequence: sequence,
        current_snapshot: counter,
    };
    assert_eq!(
        repo.get_snapshot::<TestAggregate>(&id).await.unwrap(),
        Some(expected(1, 1, "first"))
    );

    // Iterated: events 2 and 3, snapshot 2 at sequence 3.
    let next = [
        test_event(&id, 2, tested("a")),
        test_event(&id, 3, tested("b")),
    ];
    let update = Some((id.clone(), state("second"), 2));
    repo.persist::<TestAggregate>(&next, update).await.unwrap();
    assert_eq!(
        repo.get_snapshot::<TestAggregate>(&id).await.unwrap(),
        Some(expected(3, 2, "second"))
    );

    // A writer that loaded before that commit loses; its snapshot is not saved.
    let stale = [test_event(&id, 2, something_else("should not be saved"))];
    let update = Some((id.clone(), state("should not be saved"), 2));
    assert!(is_lock_error(
        repo.persist::<TestAggregate>(&stale, update).await
    ));
    assert_eq!(
        repo.get_snapshot::<TestAggregate>(&id).await.unwrap(),
        Some(expected(3, 2, "second"))
    );
    assert_eq!(repo.snapshot_save_failures(), 0);
}

#[tokio::test]
async fn sequences_are_stream_versions_one_below_and_every_field_round_trips() {
    let (_dir, repo) = repository();
    let id = "0b6e-7f"; // an id may hold '-': only the first one ends the category
    let mut events = vec![
        test_event(id, 1, created(id)),
        test_event(id, 2, tested("ünïcödé \"quoted\"")),
    ];
    events[1].event_version = "2.3.1".into();
    events[1].metadata = json!({"user": "ada", "nested": {"n": [1, 2.5, -3e-7, null, true]}});
    events[0].metadata = json!({});
    repo.persist::<TestAggregate>(&events, None).await.unwrap();
    assert_eq!(repo.get_events::<TestAggregate>(id).await.unwrap(), events);
    assert_eq!(
        repo.get_last_events::<TestAggregate>(id, 1).await.unwrap(),
        events[1..]
    );
    assert!(repo
        .get_last_events::<TestAggregate>(id, 2)
        .await
        .unwrap()
        .is_empty());

    let stored = repo
        .store()
        .read_stream("TestAggregate-0b6e-7f", 0, Direction::Forward, 10)
        .unwrap();
    let versions: Vec<u64> = stored.iter().map(|event| event.version).collect();
    assert_eq!(versions, [0, 1], "sequence n is version n - 1");
    assert_eq!(stored[1].event_type, "Tested");
    assert_eq!(
        annals::category_of(&stored[1].stream),
        Some("TestAggregate")
    );
    let metadata: serde_json::Value = serde_json::from_slice(&stored[1].metadata).unwrap();
    assert_eq!(
        metadata,
        json!({"event_version": "2.3.1", "metadata": events[1].metadata})
    );
    let payload: serde_json::Value = serde_json::from_slice(&stored[1].data).unwrap();
    assert_eq!(payload, events[1].payload);
}

#[tokio::test]
async fn an_aggregate_type_holding_a_dash_is_refused_and_nothing_is_written() {
    #[derive(Default, serde::Serialize, serde::Deserialize)]
    struct Dashed;
    impl cqrs_es::Aggregate for Dashed {
        const TYPE: &'static str = "bank-account";
        type Command = ();
        type Event = TestEvent;
        type Error = TestError;
        type Services = ();
        async fn handle(
            &mut self,
            _: (),
            _: &(),
            _: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), TestError> {
            Ok(())
        }
        fn apply(&mut self, _: TestEvent) {}
    }
    let (_dir, repo) = repository();
    let mut event = test_event("1", 1, created("1"));
    event.aggregate_type = "bank-account".into();
    let refused = repo.persist::<Dashed>(&[event], None).await.unwrap_err();
    assert!(
        matches!(backend_error(&refused), Error::AggregateType { aggregate_type, .. } if aggregate_type == "bank-account"),
        "{refused}"
    );
    let refused = repo.get_events::<Dashed>("1").await.unwrap_err();
    assert!(matches!(
        backend_error(&refused),
        Error::AggregateType { .. }
    ));
    assert!(repo.stream_all_events::<Dashed>().await.is_err());
    assert_eq!(repo.store().position_end(), 0);
}

#[tokio::test]
async fn a_batch_that_is_not_one_aggregates_next_run_is_refused_and_nothing_is_written() {
    let (_dir, repo) = repository();
    let id = "a";
    repo.persist::<TestAggregate>(&[test_event(id, 1, created(id))], None)
        .await
        .unwrap();
    let mut other_type = test_event(id, 2, tested("x"));
    other_type.aggregate_type = "Other".into();
    let bad_batches = [
        vec![test_event(id, 0, tested("x"))],
        // The SQL backends' "bad sequence number" batch: 3 then 2.
        vec![
            test_event(id, 3, tested("x")),
            test_event(id, 2, tested("y")),
        ],
        vec![
            test_event(id, 2, tested("x")),
            test_event(id, 4, tested("y")),
        ],
        vec![
            test_event(id, 2, tested("x")),
            test_event("b", 3, tested("y")),
        ],
        vec![other_type],
    ];
    for batch in bad_batches {
        let refused = repo
            .persist::<TestAggregate>(&batch, None)
            .await
            .unwrap_err();
        assert!(
            matches!(backend_error(&refused), Error::Batch(_)),
            "{refused}"
        );
    }
    let state = serde_json::to_value(TestAggregate::default()).unwrap();
    let refused = repo
        .persist::<TestAggregate>(&[], Some((id.into(), state.clone(), 1)))
        .await
        .unwrap_err();
    assert!(matches!(
        backend_error(&refused),
        Error::SnapshotWithoutEvents { .. }
    ));
    let mismatched = Some(("b".into(), state, 1));
    let refused = repo
        .persist::<TestAggregate>(&[test_event(id, 2, tested("x"))], mismatched)
        .await
        .unwrap_err();
    assert!(
        matches!(backend_error(&refused), Error::Batch(_)),
        "{refused}"
    );
    assert_eq!(repo.store().position_end(), 1, "only the first event");
    assert_eq!(repo.get_snapshot::<TestAggregate>(id).await.unwrap(), None);
    // Nothing at all is a no-op.
    repo.persist::<TestAggregate>(&[], None).await.unwrap();
}

#[tokio::test]
async fn all_events_of_a_type_are_its_category_in_commit_order() {
    let (_dir, repo) = repository();
    let store = repo.store().clone();
    let foreign = |stream: &str| {
        store
            .append(
                stream,
                ExpectedVersion::Any,
                vec![EventData::new("X", "{}")],
            )
            .unwrap()
            .unwrap();
    };
    foreign("TestAggregateX-1"); // another category sharing the prefix
    for (round, id) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        let sequence = repo.get_events::<TestAggregate>(id).await.unwrap().len() + 1;
        let event = test_event(id, sequence, tested(&round.to_string()));
        repo.persist::<TestAggregate>(&[event], None).await.unwrap();
        foreign(&format!("Other-{round}"));
    }
    foreign("TestAggregate"); // no '-': in no category
    let all = drain(repo.stream_all_events::<TestAggregate>().await.unwrap()).await;
    let seen: Vec<(String, usize, TestEvent)> = all
        .into_iter()
        .map(|event| (event.aggregate_id, event.sequence, event.payload))
        .collect();
    let wanted: Vec<(String, usize, TestEvent)> =
        [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]
            .iter()
            .enumerate()
            .map(|(round, (id, sequence))| (id.to_string(), *sequence, tested(&round.to_string())))
            .collect();
    assert_eq!(seen, wanted);
}

#[tokio::test]
async fn a_replay_longer_than_a_chunk_through_a_channel_of_one_keeps_every_event_in_order() {
    let (_dir, repo) = repository();
    let repo = repo.with_streaming_channel_size(1);
    let id = "long";
    let events: Vec<_> = (1..=700)
        .map(|sequence| test_event(id, sequence, tested(&sequence.to_string())))
        .collect();
    for batch in events.chunks(100) {
        repo.persist::<TestAggregate>(batch, None).await.unwrap();
    }
    let one = drain(repo.stream_events::<TestAggregate>(id).await.unwrap()).await;
    let all = drain(repo.stream_all_events::<TestAggregate>().await.unwrap()).await;
    for replay in [one, all] {
        let sequences: Vec<usize> = replay.iter().map(|event| event.sequence).collect();
        assert_eq!(sequences, (1..=700).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_stored_event_that_does_not_decode_is_a_deserialization_error() {
    let (_dir, repo) = repository();
    let garbage = EventData::new("Tested", "not json").with_metadata("{}");
    repo.store()
        .append("TestAggregate-x", ExpectedVersion::NoStream, vec![garbage])
        .unwrap()
        .unwrap();
    let error = repo.get_events::<TestAggregate>("x").await.unwrap_err();
    assert!(
        matches!(error, PersistenceError::DeserializationError(_)),
        "{error}"
    );
    assert!(matches!(
        backend_error(&error),
        Error::Stored { version: 0, .. }
    ));
    let mut stream = repo.stream_events::<TestAggregate>("x").await.unwrap();
    assert!(stream.next::<TestAggregate>(&[]).await.unwrap().is_err());
    assert!(stream.next::<TestAggregate>(&[]).await.is_none());
}
