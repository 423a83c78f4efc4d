//! # annals-cqrs-es
//!
//! Annals as a storage backend for [cqrs-es](https://crates.io/crates/cqrs-es):
//! [`AnnalsEventRepository`] implements
//! [`cqrs_es::persist::PersistedEventRepository`] on an [`annals::Store`],
//! so aggregates written for `postgres-es`, `mysql-es` or `sqlite-es` run on
//! an embedded Annals store unchanged.
//!
//! | cqrs-es | Annals |
//! |---|---|
//! | aggregate instance `(type, id)` | stream `{type}-{id}`; the type is the stream's category |
//! | sequence `n` (from 1) | stream version `n - 1` (from 0) |
//! | `persist` | one atomic append expecting the version before the first event; a conflict is `OptimisticLockError` |
//! | snapshot update | an Annals snapshot at the last event's version, saved after the append |
//! | `stream_all_events` | a read of the type's category |
//!
//! The store is blocking; every call runs on Tokio's blocking pool. The
//! encoding of events and snapshots is in docs/CQRS-ES.md.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod blocking;
mod catch_up;
mod category;
mod encoding;
mod error;
mod naming;
mod replay;
mod repository;

pub use encoding::SNAPSHOT_TYPE;
pub use error::Error;
pub use naming::{check_aggregate_type, stream_name};
pub use repository::AnnalsEventRepository;
