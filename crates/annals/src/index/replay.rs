//! Replaying the log into the active memtable when the index opens.

use std::ops::ControlFlow;

use crate::error::{Error, Result};
use crate::{APPEND_FIRST_FLAG, TOMBSTONE_FLAG};

use super::*;

impl Index {
    /// Pushes the log's events `[from, to)` into the memtable.
    pub(super) fn replay(
        &self,
        from: u64,
        to: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<()> {
        let mut failure = None;
        let mut done = 0u64;
        self.state
            .reader
            .scan_located_until(from, to, |position, offset, record, _| {
                if position >= to {
                    return ControlFlow::Break(());
                }
                let tombstone = record.flags & TOMBSTONE_FLAG != 0;
                let starts_append = record.flags & APPEND_FIRST_FLAG != 0;
                // A run holds whole appends (its stream entries are one per
                // stream per append): freeze only where one begins.
                if starts_append && self.wants_freeze() {
                    self.freeze();
                }
                let pushed = {
                    let mut levels = self.state.levels.write();
                    levels
                        .active
                        .push_stream_events(
                            record.stream,
                            record.stream_version,
                            position,
                            &[record.id],
                            tombstone,
                            starts_append,
                        )
                        .and_then(|()| levels.active.record_offsets(position, &[offset]))
                };
                if let Err(e) = pushed {
                    failure = Some(Error::Index(format!("at position {position}: {e}")));
                    return ControlFlow::Break(());
                }
                done += 1;
                if done.is_multiple_of(1 << 16) {
                    progress(done, to - from);
                }
                ControlFlow::Continue(())
            })?;
        progress(done, to - from);
        failure.map_or(Ok(()), Err)
    }
}
