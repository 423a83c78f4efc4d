//! `annals mirror --nats URL --stream NAME DEST`: keeps the store in DEST a
//! mirror of the store a relay publishes into the JetStream stream: same
//! positions, versions, ids, types, data, metadata and commit times
//! (`annals_jetstream::mirror`). Follows until interrupted; restartable (it
//! resumes from DEST's end). DEST is created if missing or empty; a store
//! of its own events, or the mirror of another store, is refused.

use std::path::Path;

use annals::{Durability, Options, Store};
use annals_jetstream::MirrorOptions;

use crate::store_dir;
use crate::Failure;

/// Runs the mirror until interrupted, or until it is refused.
pub fn run(dest: &Path, nats: String, stream: String) -> Result<(), Failure> {
    crate::relay::check(&annals_jetstream::StreamSettings::new(stream.clone()))?;
    store_dir::check(dest, true)?;
    // Made durable once per batch by the mirror's flushes.
    let mut options = Options::default();
    options.durability = Durability::Buffered;
    let store = Store::open_with(dest, options)?;
    annals_jetstream::block_on(annals_jetstream::mirror(
        store,
        dest,
        MirrorOptions::new(nats, stream),
    ))
    .map(|_| ())
    .map_err(crate::relay::failure)
}
