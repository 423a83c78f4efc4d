//! `annals backup DIR DEST`: an online backup through a read-only open of
//! `DIR` (so it works while another process owns the store), with a
//! progress bar on stderr and one line on stdout when it is durable.

use std::path::Path;

use annals::Store;

use crate::Failure;

/// Runs `annals backup`.
pub fn run(dir: &Path, dest: &Path) -> Result<(), Failure> {
    crate::store_dir::check(dir, false)?;
    let store = Store::open_read_only(dir)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("backup {bar:40} {bytes}/{total_bytes} ({eta})")
            .map_err(|e| Failure::error(e.to_string()))?,
    );
    let report = store.backup_with_progress(dest, &mut |done, total| {
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
        report.files_kept,
        report.bytes_copied
    );
    Ok(())
}
