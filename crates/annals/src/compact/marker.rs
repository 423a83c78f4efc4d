//! The `COMPACTING` marker: present (its creation `fsync`ed with the
//! directory) from before a compaction switches its first segment until the
//! derived data that holds offsets (index runs) has followed — the runs the
//! index holds rebuilt, and every other run file (an orphan of a failed
//! merge, perhaps with older offsets) removed, durably. An open that
//! finds it removes every index run (the index is then rebuilt from the
//! log, whatever the runs' offsets) and then the marker: so a crash between
//! a segment switch and the rebuild of the runs never leaves a run whose
//! offsets disagree with the segments. Deterministic and idempotent.

use std::sync::Arc;

use annals_segment::storage::Storage;

use crate::error::Result;

/// File name of the marker.
pub const COMPACTING_FILE_NAME: &str = "COMPACTING";

fn io(op: &'static str, name: &str, e: std::io::Error) -> crate::Error {
    annals_segment::Error::io(op, name, e).into()
}

/// Creates the marker and makes it durable.
pub(crate) fn create(storage: &Arc<dyn Storage>) -> Result<()> {
    match storage.create(COMPACTING_FILE_NAME) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create", COMPACTING_FILE_NAME, e)),
    }
    storage
        .sync_dir()
        .map_err(|e| io("fsync dir", COMPACTING_FILE_NAME, e))
}

/// Removes the marker durably (the runs are consistent again).
pub(crate) fn remove(storage: &Arc<dyn Storage>) -> Result<()> {
    storage
        .remove(COMPACTING_FILE_NAME)
        .map_err(|e| io("remove", COMPACTING_FILE_NAME, e))?;
    storage
        .sync_dir()
        .map_err(|e| io("fsync dir", COMPACTING_FILE_NAME, e))
}

/// At a writable open, before the index opens: after an interrupted
/// compaction, removes every index run, then the marker.
pub(crate) fn recover(storage: &Arc<dyn Storage>) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| io("list", &storage.describe(), e))?;
    if !names.iter().any(|n| n == COMPACTING_FILE_NAME) {
        return Ok(());
    }
    crate::index::remove_runs(storage)?;
    remove(storage)
}
