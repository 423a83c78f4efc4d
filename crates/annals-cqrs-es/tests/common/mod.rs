//! What the backend's tests share: a store in a temporary directory, and
//! the test aggregate of the SQL backends' own tests (created, tested,
//! something else).

#![allow(dead_code)]

use std::collections::HashMap;

use annals_cqrs_es::AnnalsEventRepository;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A repository on a fresh store; keep the directory alive while it is used.
pub fn repository() -> (tempfile::TempDir, AnnalsEventRepository) {
    let dir = tempfile::tempdir().unwrap();
    let store = annals::Store::open(dir.path()).unwrap();
    (dir, AnnalsEventRepository::new(store))
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestAggregate {
    pub id: String,
    pub description: String,
    pub tests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TestEvent {
    Created { id: String },
    Tested { test_name: String },
    SomethingElse { description: String },
}

#[derive(Debug, Deserialize)]
pub enum TestCommand {
    Create { id: String },
    Test { test_name: String },
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestError(pub String);

/// What `handle` waits for before deciding, when set: lets a test hold
/// commands until every one of them has loaded the aggregate.
#[derive(Default)]
pub struct TestServices {
    pub gate: Option<std::sync::Arc<tokio::sync::Barrier>>,
}

impl DomainEvent for TestEvent {
    fn event_type(&self) -> String {
        match self {
            TestEvent::Created { .. } => "Created",
            TestEvent::Tested { .. } => "Tested",
            TestEvent::SomethingElse { .. } => "SomethingElse",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl Aggregate for TestAggregate {
    const TYPE: &'static str = "TestAggregate";
    type Command = TestCommand;
    type Event = TestEvent;
    type Error = TestError;
    type Services = TestServices;

    async fn handle(
        &mut self,
        command: TestCommand,
        services: &TestServices,
        sink: &EventSink<Self>,
    ) -> Result<(), TestError> {
        if let Some(gate) = &services.gate {
            gate.wait().await;
        }
        let event = match command {
            TestCommand::Create { id } => TestEvent::Created { id },
            TestCommand::Test { test_name } => TestEvent::Tested { test_name },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TestEvent) {
        match event {
            TestEvent::Created { id } => self.id = id,
            TestEvent::Tested { test_name } => self.tests.push(test_name),
            TestEvent::SomethingElse { description } => self.description = description,
        }
    }
}

/// The serialized form of `event` as sequence `sequence` of `id`, with
/// metadata naming the sequence (so each event's metadata differs).
pub fn test_event(id: &str, sequence: usize, event: TestEvent) -> SerializedEvent {
    let metadata = HashMap::from([("sequence".to_string(), sequence.to_string())]);
    SerializedEvent::new(
        id.to_string(),
        sequence,
        TestAggregate::TYPE.to_string(),
        event.event_type(),
        event.event_version(),
        serde_json::to_value(&event).unwrap(),
        serde_json::to_value(metadata).unwrap(),
    )
}

pub fn created(id: &str) -> TestEvent {
    TestEvent::Created { id: id.to_string() }
}

pub fn tested(name: &str) -> TestEvent {
    TestEvent::Tested {
        test_name: name.to_string(),
    }
}

pub fn something_else(description: &str) -> TestEvent {
    TestEvent::SomethingElse {
        description: description.to_string(),
    }
}

/// Drains a replay stream, failing on any error item.
pub async fn drain(
    mut stream: cqrs_es::persist::ReplayStream,
) -> Vec<cqrs_es::EventEnvelope<TestAggregate>> {
    let mut events = Vec::new();
    while let Some(event) = stream.next::<TestAggregate>(&[]).await {
        events.push(event.unwrap());
    }
    events
}
