//! Merging adjacent runs into one: a k-way merge of their sorted tables
//! written as a new run.

use std::sync::Arc;

use annals_segment::storage::Storage;

use crate::Error;

use super::*;

/// The entries of several adjacent runs merged into one sorted sequence.
fn merged<'a, T: Ord + Copy + 'a>(
    runs: &'a [Arc<Run>],
    len: impl Fn(&Run) -> u64 + 'a,
    get: impl Fn(&Run, u64) -> Result<T, Error> + 'a,
) -> impl Iterator<Item = Result<T, Error>> + 'a {
    let mut cursors = vec![0u64; runs.len()];
    let mut heads: Vec<Option<T>> = vec![None; runs.len()];
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let mut best: Option<(usize, T)> = None;
        for (k, run) in runs.iter().enumerate() {
            let (Some(head), Some(cursor)) = (heads.get_mut(k), cursors.get(k)) else {
                continue;
            };
            if head.is_none() && *cursor < len(run) {
                match get(run, *cursor) {
                    Ok(entry) => *head = Some(entry),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            if let Some(entry) = *head {
                if best.is_none_or(|(_, b)| entry < b) {
                    best = Some((k, entry));
                }
            }
        }
        let (k, entry) = best?;
        if let (Some(head), Some(cursor)) = (heads.get_mut(k), cursors.get_mut(k)) {
            *head = None;
            *cursor += 1;
        }
        Some(Ok(entry))
    })
}

/// Merges adjacent runs (sorted by position, each starting where the one
/// before ends) into one run file covering them all.
pub fn merge_runs(storage: &Arc<dyn Storage>, runs: &[Arc<Run>]) -> Result<Run, Error> {
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return Err(Error::invalid("merge of no runs"));
    };
    if runs.windows(2).any(|w| match w {
        [a, b] => a.end() != b.start(),
        _ => false,
    }) {
        return Err(Error::invalid("merge of runs that are not adjacent"));
    }
    let new_streams = runs.iter().map(|r| r.new_streams()).sum();
    write_run(
        storage,
        first.start(),
        last.end(),
        new_streams,
        || merged(runs, Run::stream_entries, Run::stream_entry),
        || merged(runs, Run::events, Run::id_entry),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::fixtures::*;

    #[test]
    fn merging_adjacent_runs_equals_writing_them_at_once() {
        let storage = storage();
        // Cut where appends end (runs do: a run holds whole appends).
        let parts: Vec<Arc<Run>> = [(0, 300), (300, 303), (303, 1000)]
            .iter()
            .map(|&(s, e)| Arc::new(write(&storage, s, e)))
            .collect();
        let merged = merge_runs(&storage, &parts).unwrap();
        merged.verify().unwrap();
        let (streams, ids) = entries(0, 1000);
        assert_eq!(merged.events(), 1000);
        assert_eq!(merged.stream_entries(), streams.len() as u64);
        for (i, s) in streams.iter().enumerate() {
            assert_eq!(merged.stream_entry(i as u64).unwrap(), *s);
        }
        for (i, d) in ids.iter().enumerate() {
            assert_eq!(merged.id_entry(i as u64).unwrap(), *d);
        }
        assert_eq!(merged.new_streams(), 7);
        let gap = [Arc::clone(&parts[0]), Arc::clone(&parts[2])];
        assert!(merge_runs(&storage, &gap).is_err());
    }
}
