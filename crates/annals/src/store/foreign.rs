//! The writable open's directory check: a store is created only in a
//! missing or empty directory. A non-empty directory that is not a store
//! (a typo, a home directory) is refused with [`Error::NotAStore`] before
//! anything is written to it: no `LOCK`, no segment, no `CLEAN`, no temp
//! file removed. Stores from before the identity file (segment files, no
//! `IDENTITY`) still open, and their open writes one.

use std::sync::Arc;

use annals_segment::storage::Storage;
use annals_segment::DirKind;

use crate::error::{Error, Result};

/// Refuses `storage` if it holds files and is not a store. Only lists it.
pub(super) fn refuse_foreign(storage: &Arc<dyn Storage>) -> Result<()> {
    let location = storage.describe();
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", location.clone(), e))?;
    match annals_segment::identity::classify(&names) {
        DirKind::Foreign => Err(Error::NotAStore(format!(
            "{location} (the directory is not empty; refusing to create a store in it)"
        ))),
        DirKind::Missing | DirKind::Empty | DirKind::Store | DirKind::OldStore => Ok(()),
    }
}
