//! `annals tail` (follow the feed through a subscription) and the filtered
//! form of `annals all` (`--category`, `--type`): the same JSON lines as
//! `annals all`, one per event, flushed per line.
//!
//! The store is opened read-only: `tail` works while another process owns
//! the store, and follows that process's appends by refreshing every
//! [`FOLLOW_INTERVAL`] (`Store::follow`).

use std::io::Write;
use std::path::Path;

use annals::{Filter, Start, Store, SubscriptionItem, SubscriptionOptions};

use crate::commands::open;
use crate::json::event_line;
use crate::Failure;

/// How often a following `tail` looks for the owner's new appends: a
/// look that finds nothing is one `pread` and one failed `open`.
pub const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// Which events, from where, and when to stop.
#[derive(Debug)]
pub struct Tail {
    /// First position, inclusive (`--from`).
    pub from: Option<u64>,
    /// Position to start after, exclusive (`--after`).
    pub after: Option<u64>,
    /// One stream (`--stream`).
    pub stream: Option<String>,
    /// A category (`--category`).
    pub category: Option<String>,
    /// Event types (`--type`, repeatable).
    pub types: Vec<String>,
    /// Exit after this many events (`--max`).
    pub max: Option<usize>,
    /// Exit once caught up (`--no-follow`).
    pub follow: bool,
}

impl Tail {
    /// The subscription these arguments ask for, or a usage failure.
    fn options(&self) -> Result<SubscriptionOptions, Failure> {
        let start = match (self.from, self.after) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage("give --from or --after, not both"));
            }
            (Some(0) | None, None) => Start::Beginning,
            (Some(from), None) => Start::After(from - 1),
            (None, Some(after)) => Start::After(after),
        };
        let chosen = [
            self.stream.is_some(),
            self.category.is_some(),
            !self.types.is_empty(),
        ];
        if chosen.iter().filter(|c| **c).count() > 1 {
            return Err(Failure::usage(
                "give one of --stream, --category or --type (repeatable)",
            ));
        }
        let filter = if let Some(stream) = &self.stream {
            if stream.is_empty() {
                return Err(Failure::usage("--stream needs a stream name"));
            }
            Filter::Stream {
                name: stream.clone(),
                from_version: 0,
            }
        } else if let Some(category) = &self.category {
            if category.is_empty() || category.contains('-') {
                return Err(Failure::usage(
                    "--category needs a non-empty name without '-' (the stream name up to its first '-')",
                ));
            }
            Filter::Category(category.clone())
        } else if !self.types.is_empty() {
            if self.types.iter().any(String::is_empty) {
                return Err(Failure::usage("--type needs a non-empty event type"));
            }
            Filter::EventTypes(self.types.clone())
        } else {
            Filter::All
        };
        // Like `annals all`: the store's own `$` streams are printed.
        Ok(SubscriptionOptions::new(filter)
            .start(start)
            .system_streams(true))
    }
}

/// Runs `annals tail` (or filtered `annals all` with `follow` false).
pub fn run(dir: &Path, tail: &Tail) -> Result<(), Failure> {
    let options = tail.options()?;
    if tail.max == Some(0) {
        return Ok(());
    }
    let store = open(dir, false)?;
    if tail.follow {
        store.follow(FOLLOW_INTERVAL)?;
    }
    follow(&store, options, tail)
}

fn follow(store: &Store, options: SubscriptionOptions, tail: &Tail) -> Result<(), Failure> {
    let mut printed = 0usize;
    let mut out = std::io::stdout().lock();
    for item in store.subscribe(options) {
        match item? {
            SubscriptionItem::Event(event) => {
                writeln!(out, "{}", event_line(&event))
                    .and_then(|()| out.flush())
                    .map_err(|e| Failure::error(format!("stdout: {e}")))?;
                printed += 1;
                if tail.max.is_some_and(|max| printed >= max) {
                    return Ok(());
                }
            }
            SubscriptionItem::CaughtUp { .. } if !tail.follow => return Ok(()),
            SubscriptionItem::CaughtUp { .. } | SubscriptionItem::Checkpoint { .. } => {}
        }
    }
    Ok(())
}
