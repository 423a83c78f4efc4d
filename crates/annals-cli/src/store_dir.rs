//! What a command may do with its directory: read-only commands need a
//! store and create nothing; writing commands create a store in a missing or
//! empty directory but never turn someone's non-empty directory into one.

use std::path::Path;

use annals::DirKind;

use crate::Failure;

/// Refuses `dir` unless it is a store (or, with `create`, a missing or
/// empty directory a store may be created in). Only lists the directory.
pub fn check(dir: &Path, create: bool) -> Result<(), Failure> {
    let kind = annals::probe_dir(dir)
        .map_err(|e| Failure::error(format!("cannot read {}: {e}", dir.display())))?;
    match (kind, create) {
        (DirKind::Store | DirKind::OldStore, _) => Ok(()),
        (DirKind::Missing | DirKind::Empty, true) => Ok(()),
        (DirKind::Foreign, true) => Err(Failure::error(format!(
            "not an Annals store: {} (the directory is not empty; refusing to create a store in it)",
            dir.display()
        ))),
        (DirKind::Missing | DirKind::Empty | DirKind::Foreign, false) => Err(Failure::error(
            format!("not an Annals store: {}", dir.display()),
        )),
    }
}
