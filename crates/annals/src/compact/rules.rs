//! Which events a compaction removes, and why: the user's own rules only
//! (hard delete, soft delete, truncate-before, max-count, max-age), decided
//! per stream once per compaction and cached.

use std::collections::HashMap;

use annals_segment::Record;

use crate::error::Result;
use crate::soft_delete::META_STREAM_PREFIX;
use crate::Store;

/// Why an event was removed (the report counts each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    HardDelete,
    SoftDelete,
    TruncateBefore,
    MaxCount,
    MaxAge,
}

/// One stream's rules as of the compaction's start: every version below a
/// bound is removed, for the first reason (in this order) whose bound it
/// is below.
#[derive(Debug, Clone, Copy, Default)]
struct StreamRule {
    hard_deleted: bool,
    soft_delete_before: u64,
    truncate_before: u64,
    max_count_before: u64,
    max_age_before: u64,
}

/// The rules of every stream met so far.
pub(crate) struct Rules<'a> {
    store: &'a Store,
    now_us: u64,
    streams: HashMap<String, StreamRule>,
    /// The stream of the last event asked about, and its rule.
    last: Option<(String, StreamRule)>,
}

impl<'a> Rules<'a> {
    pub(crate) fn new(store: &'a Store, now_us: u64) -> Self {
        Rules {
            store,
            now_us,
            streams: HashMap::new(),
            last: None,
        }
    }

    /// Why `record` is removed, or `None` if it stays. Tombstones and
    /// metadata streams always stay (they are what keeps the rules).
    pub(crate) fn reason(&mut self, record: &Record<'_>) -> Result<Option<Reason>> {
        if record.stream.starts_with(META_STREAM_PREFIX)
            || record.flags & crate::TOMBSTONE_FLAG != 0
        {
            return Ok(None);
        }
        // Events of one stream come in runs (an append is one frame): the
        // last stream's rule is kept at hand, no hashing.
        let rule = match &self.last {
            Some((stream, rule)) if stream == record.stream => *rule,
            _ => {
                let rule = match self.streams.get(record.stream) {
                    Some(rule) => *rule,
                    None => {
                        let rule = self.rule_of(record.stream)?;
                        self.streams.insert(record.stream.to_owned(), rule);
                        rule
                    }
                };
                match &mut self.last {
                    Some((stream, last)) => {
                        stream.clear();
                        stream.push_str(record.stream);
                        *last = rule;
                    }
                    None => self.last = Some((record.stream.to_owned(), rule)),
                }
                rule
            }
        };
        let v = record.stream_version;
        Ok(if rule.hard_deleted {
            Some(Reason::HardDelete)
        } else if v < rule.soft_delete_before {
            Some(Reason::SoftDelete)
        } else if v < rule.truncate_before {
            Some(Reason::TruncateBefore)
        } else if v < rule.max_count_before {
            Some(Reason::MaxCount)
        } else if v < rule.max_age_before {
            Some(Reason::MaxAge)
        } else {
            None
        })
    }

    fn rule_of(&self, stream: &str) -> Result<StreamRule> {
        let state = self.store.compaction_parts().1.state(stream)?;
        let Some(state) = state else {
            return Ok(StreamRule::default());
        };
        if state.deleted {
            return Ok(StreamRule {
                hard_deleted: true,
                ..StreamRule::default()
            });
        }
        let metadata = self.store.stream_metadata(stream)?;
        let current = self.store.stream_version(stream)?;
        let current = match current {
            crate::CurrentVersion::Version(v) => Some(v),
            _ => None,
        };
        let max_count_before = match (metadata.max_count, current) {
            (Some(max), Some(current)) => (current + 1).saturating_sub(max),
            _ => 0,
        };
        let first = metadata.first_version(current);
        let max_age_before = match metadata.max_age_secs {
            Some(age) if current.is_some() => {
                self.store.max_age_first(stream, first, age, self.now_us)?
            }
            _ => 0,
        };
        Ok(StreamRule {
            hard_deleted: false,
            soft_delete_before: metadata.soft_deleted_before.unwrap_or(0),
            truncate_before: metadata.truncate_before.unwrap_or(0),
            max_count_before,
            max_age_before,
        })
    }
}
