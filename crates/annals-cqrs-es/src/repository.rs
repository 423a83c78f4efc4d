//! [`AnnalsEventRepository`]: cqrs-es' `PersistedEventRepository` on an
//! Annals [`Store`].

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use annals::{AggregatePart, Direction, EventData, ExpectedVersion, Store};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::blocking;
use crate::catch_up;
use crate::encoding::{self, Stored, SNAPSHOT_TYPE};
use crate::error::Error;
use crate::naming;
use crate::replay::{self, Source};

/// Events a replay stream buffers ahead of its consumer, by default.
const DEFAULT_STREAM_CHANNEL_EVENTS: usize = 200;

/// A cqrs-es event repository on an Annals [`Store`]: plug it into
/// `PersistedEventStore::new_event_store` (or `new_snapshot_store`,
/// `new_aggregate_store`) in place of `postgres-es`, `mysql-es` or
/// `sqlite-es`.
///
/// Aggregate instance `(type, id)` is stream `{type}-{id}`; sequence `n` is
/// stream version `n - 1`; a snapshot is an Annals snapshot at the version
/// of the last event it folds in. Every store call runs on Tokio's
/// blocking pool. See docs/CQRS-ES.md.
///
/// ```
/// use annals_cqrs_es::AnnalsEventRepository;
/// use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
/// # use cqrs_es::{Aggregate, DomainEvent, event_sink::EventSink};
/// # #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// # struct Opened;
/// # impl DomainEvent for Opened {
/// #     fn event_type(&self) -> String { "Opened".into() }
/// #     fn event_version(&self) -> String { "1.0".into() }
/// # }
/// # #[derive(Default, serde::Serialize, serde::Deserialize)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     const TYPE: &'static str = "Account";
/// #     type Command = (); type Event = Opened; type Error = std::io::Error; type Services = ();
/// #     async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn apply(&mut self, _: Opened) {}
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let repo = AnnalsEventRepository::new(annals::Store::open(dir.path())?);
/// let opened = SerializedEvent::new(
///     "42".into(), 1, "Account".into(), "Opened".into(), "1.0".into(),
///     serde_json::json!({"owner": "Ada"}), serde_json::json!({}),
/// );
/// repo.persist::<Account>(&[opened.clone()], None).await?;
/// assert_eq!(repo.get_events::<Account>("42").await?, vec![opened]);
/// // The same sequence again lost the race.
/// # let opened = SerializedEvent::new("42".into(), 1, "Account".into(), "Opened".into(), "1.0".into(), serde_json::json!({}), serde_json::json!({}));
/// assert!(repo.persist::<Account>(&[opened], None).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AnnalsEventRepository {
    store: Store,
    stream_channel_events: usize,
    snapshot_failures: Arc<AtomicU64>,
    snapshot_catch_up: bool,
}

/// A `persist` call checked and encoded, ready to run on the blocking pool.
struct Persist {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<EventData>,
    /// The snapshot's data (encoded with its number).
    snapshot: Option<Vec<u8>>,
}

impl AnnalsEventRepository {
    /// A repository on `store` (opened by the caller, with the durability
    /// it chooses; `Durability::Fsync`, the default, makes every persisted
    /// command durable before `persist` returns).
    pub fn new(store: Store) -> Self {
        AnnalsEventRepository {
            store,
            stream_channel_events: DEFAULT_STREAM_CHANNEL_EVENTS,
            snapshot_failures: Arc::new(AtomicU64::new(0)),
            snapshot_catch_up: false,
        }
    }

    /// Sets how many events a replay stream buffers ahead of its consumer
    /// (default 200; at least 1).
    pub fn with_streaming_channel_size(mut self, events: usize) -> Self {
        self.stream_channel_events = events.max(1);
        self
    }

