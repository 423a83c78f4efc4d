//! `annals backup DIR DEST`: an online backup through a read-only open of
//! `DIR` (so it works while another process owns the store), with a
//! progress bar on stderr and one line on stdout when it is durable.

use std::path::Path;

use annals::{BackupOptions, Store};

use crate::Failure;

/// Runs `annals backup` (`rate`: bytes per second; `no_link`: copy
/// sealed segments instead of hard-linking them).
pub fn run(dir: &Path, dest: &Path, rate: Option<u64>, no_link: bool) -> Result<(), Failure> {
    crate::store_dir::check(dir, false)?;
    let store = Store::open_read_only(dir)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("backup {bar:40} {bytes}/{total_bytes} ({eta})")
            .map_err(|e| Failure::error(e.to_string()))?,
    );
    let options = BackupOptions::default()
        .rate_bytes_per_sec(rate.unwrap_or(0))
        .link(!no_link);
    let report = store.backup_with(dest, &options, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    println!(
        "ok: positions 0..{} backed up to {} ({} files copied, {} kept, {} bytes)",
        report.position_end,
        dest.display(),
        report.files_copied,
        report.files_kept + report.files_linked,
        report.bytes_copied
    );
    Ok(())
}

/// Parses `--rate`: a positive number of bytes per second, optionally
/// with a suffix K, M or G (powers of 1024).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || format!("not a rate in bytes per second (e.g. 50M): {text}");
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(bad()),
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    number
        .checked_mul(1 << shift)
        .filter(|rate| *rate > 0)
        .ok_or_else(bad)
}
