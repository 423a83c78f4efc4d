//! Evidence the store adds to the log's own (index runs vouch for the
//! positions they cover), and the explicit repair of a log that ends before
//! its evidence: the one way to open such a store, which says what it drops
//! before (`dry_run`) and after dropping it.

use std::path::Path;
use std::sync::Arc;

use annals_segment::storage::{FsStorage, Storage};
use annals_segment::{Evidence, EvidenceKind, LogOptions};

use crate::error::{Error, Result};
use crate::{Options, Store};

/// Every index run file in `storage`, as evidence: a run is written only
/// for positions the log had made durable, so its name alone vouches for
/// every position below its end (even if its pages are damaged: the file
/// was complete when it was renamed into place).
pub(crate) fn run_evidence(storage: &Arc<dyn Storage>) -> Result<Vec<Evidence>> {
    let names = storage
        .list()
        .map_err(|e| annals_segment::Error::io("list", storage.describe(), e))?;
    Ok(names
        .into_iter()
        .filter_map(|name| {
            let (_, end) = annals_index::parse_run_file_name(&name)?;
            Some(Evidence {
                kind: EvidenceKind::IndexRun,
                file: name,
                position_end: end,
            })
        })
        .collect())
}

impl Store {
    /// Cuts what an open refuses for ([`annals_segment::Error::Missing`]):
    /// positions at the newest end of the log that its evidence (index
    /// runs, the clean-close marker, frame indexes) vouched for but that
    /// the log no longer holds. Removes that evidence (all derived files,
    /// rebuilt by the next open) so that the damaged tail is cut; with
    /// `dry_run`, changes nothing and reports what it would drop. A log that
    /// opens as it is is left as any open leaves it, and the report drops
    /// nothing. A segment missing between two others is refused: repair
    /// never drops later segments.
    pub fn repair(dir: impl AsRef<Path>, options: Options, dry_run: bool) -> Result<RepairReport> {
        let dir = dir.as_ref();
        let storage = FsStorage::open(dir)
            .map_err(|e| annals_segment::Error::io("open", dir.display().to_string(), e))?;
        Self::repair_storage(Arc::new(storage), options, dry_run)
    }

    /// [`Store::repair`] on any [`Storage`].
    pub fn repair_storage(
        storage: Arc<dyn Storage>,
        options: Options,
        dry_run: bool,
    ) -> Result<RepairReport> {
        crate::store::lock(&storage)?;
        repair(&storage, &options, dry_run)
    }
}

/// Opens the log with the index runs as evidence, and closes it: the runs
/// vouch for what the log held, so a rebuild of the index (which removes
/// them) checks them first and leaves them when the log falls short.
pub(crate) fn check_before_removing_runs(
    storage: &Arc<dyn Storage>,
    options: &Options,
) -> Result<()> {
    let log_options = LogOptions {
        segment_bytes: options.segment_bytes,
        zero_ahead: Some(false),
    };
    let evidence = run_evidence(storage)?;
    drop(annals_segment::open_with_evidence(
        Arc::clone(storage),
        log_options,
        &evidence,
    )?);
    Ok(())
}

/// What [`Store::repair`](crate::Store::repair) dropped, or with `dry_run`
/// would drop.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RepairReport {
    /// Nothing was changed: this is what a repair would do.
    pub dry_run: bool,
    /// Positions the evidence vouched for that the log no longer holds
    /// (`first..end`): acknowledged events the repair gives up. `None`
    /// when the log holds everything its evidence vouches for.
    pub dropped: Option<(u64, u64)>,
    /// Where the missing data should have been: the file (which may not
    /// exist) and offset.
    pub missing_at: Option<(String, u64)>,
    /// What was found there instead.
    pub found: Option<String>,
    /// The files that vouched for the dropped positions, removed (or to be
    /// removed) so that the store opens: index runs (rebuilt from the log
    /// on open), the clean-close marker, frame indexes (rebuilt).
    pub evidence_discarded: Vec<Evidence>,
    /// The tail the open after the repair cut: (segment file, offset where
    /// the log now ends). `None` in a dry run.
    pub truncated: Option<(String, u64)>,
    /// One past the last position of the log after the repair (in a dry
    /// run: after a repair).
    pub position_end: u64,
}

/// Repairs rounds at most: each discards all the evidence past the end it
/// found; a second round only ever meets evidence the first could not see.
const ROUNDS_MAX: usize = 4;

/// The repair (the directory lock is held): open the log with every
/// piece of evidence; while it is refused for missing positions at the
/// newest end, discard the evidence past the log's end (not in a dry run)
/// and open it again, which cuts any damaged tail (the index is rebuilt
/// from the log by the next open of the store).
pub(crate) fn repair(
    storage: &Arc<dyn Storage>,
    options: &Options,
    dry_run: bool,
) -> Result<RepairReport> {
    let log_options = LogOptions {
        segment_bytes: options.segment_bytes,
        zero_ahead: Some(false),
    };
    let mut report = RepairReport {
        dry_run,
        ..RepairReport::default()
    };
    for _ in 0..ROUNDS_MAX {
        let runs = run_evidence(storage)?;
        let opened = annals_segment::open_with_evidence(Arc::clone(storage), log_options, &runs);
        let missing = match opened {
            // A segment missing between two others: repair would have to
            // drop every later segment. Refused, with the open's error.
            Err(error @ annals_segment::Error::Missing { .. })
                if matches!(&error, annals_segment::Error::Missing { evidence, .. }
                    if evidence.iter().any(|e| e.kind == EvidenceKind::NextSegment)) =>
            {
                return Err(error.into());
            }
            Ok((_, reader, recovery)) => {
                report.position_end = reader.position_end();
                report.truncated = recovery.truncated;
                return Ok(report);
            }
            Err(annals_segment::Error::Missing {
                file,
                offset,
                position_first,
                position_end,
                found,
                evidence,
            }) => {
                let (first, end) = report.dropped.unwrap_or((position_first, position_end));
                report.dropped = Some((first.min(position_first), end.max(position_end)));
                report.missing_at.get_or_insert((file, offset));
                report.found.get_or_insert(found);
                report.position_end = position_first;
                evidence
            }
            Err(other) => return Err(other.into()),
        };
        for piece in &missing {
            if !report.evidence_discarded.contains(piece) {
                report.evidence_discarded.push(piece.clone());
            }
        }
        if dry_run {
            return Ok(report);
        }
        for piece in &missing {
            match storage.remove(&piece.file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(annals_segment::Error::io("remove", &piece.file, e).into()),
            }
        }
        storage
            .sync_dir()
            .map_err(|e| annals_segment::Error::io("fsync dir", storage.describe(), e))?;
    }
    Err(Error::Index(format!(
        "repair gave up after {ROUNDS_MAX} rounds: evidence keeps vouching for missing positions"
    )))
}