    /// Makes `get_snapshot` fold the events after a snapshot into it
    /// (`Aggregate::apply`, events deserialized as stored, without
    /// upcasters; a snapshot or event that does not deserialize leaves the
    /// snapshot as saved). For cqrs-es' aggregate-store mode, which loads
    /// the snapshot alone: a snapshot left behind its stream by a crash
    /// between a commit's append and its snapshot save would otherwise make
    /// every later command on that aggregate conflict. Event-store and
    /// snapshot modes read the events after the snapshot themselves and do
    /// not need it.
    pub fn with_snapshot_catch_up(mut self) -> Self {
        self.snapshot_catch_up = true;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many snapshot saves failed after their events were committed
    /// (the command succeeded; the aggregate keeps its older snapshot). See
    /// docs/CQRS-ES.md, "Snapshots".
    pub fn snapshot_save_failures(&self) -> u64 {
        self.snapshot_failures.load(Ordering::Relaxed)
    }

    /// Checks and encodes a `persist` call; `None` when there is nothing
    /// to write.
    fn plan(
        aggregate_type: &str,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<Option<Persist>, Error> {
        naming::check_aggregate_type(aggregate_type)?;
        let Some((first, aggregate_id)) = encoding::check_batch(aggregate_type, events)? else {
            return match snapshot_update {
                Some((aggregate_id, _, _)) => Err(Error::SnapshotWithoutEvents { aggregate_id }),
                None => Ok(None),
            };
        };
        let snapshot = match snapshot_update {
            Some((id, _, _)) if id != aggregate_id => {
                return Err(Error::Batch(format!(
                    "a snapshot of {id:?} with events of {aggregate_id:?}"
                )))
            }
            Some((_, aggregate, counter)) => {
                let data = encoding::encode_snapshot(&aggregate, counter)?;
                // Refused here, before the events are written, rather than
                // by `save_snapshot` after them.
                if data.len() > annals::SNAPSHOT_BYTES_MAX {
                    return Err(Error::Batch(format!(
                        "a snapshot of {} bytes exceeds Annals' limit of {}",
                        data.len(),
                        annals::SNAPSHOT_BYTES_MAX
                    )));
                }
                Some(data)
            }
            None => None,
        };
        let expected = naming::expected_before(first)
            .ok_or_else(|| Error::Batch("sequences start at 1, not 0".into()))?;
        Ok(Some(Persist {
            stream: naming::stream_name(aggregate_type, aggregate_id)?,
            expected,
            events: events
                .iter()
                .map(encoding::encode_event)
                .collect::<Result<_, _>>()?,
            snapshot,
        }))
    }

    /// Appends the events, then saves the snapshot at the version of the
    /// last one. The order is what makes a crash between them safe: a
    /// snapshot is only ever saved at a version the stream has durably
    /// reached, so a crash leaves an older snapshot (events after it are
    /// read on top), never one ahead of its events.
    fn run(&self, persist: Persist) -> Result<(), Error> {
        let written = match self
            .store
            .append(&persist.stream, persist.expected, persist.events)?
        {
            Ok(written) => written,
            Err(conflict) => {
                return Err(Error::Store(annals::Error::WrongExpectedVersion(conflict)))
            }
        };
        if let Some(data) = persist.snapshot {
            let saved = self.store.save_snapshot(
                &persist.stream,
                written.last_version,
                SNAPSHOT_TYPE,
                &data,
            );
            // The events are committed: the command succeeded. A snapshot
            // is a cache of them, so its failure is counted, not reported
            // as a failed command (which a caller would retry).
            if saved.is_err() {
                self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Events of `aggregate_type`'s `aggregate_id` from `from` (a version)
    /// on, on the blocking pool.
    async fn read_events(
        &self,
        aggregate_type: &'static str,
        aggregate_id: &str,
        from: u64,
    ) -> Result<Vec<SerializedEvent>, Error> {
        let stream = naming::stream_name(aggregate_type, aggregate_id)?;
        let store = self.store.clone();
        blocking::run(move || {
            let mut events = Vec::new();
            let mut failure = None;
            store.read_stream_with(&stream, from, Direction::Forward, usize::MAX, |event| {
                match encoding::decode_event(aggregate_type, Stored::from(&event)) {
                    Ok(event) => events.push(event),
                    Err(error) => failure = Some(error),
                }
                if failure.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            failure.map_or(Ok(events), Err)
        })
        .await
    }
}

impl PersistedEventRepository for AnnalsEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self.read_events(A::TYPE, aggregate_id, 0).await?)
    }

    /// Events with a sequence above `last_sequence`: stream versions from
    /// `last_sequence` on.
    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let from = u64::try_from(last_sequence).unwrap_or(u64::MAX);
        Ok(self.read_events(A::TYPE, aggregate_id, from).await?)
    }

    /// The newest snapshot at or below the stream's version, as saved (with
    /// [`with_snapshot_catch_up`](AnnalsEventRepository::with_snapshot_catch_up):
    /// with the events after it folded in).
    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let stream = naming::stream_name(A::TYPE, aggregate_id)?;
        let store = self.store.clone();
        let found = blocking::run(move || {
            let mut found = None;
            store.load_aggregate_with(&stream, |part| {
                if let AggregatePart::Snapshot(snapshot) = part {
                    found = Some((
                        snapshot.version,
                        encoding::decode_snapshot(snapshot.snapshot_type, snapshot.data),
                    ));
                }
                // The snapshot comes first; events after it are not needed.
                ControlFlow::Break(())
            })?;
            let Some((version, decoded)) = found else {
                return Ok(None);
            };
            let fail = |reason: String| Error::Stored {
                what: "snapshot",
                stream: stream.clone(),
                version,
                reason,
            };
            let (aggregate, current_snapshot) = decoded.map_err(fail)?;
            let current_sequence = naming::sequence_of(version)
                .ok_or_else(|| fail("its version does not fit a sequence".into()))?;
            Ok(Some((aggregate, current_sequence, current_snapshot)))
        })
        .await?;
        let Some((aggregate, current_sequence, current_snapshot)) = found else {
            return Ok(None);
        };
        let snapshot = SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence,
            current_snapshot,
        };
        if !self.snapshot_catch_up {
            return Ok(Some(snapshot));
        }
        let from = u64::try_from(current_sequence).unwrap_or(u64::MAX);
        let later = self.read_events(A::TYPE, aggregate_id, from).await?;
        Ok(Some(catch_up::catch_up::<A>(snapshot, &later)))
    }

    /// Appends `events` if the aggregate is at the sequence before the
    /// first of them (else `OptimisticLockError`, nothing written), then
    /// saves `snapshot_update` at the last one's version.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(persist) = Self::plan(A::TYPE, events, snapshot_update)? else {
            return Ok(());
        };
        let repository = self.clone();
        Ok(blocking::run(move || repository.run(persist)).await?)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let stream = naming::stream_name(A::TYPE, aggregate_id)?;
        let source = Source::Stream(stream);
        Ok(replay::start(
            self.store.clone(),
            A::TYPE,
            source,
            self.stream_channel_events,
        )?)
    }

    /// The events of every aggregate of type `A` in commit order, up to
    /// the log's end when called.
    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        naming::check_aggregate_type(A::TYPE)?;
        let source = Source::Category {
            end: self.store.position_end(),
        };
        Ok(replay::start(
            self.store.clone(),
            A::TYPE,
            source,
            self.stream_channel_events,
        )?)
    }
}
