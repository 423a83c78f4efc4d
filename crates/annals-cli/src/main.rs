//! `annals`: the command-line tool over the Annals public API.
//!
//! Output and exit codes are a contract scripts rely on:
//! 0 success · 1 other errors · 2 bad usage or bad input ·
//! 3 wrong expected version (message naming expected and actual on stderr)
//! or a failed append condition (message naming the matching position).

#![forbid(unsafe_code)]

mod backup;
mod bench;
mod commands;
mod compact;
mod demo;
mod json;
mod meta;
mod mirror;
mod query;
mod relay;
mod snapshot;
mod soft_delete;
mod store_dir;
mod stress;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for errors that are neither usage nor conflicts.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for bad usage or bad input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a wrong expected version.
pub const EXIT_CONFLICT: u8 = 3;
/// Exit code of `verify` when the index alone is damaged (the log is
/// intact; `annals rebuild-index` repairs it). Damage to the log is
/// [`EXIT_ERROR`].
pub const EXIT_INDEX_DAMAGED: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "annals",
    version,
    about = "Annals: an embedded, append-only event store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append events to a stream, atomically. Without --data, reads JSON
    /// lines from stdin: {"type": ..., "data": ..., "metadata": ..., "id": ...}.
    Append {
        /// Store directory (created if missing).
        dir: PathBuf,
        /// Stream name.
        stream: String,
        /// any | no-stream | exists | N
        #[arg(long, default_value = "any")]
        expected: String,
        /// Event type (with --data).
        #[arg(long = "type", requires = "data")]
        event_type: Option<String>,
        /// Event data as JSON (with --type).
        #[arg(long, requires = "event_type")]
        data: Option<String>,
        /// Append only if no event matching this query was written after
        /// "after": {"items":[{"types":[...],"tags":[...]}],"after":P}.
        /// A failed condition exits 3 naming the matching position.
        #[arg(long)]
        condition: Option<String>,
    },
    /// Print the events a query matches as JSON lines, in position order:
    /// JSON is {"items":[{"types":[...],"tags":[...]}]} (items OR'ed; an
    /// item matches one of its types, or any if none, and all its tags).
    Query {
        /// Store directory.
        dir: PathBuf,
        /// The query.
        query: String,
        /// First position to read.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most events to print.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Print a stream's events as JSON lines.
    Read {
        /// Store directory.
        dir: PathBuf,
        /// Stream name.
        stream: String,
        /// First version to read (default: 0, or the newest with --backward).
        #[arg(long)]
        from: Option<u64>,
        /// Most events to print.
        #[arg(long)]
        max: Option<usize>,
        /// Newest first.
        #[arg(long)]
        backward: bool,
    },
    /// Print the global feed as JSON lines.
    All {
        /// Store directory.
        dir: PathBuf,
        /// First position to read.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most events to print.
        #[arg(long)]
        max: Option<usize>,
        /// Only streams of this category (the name up to its first '-').
        #[arg(long, conflicts_with = "event_types")]
        category: Option<String>,
        /// Only events of this type (repeatable).
        #[arg(long = "type")]
        event_types: Vec<String>,
    },
    /// Print the feed as `all` does, then follow new events until
    /// interrupted (the appends of whichever process owns the store; the
    /// store is opened read-only).
    Tail {
        /// Store directory.
        dir: PathBuf,
        /// First position to print (inclusive, like `all --from`).
        #[arg(long)]
        from: Option<u64>,
        /// Start after this position (exclusive: resume after a checkpoint).
        #[arg(long)]
        after: Option<u64>,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Only streams of this category (the name up to its first '-').
        #[arg(long)]
        category: Option<String>,
        /// Only events of this type (repeatable).
        #[arg(long = "type")]
        event_types: Vec<String>,
        /// Exit after this many events.
        #[arg(long)]
        max: Option<usize>,
        /// Exit once caught up instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Delete a stream (writes a tombstone). With --soft, the stream reads
    /// as empty and can be appended to again, its versions continuing.
    Delete {
        /// Store directory.
        dir: PathBuf,
        /// Stream name.
        stream: String,
        /// any | no-stream | exists | N
        #[arg(long, default_value = "any")]
        expected: String,
        /// Soft delete: hide the stream's events, keep it appendable.
        #[arg(long)]
        soft: bool,
    },
    /// Save a snapshot of STREAM's aggregate at --version: its bytes are
    /// all of stdin. Prints one JSON line.
    Snapshot {
        /// Store directory.
        dir: PathBuf,
        /// Stream name.
        stream: String,
        /// The stream version the snapshot stands for.
        #[arg(long)]
        version: u64,
        /// The snapshot's type or schema tag.
        #[arg(long = "type", default_value = "snapshot")]
        snapshot_type: String,
    },
    /// Print STREAM's newest snapshot as one JSON line, then the events
    /// after it as `read` prints them.
    Load {
        /// Store directory.
        dir: PathBuf,
        /// Stream name.
        stream: String,
    },
    /// Set a stream's retention rules (events outside them stop being
    /// readable; versions do not change) and print them as one JSON line;
    /// without flags, only print them.
    Meta {
        /// Store directory.
        dir: PathBuf,
        /// Stream name.
        stream: String,
        /// Show at most the newest N events.
        #[arg(long)]
        max_count: Option<u64>,
        /// Show only versions from V on (never moves back).
        #[arg(long)]
        truncate_before: Option<u64>,
        /// Show only events younger than this: N followed by s, m, h or d
        /// (e.g. 90s, 12h, 30d).
        #[arg(long)]
        max_age: Option<String>,
    },
    /// Compact the sealed segments: physically remove the events the
    /// streams' rules hide (deletes, truncate-before, max-count, max-age).
    /// Progress on stderr; the report as one JSON line on stdout.
    Compact {
        /// Store directory.
        dir: PathBuf,
        /// Rewrite at most this many bytes per second.
        #[arg(long)]
        throttle: Option<u64>,
    },
    /// Print streams, events, segments and bytes.
    Stats {
        /// Store directory.
        dir: PathBuf,
        /// Print as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Verify every checksum of the log and of the index files, and the
    /// index against a full rescan of the log.
    Verify {
        /// Store directory.
        dir: PathBuf,
    },
    /// Rebuild the index from the log: remove every index file, replay the
    /// whole log (with a progress bar on stderr), persist the new index.
    RebuildIndex {
        /// Store directory.
        dir: PathBuf,
    },
    /// Cut what an open refuses for: positions at the newest end of the log
    /// that the store's own files (index runs, the clean-close marker,
    /// frame indexes) vouched for but the log no longer holds. Prints one
    /// JSON object: what was dropped (or, with --dry-run, would be).
    Repair {
        /// Store directory.
        dir: PathBuf,
        /// Change nothing; report what a repair would drop.
        #[arg(long)]
        dry_run: bool,
    },
    /// Back the store up into DEST while it stays in use (read-only open of
    /// DIR): positions 0..P, fsync'd before it reports; again into the same
    /// DEST copies only what is new. DEST must be missing, empty or an
    /// earlier backup of this store.
    Backup {
        /// Store directory.
        dir: PathBuf,
        /// Destination directory.
        dest: PathBuf,
        /// Copy at most RATE bytes per second (suffixes K, M, G: powers of
        /// 1024; e.g. 50M), leaving the disk to the store's writers.
        #[arg(long, value_parser = backup::parse_rate)]
        rate: Option<u64>,
        /// Copy every file; never hard-link sealed segments into DEST.
        #[arg(long)]
        no_link: bool,
    },
    /// Publish the store's feed to a NATS JetStream stream, exactly once
    /// and in position order, following new appends until interrupted (the
    /// store is opened read-only). See docs/JETSTREAM.md.
    Relay {
        /// Store directory.
        dir: PathBuf,
        /// NATS server URL, e.g. nats://127.0.0.1:4222.
        #[arg(long)]
        nats: String,
        /// JetStream stream name (created if missing).
        #[arg(long)]
        stream: String,
        /// Subjects are PREFIX.CATEGORY.STREAM (default: annals).
        #[arg(long)]
        subject_prefix: Option<String>,
        /// First position to publish into an empty JetStream stream.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Keep DEST a mirror of the store relayed into a JetStream stream:
    /// same positions, versions, ids and data; follows until interrupted.
    Mirror {
        /// NATS server URL, e.g. nats://127.0.0.1:4222.
        #[arg(long)]
        nats: String,
        /// JetStream stream name.
        #[arg(long)]
        stream: String,
        /// Mirror store directory (created if missing or empty).
        dest: PathBuf,
    },
    /// Run the comparison benchmark (Annals vs SQLite vs the plain-file
    /// ceiling): runs the `annals-bench` executable found next to this one
    /// or on PATH with these arguments (`annals bench --help` lists them).
    /// Without it: `cargo run --release -p annals-benches --bin annals-bench -- [ARGS]`.
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for `annals-bench`: --seconds S, --rounds N,
        /// --streams N, --json FILE, --writes-only, --reads-only.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Generate load: threads append 1-3 events with exact expectations to
    /// streams of their own; one JSON line per acknowledged append, printed
    /// only after the append returned Ok. Event data is "STREAM@VERSION"
    /// (then --pad-bytes dots).
    Stress {
        /// Store directory (created if missing).
        dir: PathBuf,
        /// Writer threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Streams per thread.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Events the index buffers in memory before writing an index file
        /// (small values make index writes and merges frequent).
        #[arg(long)]
        index_buffer_events: Option<u64>,
        /// Dots appended to each event's data (large events fill segments
        /// fast: rolls and zero-filling ahead of the writer under load).
        #[arg(long, default_value_t = 0)]
        pad_bytes: usize,
        /// Size of new segment files (default 64 MiB; small values make
        /// stores of many segments quickly).
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Also keep a stream under a max-count rule and compact the store
        /// again and again while appending.
        #[arg(long)]
        compact: bool,
        /// At most this many appends per second, all threads together
        /// (default: as fast as the store goes). A capped load writes about
        /// as much on any filesystem.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Run the demo: concurrent writers with expected versions, conflicts,
    /// aggregates read back.
    Demo {
        /// Store directory (default: a temporary directory).
        dir: Option<PathBuf>,
        /// Writer threads.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Commands each writer handles.
        #[arg(long, default_value_t = 500)]
        commands: usize,
        /// Number of account streams.
        #[arg(long, default_value_t = 200)]
        accounts: usize,
    },
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad usage or input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// Other failure (exit 1).
    pub fn error(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }

    /// The index alone is damaged (exit 4).
    pub fn index_damaged(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_INDEX_DAMAGED,
            message: message.into(),
        }
    }

    /// Wrong expected version (exit 3).
    pub fn conflict(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_CONFLICT,
            message: message.into(),
        }
    }
}

impl From<annals::Error> for Failure {
    fn from(error: annals::Error) -> Self {
        match error {
            annals::Error::InvalidInput(_) => Failure::usage(error.to_string()),
            annals::Error::WrongExpectedVersion(_) => Failure::conflict(error.to_string()),
            other => Failure::error(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Append {
            dir,
            stream,
            expected,
            event_type,
            data,
            condition,
        } => commands::append(
            &dir,
            &stream,
            &expected,
            event_type.zip(data),
            condition.as_deref(),
        ),
        Command::Query {
            dir,
            query,
            from,
            max,
        } => query::run(&dir, &query, from, max),
        Command::Read {
            dir,
            stream,
            from,
            max,
            backward,
        } => commands::read(&dir, &stream, from, max, backward),
        Command::All {
            dir,
            from,
            max,
            category,
            event_types,
        } if category.is_some() || !event_types.is_empty() => tail::run(
            &dir,
            &tail::Tail {
                from: Some(from),
                after: None,
                stream: None,
                category,
                types: event_types,
                max,
                follow: false,
            },
        ),
        Command::All { dir, from, max, .. } => commands::all(&dir, from, max),
        Command::Tail {
            dir,
            from,
            after,
            stream,
            category,
            event_types,
            max,
            no_follow,
        } => tail::run(
            &dir,
            &tail::Tail {
                from,
                after,
                stream,
                category,
                types: event_types,
                max,
                follow: !no_follow,
            },
        ),
        Command::Delete {
            dir,
            stream,
            expected,
            soft: true,
        } => soft_delete::run(&dir, &stream, &expected),
        Command::Delete {
            dir,
            stream,
            expected,
            soft: false,
        } => commands::delete(&dir, &stream, &expected),
        Command::Snapshot {
            dir,
            stream,
            version,
            snapshot_type,
        } => snapshot::save(&dir, &stream, version, &snapshot_type),
        Command::Load { dir, stream } => snapshot::load(&dir, &stream),
        Command::Meta {
            dir,
            stream,
            max_count,
            truncate_before,
            max_age,
        } => meta::run(
            &dir,
            &stream,
            max_count,
            truncate_before,
            max_age.as_deref(),
        ),
        Command::Compact { dir, throttle } => compact::run(&dir, throttle),
        Command::Stats { dir, json } => commands::stats(&dir, json),
        Command::Verify { dir } => commands::verify(&dir),
        Command::RebuildIndex { dir } => commands::rebuild_index(&dir),
        Command::Repair { dir, dry_run } => commands::repair(&dir, dry_run),
        Command::Demo {
            dir,
            threads,
            commands,
            accounts,
        } => demo::run(dir, threads, commands, accounts),
        Command::Stress {
            dir,
            threads,
            streams,
            seconds,
            index_buffer_events,
            pad_bytes,
            segment_bytes,
            compact,
            rate,
        } => stress::run(
            &dir,
            stress::Load {
                threads,
                streams,
                seconds,
                index_buffer_events,
                pad_bytes,
                segment_bytes,
                compact,
                rate,
            },
        ),
        Command::Backup {
            dir,
            dest,
            rate,
            no_link,
        } => backup::run(&dir, &dest, rate, no_link),
        Command::Relay {
            dir,
            nats,
            stream,
            subject_prefix,
            from,
        } => relay::run(
            &dir,
            relay::Relay {
                nats,
                stream,
                subject_prefix,
                from,
            },
        ),
        Command::Mirror { nats, stream, dest } => mirror::run(&dest, nats, stream),
        Command::Bench { args } => match bench::run(&args) {
            Ok(code) => return code,
            Err(failure) => Err(failure),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("annals: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
