//! Bulk copying between files of real directories, for backups: hard
//! links, `copy_file_range`, and the page-cache hints that keep a large
//! copy from stalling the writers that share the disk (`sync_file_range`
//! to write back a little at a time instead of one huge `fsync` at the
//! end, `posix_fadvise(DONTNEED)` to drop the copied pages). Every call
//! falls back to plain reads and writes, or does nothing, where the system
//! lacks it. Like `fs.rs`, this file holds `unsafe` FFI calls, each with
//! its `// SAFETY:` comment: none touches memory of this process except
//! the offsets it is given by `&mut`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes moved per `copy_file_range` call (and per read in the fallback).
const COPY_CALL_BYTES: u64 = 1 << 20;

/// Hard-links `from` to `to`. `Ok(false)` when the filesystem or the
/// situation does not allow it (another filesystem, links unsupported or
/// not permitted, too many links): the caller copies instead.
pub fn hard_link(from: &Path, to: &Path) -> io::Result<bool> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e) => match e.raw_os_error() {
            Some(libc::EXDEV | libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK | libc::EACCES) => {
                Ok(false)
            }
            _ => Err(e),
        },
    }
}

/// Copies `len` bytes at `offset` of `from` to the same offset of `to`:
/// in the kernel (`copy_file_range`) where it can, else by reading and
/// writing. A source shorter than `offset + len` is
/// [`io::ErrorKind::UnexpectedEof`].
pub fn copy_range(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    #[cfg(target_os = "linux")]
    while done < len {
        match kernel_copy(from, to, offset + done, (len - done).min(COPY_CALL_BYTES)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source file ended before the range to copy",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => match e.raw_os_error() {
                // Not offered here: copy the rest by hand.
                Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => break,
                _ => return Err(e),
            },
        }
    }
    let mut buf = vec![0u8; usize::try_from(COPY_CALL_BYTES.min(len - done)).unwrap_or(0)];
    while done < len {
        let n = usize::try_from((len - done).min(COPY_CALL_BYTES)).unwrap_or(0);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        from.read_exact_at(chunk, offset + done)?;
        to.write_all_at(chunk, offset + done)?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn kernel_copy(from: &File, to: &File, offset: u64, len: u64) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let (Ok(mut off_in), Ok(len)) = (libc::loff_t::try_from(offset), usize::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mut off_out = off_in;
    // SAFETY: both descriptors are open for the life of the borrows; the
    // kernel reads and writes only the two offsets, which are live locals
    // passed by exclusive reference, and moves the bytes between the files
    // without touching this process's memory.
    let n = unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &mut off_in,
            to.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Starts writing back the dirty pages of `file` in `offset..offset+len`
/// and, with `wait`, waits until they are on the disk (`sync_file_range`).
/// Not a durability point (no metadata, no disk cache flush): the caller
/// still `fsync`s; that `fsync` then finds little left to write, so it
/// does not hold the filesystem's journal for long. Does nothing where
/// the call does not exist.
#[allow(unsafe_code)]
pub fn write_back(file: &File, offset: u64, len: u64, wait: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return Ok(());
        };
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: a descriptor open for the life of the borrow and three
        // integers; no memory of this process is touched.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENOSYS | libc::EINVAL | libc::ESPIPE) => Ok(()),
                _ => Err(error),
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, wait);
    Ok(())
}

/// Asks the kernel to drop the cached pages of `file` in
/// `offset..offset+len` (`posix_fadvise(DONTNEED)`): a backup's copy is
/// not read again, and should not push the writers' pages out. Only clean
/// pages go (write them back first); a hint, whose failure is ignored.
#[allow(unsafe_code)]
pub fn drop_cached(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: a descriptor open for the life of the borrow and three
        // integers; no memory of this process is touched.
        let _ = unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED)
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_copied_at_the_same_offset_and_a_short_source_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let from_path = dir.path().join("from");
        std::fs::write(&from_path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let from = File::open(&from_path).unwrap_or_else(|e| panic!("{e}"));
        let to = File::create(dir.path().join("to")).unwrap_or_else(|e| panic!("{e}"));
        copy_range(&from, &to, 0, 100).unwrap_or_else(|e| panic!("{e}"));
        copy_range(&from, &to, 100, 2_999_900).unwrap_or_else(|e| panic!("{e}"));
        write_back(&to, 0, 3_000_000, true).unwrap_or_else(|e| panic!("{e}"));
        drop_cached(&to, 0, 3_000_000);
        let copied = std::fs::read(dir.path().join("to")).unwrap_or_else(|e| panic!("{e}"));
        assert!(copied == bytes, "the copy differs");
        let error = copy_range(&from, &to, 2_999_000, 2_000).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(hard_link(&from_path, &dir.path().join("link")).unwrap_or(false));
    }
}
