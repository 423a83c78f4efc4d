//! # Annals
//!
//! An embedded, append-only event store. Open a directory, append events to
//! fine-grained streams with an expected version, load one aggregate by
//! reading only its stream, and follow the global, gap-free feed.
//!
//! ```
//! use annals::{Direction, EventData, ExpectedVersion, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let placed = EventData::new("OrderPlaced", r#"{"total":42}"#);
//! let written = store.append("order-1", ExpectedVersion::NoStream, vec![placed])??;
//! assert_eq!(written.first_version, 0);
//!
//! // A second writer that also saw "no stream" loses, and nothing is written.
//! let late = EventData::new("OrderPlaced", "{}");
//! let conflict = store.append("order-1", ExpectedVersion::NoStream, vec![late])?.unwrap_err();
//! assert_eq!(conflict.actual, annals::CurrentVersion::Version(0));
//!
//! let events = store.read_stream("order-1", 0, Direction::Forward, 100)?;
//! assert_eq!(events.len(), 1);
//! # Ok(()) }
//! ```
//!
//! Guarantees: an append that returned `Ok` is durable (fsync'd) and atomic;
//! stream versions and global positions are dense; a stale expectation
//! writes nothing; every byte read is checksummed; a second open of the same
//! directory fails with [`Error::Locked`]. See `docs/GUARANTEES.md`.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod backup;
mod compact;
mod dcb;
mod error;
mod event;
mod expected;
mod index;
mod options;
mod repair;
mod snapshot;
mod soft_delete;
mod store;
mod stream_meta;
mod subscribe;
mod write;

pub use annals_index::Direction;
pub use annals_segment::format::{TagIter, Tags};
pub use annals_segment::identity::probe as probe_dir;
pub use annals_segment::storage;
pub use annals_segment::{DirKind, Evidence, EvidenceKind, StoreId};
pub use backup::{BackupOptions, BackupReport, BACKUP_INCOMPLETE_FILE_NAME};
pub use compact::{CompactionOptions, CompactionReport, RemovedEvents, COMPACTING_FILE_NAME};
pub use dcb::{
    AppendCondition, AppendRejected, ConditionFailed, Query, QueryItem, QueryRead, QUERY_ITEMS_MAX,
    QUERY_ITEM_TERMS_MAX,
};
pub use error::{Error, Result};
pub use event::{EventData, EventId, EventRef, ParseEventIdError, RecordedEvent};
pub use expected::{CurrentVersion, ExpectedVersion, WrongExpectedVersion};
pub use index::{IndexReport, SecondaryReport};
pub use options::{Durability, Options, QUERY_CACHE_BYTES_DEFAULT};
pub use repair::RepairReport;
pub use snapshot::{
    Aggregate, AggregatePart, Loaded, Snapshot, SnapshotRecovery, SnapshotRef, SNAPSHOT_BYTES_MAX,
    SNAPSHOT_TYPE_BYTES_MAX,
};
pub use soft_delete::{meta_stream, SoftDeleted, META_STREAM_PREFIX, TRUNCATE_BEFORE_EVENT_TYPE};
pub use store::ReplicatedEvent;
pub use store::{
    AppendResult, MultiConflict, QueryCacheStats, Stats, Store, VerifyReport, WriteStats,
};
pub use stream_meta::{StreamMetadata, MAX_AGE_EVENT_TYPE, MAX_COUNT_EVENT_TYPE};
pub use subscribe::{
    category_of, checkpoint_stream, Filter, Start, Subscription, SubscriptionItem,
    SubscriptionItemRef, SubscriptionOptions, SubscriptionStream, CHECKPOINT_EVENT_TYPE,
    SYSTEM_STREAM_PREFIX,
};

/// Event type of the tombstone a stream delete writes.
pub const TOMBSTONE_TYPE: &str = "$stream-deleted";

/// Record flag marking a tombstone.
pub(crate) const TOMBSTONE_FLAG: u16 = 1;
/// Record flag on the first event of an append (all its streams together).
pub(crate) const APPEND_FIRST_FLAG: u16 = 1 << 1;
/// Record flag on the last event of an append.
pub(crate) const APPEND_LAST_FLAG: u16 = 1 << 2;

/// Longest stream name, in bytes.
pub const STREAM_BYTES_MAX: usize = annals_segment::format::STREAM_BYTES_MAX;
/// Longest event type, in bytes.
pub const EVENT_TYPE_BYTES_MAX: usize = annals_segment::format::EVENT_TYPE_BYTES_MAX;
/// Most tags on one event.
pub const TAGS_MAX: usize = annals_segment::format::TAGS_MAX;
/// Longest tag, in bytes.
pub const TAG_BYTES_MAX: usize = annals_segment::format::TAG_BYTES_MAX;
/// Largest single event, in bytes (names, metadata and data included).
pub const EVENT_BYTES_MAX: usize = annals_segment::format::EVENT_BYTES_MAX;
