//! `annals relay DIR --nats URL --stream NAME [--subject-prefix P] [--from P]`:
//! publishes the store's global feed to a NATS JetStream stream, exactly
//! once and in order, following new appends until interrupted
//! (`annals_jetstream::relay`). The store is opened read-only, so the relay
//! runs beside the process that owns it. Log lines go to stderr.

use std::path::Path;

use annals::Store;
use annals_jetstream::{RelayOptions, StreamSettings};

use crate::store_dir;
use crate::Failure;

/// What `annals relay` was given.
#[derive(Debug)]
pub struct Relay {
    /// `--nats`.
    pub nats: String,
    /// `--stream`.
    pub stream: String,
    /// `--subject-prefix`.
    pub subject_prefix: Option<String>,
    /// `--from`.
    pub from: Option<u64>,
}

/// Runs the relay until interrupted, or until it is refused.
pub fn run(dir: &Path, args: Relay) -> Result<(), Failure> {
    let mut options = RelayOptions::new(args.nats, args.stream);
    options.stream = StreamSettings {
        subject_prefix: args
            .subject_prefix
            .unwrap_or_else(|| options.stream.subject_prefix.clone()),
        ..options.stream
    };
    options.from = args.from;
    check(&options.stream)?;
    store_dir::check(dir, false)?;
    let store = Store::open_read_only(dir)?;
    annals_jetstream::block_on(annals_jetstream::relay(store, options))
        .map(|_| ())
        .map_err(failure)
}

/// Bad names are bad usage (exit 2), found before anything is opened.
pub fn check(settings: &StreamSettings) -> Result<(), Failure> {
    settings.check().map_err(|e| Failure::usage(e.to_string()))
}

/// The jetstream crate's errors as exit codes: bad input from the store is
/// 2, everything else (refusals included) 1.
pub fn failure(error: annals_jetstream::Error) -> Failure {
    match error {
        annals_jetstream::Error::Store(e) => Failure::from(e),
        other => Failure::error(other.to_string()),
    }
}
