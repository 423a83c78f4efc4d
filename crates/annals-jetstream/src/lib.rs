//! # annals-jetstream
//!
//! Scale-out for an Annals store on NATS JetStream:
//!
//! - [`relay()`]: follows a store's global feed (`$all`) and publishes every
//!   event to a JetStream stream **exactly once, in position order**,
//!   whatever crashes (the relay's, the server's, or both). The relay keeps
//!   no state of its own: on every start it learns from JetStream what was
//!   already published (the last message's position header) and publishes
//!   each message with `Nats-Expected-Last-Sequence`, so a message lands
//!   only right after the one it follows. It runs fine against a read-only
//!   open of a store another process owns.
//! - [`mirror()`]: consumes such a JetStream stream and appends every event
//!   into a local store at the same position, version, id, type, data,
//!   metadata and commit time ([`annals::Store::append_replicated`]): a read
//!   replica or standby on another machine. Restartable and idempotent.
//!
//! Subjects, headers and the server settings that make the published copy
//! durable are described in `docs/JETSTREAM.md`. This crate runs on tokio;
//! the store's blocking calls run on tokio's blocking pool.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod connect;
mod encoding;
mod error;
mod inspect;
mod message;
pub mod mirror;
pub mod nats_server;
pub mod relay;
mod stream_config;

pub use encoding::{decode, encode, subject_for, token_for};
pub use error::{Error, Result};
pub use inspect::{last_position, published, Published};
pub use message::{event_from_message, headers};
pub use mirror::{mirror, MirrorOptions, MIRROR_OF_FILE_NAME};
pub use relay::{relay, RelayOptions};
pub use stream_config::{StreamSettings, DEFAULT_SUBJECT_PREFIX};

/// Runs `future` to completion on a new multi-threaded tokio runtime: for
/// callers without one (the `annals` CLI).
pub fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "start",
            path: "the tokio runtime".into(),
            source,
        })?
        .block_on(future)
}
