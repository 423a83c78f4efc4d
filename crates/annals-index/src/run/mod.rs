//! Index runs: immutable, checksummed files holding every index entry of one
//! contiguous range of global positions `[start, end)`.
//!
//! A run has two sorted tables — stream entries `(stream hash, version,
//! position, count)`, one per stream per append (the events one append
//! wrote to one stream are consecutive in version and position) — and
//! event ids `(id, position)`, one per event; and a blocked Bloom filter
//! for each, so a lookup skips a run that cannot hold its key after touching
//! one 64-byte block. The file is a sequence of 4 KiB pages, each ending in
//! a CRC-32 bound to the file's salt and the page's number; a page is
//! verified the first time it is read (one bit per page remembers it), so
//! opening a run reads one page whatever its size. The byte layout is in
//! `docs/FORMAT.md`.
//!
//! The files of this module:
//!
//! - `layout.rs`: sizes, the format version, the header page, where each
//!   table starts, run file names;
//! - `entry.rs`: [`StreamEntry`], [`IdEntry`], [`EventOffset`] and their
//!   encoding;
//! - `page.rs`: page checksums ([`page_crc`]) and the writer of pages;
//! - `bloom.rs`: the Bloom filters (keys, writing, probing);
//! - `writer.rs`: [`write_run`], where a run is written;
//! - `reader.rs`: [`Run`], opening a run and reading its entries;
//! - `search.rs`: where a run is searched (a stream, an event id);
//! - `verify.rs`: [`Run::verify`], checking a whole run;
//! - `digest.rs`: [`EntryDigest`];
//! - `merge.rs`: [`merge_runs`], where runs are merged;
//! - `fixtures.rs` (tests only): entries and runs the unit tests share.

mod bloom;
mod digest;
mod entry;
#[cfg(test)]
mod fixtures;
mod layout;
mod merge;
mod page;
mod reader;
mod search;
mod verify;
mod writer;

use bloom::*;
use entry::*;
use layout::*;
use page::*;

pub use bloom::id_key;
pub use digest::EntryDigest;
pub use entry::{EventOffset, IdEntry, StreamEntry};
pub use layout::{
    parse_run_file_name, run_file_name, MAX_ENTRY_EVENTS, PAGE_BYTES, POSITION_LIMIT,
};
pub use merge::merge_runs;
pub use page::page_crc;
pub use reader::Run;
pub use writer::write_run;
