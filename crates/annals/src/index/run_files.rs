//! Run files on disk: loading the chain to trust, writing one, removing
//! them.

use std::sync::Arc;

use annals_index::{parse_run_file_name, write_run, IdEntry, Run, StreamEntry};
use annals_segment::storage::Storage;

use crate::error::Result;

/// The runs to trust: the longest contiguous chain from position 0 of runs
/// whose header verifies and that end within the log. Every other run file
/// (and leftover of an interrupted write) is removed.
pub(super) fn load_runs(
    storage: &Arc<dyn Storage>,
    log_end: u64,
    remove: bool,
) -> Result<(Vec<Arc<Run>>, Vec<String>)> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    let mut candidates: Vec<(u64, u64, String)> = names
        .iter()
        .filter_map(|name| parse_run_file_name(name).map(|(s, e)| (s, e, name.clone())))
        .collect();
    // By start, longest first: after a merge that crashed before removing
    // its inputs, the merged run wins.
    candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut runs: Vec<Arc<Run>> = Vec::new();
    let mut discarded = Vec::new();
    let mut next = 0;
    for (start, end, name) in candidates {
        let usable = start == next && end <= log_end;
        match usable.then(|| Run::open(storage, &name)) {
            Some(Ok(run)) => {
                runs.push(Arc::new(run));
                next = end;
            }
            Some(Err(annals_index::Error::Storage(annals_segment::Error::Io {
                op,
                file,
                source,
            }))) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(annals_segment::Error::Io { op, file, source }.into());
            }
            _ => discarded.push(name),
        }
    }
    // Read-only opens (`remove` false) leave discarded runs in place.
    for name in discarded.iter().filter(|_| remove) {
        remove_file(storage, name)?;
    }
    if remove && !discarded.is_empty() {
        sync_dir(storage)?;
    }
    Ok((runs, discarded))
}

/// Writes the run of positions `range` from entries already sorted.
pub(super) fn write_sorted(
    storage: &Arc<dyn Storage>,
    (start, end): (u64, u64),
    new_streams: u64,
    streams: &[StreamEntry],
    ids: &[IdEntry],
) -> Result<Run> {
    let run = write_run(
        storage,
        start,
        end,
        new_streams,
        || streams.iter().copied().map(Ok),
        || ids.iter().copied().map(Ok),
    )?;
    Ok(run)
}

/// Removes every index run file (before a rebuild from the log).
pub(crate) fn remove_runs(storage: &Arc<dyn Storage>) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    for name in names.iter().filter(|n| parse_run_file_name(n).is_some()) {
        remove_file(storage, name)?;
    }
    super::secondary::remove_secondary_runs(storage)
}

/// Removes every index run file not named in `held`, then makes the
/// removals durable (nothing to do: no directory `fsync`).
pub(super) fn remove_runs_except(storage: &Arc<dyn Storage>, held: &[String]) -> Result<()> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    let mut removed = false;
    for name in names
        .iter()
        .filter(|n| parse_run_file_name(n).is_some() && !held.contains(n))
    {
        remove_file(storage, name)?;
        removed = true;
    }
    if removed {
        sync_dir(storage)?;
    }
    Ok(())
}

pub(super) fn remove_file(storage: &Arc<dyn Storage>, name: &str) -> Result<()> {
    storage
        .remove(name)
        .map_err(|e| annals_segment::Error::io("remove", name, e).into())
}

pub(super) fn sync_dir(storage: &Arc<dyn Storage>) -> Result<()> {
    storage
        .sync_dir()
        .map_err(|e| annals_segment::Error::io("fsync dir", storage.describe(), e).into())
}
