//! Zero-filling the active segment ahead of the writer: it happens (zeros
//! are written ahead of the data: seen in the log's writes on any
//! filesystem, and in the file's written blocks on one that shows them
//! apart from reserved space), it never touches a byte
//! the writer wrote (every event reads back, before and after reopen, with
//! the filler racing the writer in every segment), a filler that fails
//! leaves the writer working, and a writeback error the filler's sync meets
//! first still fails the writer's.

mod common;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals_segment::storage::{
    FaultOp, FaultyStorage, FsStorage, MemStorage, Storage, StorageFile,
};
use annals_segment::{segment_file_name, LogOptions, LogReader, LogWriter, Record};
use common::{event, read_all, Owned};

fn open(
    storage: Arc<dyn Storage>,
    segment_bytes: u64,
    zero: Option<bool>,
) -> (LogWriter, LogReader) {
    let options = LogOptions {
        segment_bytes,
        zero_ahead: zero,
    };
    let (writer, reader, _) = annals_segment::open(storage, options).unwrap();
    (writer, reader)
}

/// Appends `count` batches of 1-4 events of varied sizes, each synced like
/// a commit; returns every event in log order.
fn write_commits(writer: &mut LogWriter, count: u64, first: u64) -> Vec<Owned> {
    let mut all = Vec::new();
    let mut n = first;
    for i in 0..count {
        let batch: Vec<Owned> = (0..1 + i % 4)
            .map(|k| {
                n += 1;
                event(n, 100 + ((i * 7919 + k * 131) % 1900) as usize)
            })
            .collect();
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        writer.append(&[&records]).unwrap();
        writer.sync().unwrap();
        all.extend(batch);
    }
    all
}

/// Appends `count` batches of 32 events of 1,000 bytes (32 KiB), syncing
/// after every `sync_every`-th and at the end; returns the events.
fn write_large_batches(writer: &mut LogWriter, count: u64, sync_every: u64) -> Vec<Owned> {
    let mut written = Vec::new();
    for i in 0..count {
        let batch: Vec<Owned> = (0..32).map(|k| event(i * 32 + k, 1000)).collect();
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        writer.append(&[&records]).unwrap();
        if (i + 1) % sync_every == 0 {
            writer.sync().unwrap();
        }
        written.extend(batch);
    }
    writer.sync().unwrap();
    written
}

/// Reopens the log (recovery runs) and checks it holds exactly `written`.
fn assert_reopens_with(storage: Arc<dyn Storage>, segment_bytes: u64, written: &[Owned]) {
    let (_, reader) = open(storage, segment_bytes, Some(true));
    assert_eq!(read_all(&reader), written);
}

/// How a filesystem shows which bytes of a file were written (data or
/// zeros) apart from space only reserved for it: segments are
/// `fallocate`d (whole on disks, in steps on a tmpfs), so the file's size
/// and, where reserving counts as allocating, its `st_blocks` say nothing
/// about what the filler wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// FIEMAP extents not flagged unwritten (ext4, XFS, btrfs).
    Fiemap,
    /// `lseek(SEEK_DATA / SEEK_HOLE)`: a tmpfs has no FIEMAP, and reports
    /// reserved pages not yet written as a hole.
    SeekData,
    /// `st_blocks`: where space cannot be reserved and files are sparse.
    Blocks,
}

/// Bytes of the file at `path` that were written, as `measure` shows them;
/// `None` if the filesystem does not support it.
fn written_bytes(path: &std::path::Path, measure: Measure) -> Option<u64> {
    match measure {
        Measure::Fiemap => written_extent_bytes(path),
        Measure::SeekData => data_bytes(path),
        Measure::Blocks => Some(std::fs::metadata(path).ok()?.blocks() * 512),
    }
}

/// The first [`Measure`] that tells written bytes from reserved ones on
/// the filesystem of the temporary directory: a probe file allocated like
/// a segment (16 MiB through the same storage; extended sparse where it
/// cannot reserve), 64 KiB written and synced, must measure under 1 MiB.
/// `None` where none does. Also whether zero-filling is on by default
/// there.
fn measure_here() -> (Option<Measure>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::open(dir.path()).unwrap();
    let file = storage.create("probe").unwrap();
    if let Err(e) = file.allocate(0, 16 << 20) {
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        file.set_len(16 << 20).unwrap();
    }
    file.write_all_at(&[7u8; 64 << 10], 0).unwrap();
    file.sync_data().unwrap();
    let path = dir.path().join("probe");
    let measure = [Measure::Fiemap, Measure::SeekData, Measure::Blocks]
        .into_iter()
        .find(|&m| written_bytes(&path, m).is_some_and(|b| (64 << 10..1 << 20).contains(&b)));
    (measure, storage.zero_fill_helps())
}

#[allow(unsafe_code)]
fn written_extent_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // linux/fiemap.h
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 0x1;
    const FIEMAP_EXTENT_LAST: u32 = 0x1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 256;
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; EXTENTS],
    }
    let file = std::fs::File::open(path).ok()?;
    let zero = Extent {
        logical: 0,
        physical: 0,
        length: 0,
        reserved64: [0; 2],
        flags: 0,
        reserved: [0; 3],
    };
    let mut total = 0;
    let mut start = 0u64;
    loop {
        let mut map = Box::new(Fiemap {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: EXTENTS as u32,
            reserved: 0,
            extents: [zero; EXTENTS],
        });
        // SAFETY: FS_IOC_FIEMAP reads and writes a `struct fiemap` followed
        // by `extent_count` extents: `map` is exactly that, and lives
        // across the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut *map as *mut Fiemap) };
        if rc != 0 {
            return None;
        }
        let extents = &map.extents[..map.mapped_extents as usize];
        for extent in extents {
            if extent.flags & FIEMAP_EXTENT_UNWRITTEN == 0 {
                total += extent.length;
            }
        }
        match extents.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.logical + last.length;
            }
            _ => return Some(total),
        }
    }
}

/// Bytes of the file between `SEEK_DATA` and the following `SEEK_HOLE`,
/// over the whole file; `None` if `lseek` refuses them.
#[allow(unsafe_code)]
fn data_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).ok()?;
    let size = libc::off_t::try_from(file.metadata().ok()?.len()).ok()?;
    let mut total = 0u64;
    let mut offset: libc::off_t = 0;
    while offset < size {
        // SAFETY: `lseek` takes a descriptor and two integers and touches
        // no memory of this process; the descriptor is `file`'s, open
        // across the call.
        let data = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_DATA) };
        if data < 0 {
            // ENXIO: no data after `offset`.
            return (io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO))
                .then_some(total);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < data {
            return None;
        }
        total += u64::try_from(hole - data).ok()?;
        offset = hole;
    }
    Some(total)
}

#[test]
fn the_active_segment_is_zero_filled_ahead_of_the_writer() {
    const SEGMENT: u64 = 16 << 20;
    // Checked twice, after the same commits without and with zero-filling
    // (waiting for the filler, which runs behind): the writes the log made
    // (on any filesystem: zeros are written at least 4 MiB past the data),
    // and the bytes of the segment file written, data or zeros, on a
    // filesystem that shows them apart from reserved space — which every
    // filesystem where filling is on by default (ext4, XFS) must.
    let (measure, default_on) = measure_here();
    assert!(
        measure.is_some() || !default_on,
        "zero-filling is on by default here, so written bytes must show"
    );
    println!("written bytes measured by {measure:?}");
    let mut on_disk = Vec::new();
    let mut zeros_past_data = Vec::new();
    for zero in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let storage: Arc<dyn Storage> = Arc::new(Zeros(
            Arc::new(FsStorage::open(dir.path()).unwrap()),
            OnZeros::Record(Arc::clone(&seen)),
        ));
        let (mut writer, reader) = open(storage, SEGMENT, Some(zero));
        // About 1 MiB of data: past the point where filling starts.
        let written = write_commits(&mut writer, 400, 0);
        assert_eq!(read_all(&reader), written);
        assert_eq!(reader.segments().len(), 1, "one segment");
        let path = dir.path().join(segment_file_name(0));
        let floor = on_disk.first().copied().unwrap_or(0) + (4 << 20);
        let ahead = || seen.lock().unwrap().zeros_past_data();
        let disk = || measure.map(|m| written_bytes(&path, m).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while zero
            && (ahead() < 4 << 20 || disk().is_some_and(|b| b < floor))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        zeros_past_data.push(ahead());
        on_disk.extend(disk());
        drop(writer);
        // The zeros are past the end: recovery finds exactly the events.
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let (_, reader) = open(storage, SEGMENT, Some(zero));
        assert_eq!(read_all(&reader), written);
    }
    println!("without, with filling: written {on_disk:?}, zeros past the data {zeros_past_data:?}");
    assert_eq!(
        zeros_past_data[0], 0,
        "without filling no zeros are written past the data"
    );
    assert!(
        zeros_past_data[1] >= 4 << 20,
        "with filling, zeros are written at least 4 MiB past the data: {} bytes",
        zeros_past_data[1]
    );
    assert_eq!(on_disk.len(), if measure.is_some() { 2 } else { 0 });
    if let [without, with] = on_disk[..] {
        assert!(
            without < 2 << 20,
            "without filling about the data's 1 MiB is written: {without} bytes"
        );
        assert!(
            with >= without + (4 << 20),
            "with filling, zeros are written ahead of the data: {with} vs {without} bytes"
        );
    }
}

#[test]
fn zero_filling_never_touches_what_the_writer_wrote() {
    // Small segments: the filler starts at once after every roll and races
    // the writer through each one.
    const SEGMENT: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let (mut writer, reader) = open(Arc::clone(&storage), SEGMENT, Some(true));
    let mut written = write_commits(&mut writer, 3_000, 0);
    assert!(
        reader.segments().len() >= 4,
        "the run should roll several times"
    );
    assert_eq!(read_all(&reader), written);
    drop((writer, reader));
    let (mut writer, reader) = open(Arc::clone(&storage), SEGMENT, Some(true));
    assert_eq!(read_all(&reader), written);
    // And after a reopen, in the segment that was active.
    written.extend(write_commits(&mut writer, 1_000, written.len() as u64 + 1));
    assert_eq!(read_all(&reader), written);
    drop((writer, reader));
    assert_reopens_with(storage, SEGMENT, &written);
}

/// What a [`Zeros`] storage does to writes of zeros of 64 KiB or more —
/// the filler's; everything else passes.
#[derive(Debug, Clone)]
enum OnZeros {
    Refuse,
    Delay(Duration),
    Panic,
    /// Notes them, and where the other writes (the log's data) end.
    Record(Arc<Mutex<Seen>>),
}

/// The writes a [`Zeros`] storage with [`OnZeros::Record`] saw (of a log
/// of one segment).
#[derive(Debug, Default)]
struct Seen {
    /// Where the filler's writes of zeros ended.
    zeros_end: u64,
    /// Where every other write ended.
    data_end: u64,
}

impl Seen {
    /// Bytes of zeros written past the end of the data.
    fn zeros_past_data(&self) -> u64 {
        self.zeros_end.saturating_sub(self.data_end)
    }
}

/// Storage that meddles with the filler's writes, or records them.
#[derive(Debug)]
struct Zeros(Arc<dyn Storage>, OnZeros);

#[derive(Debug)]
struct ZerosFile(Arc<dyn StorageFile>, OnZeros);

impl Storage for Zeros {
    fn list(&self) -> io::Result<Vec<String>> {
        self.0.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ZerosFile(self.0.create(name)?, self.1.clone())))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ZerosFile(self.0.open(name)?, self.1.clone())))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.0.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.0.sync_dir()
    }
    fn try_lock(&self) -> io::Result<()> {
        self.0.try_lock()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn file_path(&self, name: &str) -> Option<std::path::PathBuf> {
        self.0.file_path(name)
    }
    fn zero_fill_helps(&self) -> bool {
        self.0.zero_fill_helps()
    }
    fn allocate_in_steps(&self) -> bool {
        self.0.allocate_in_steps()
    }
}

impl StorageFile for ZerosFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let zeros = buf.len() >= 64 << 10 && buf.iter().all(|&b| b == 0);
        if zeros {
            match &self.1 {
                OnZeros::Refuse => return Err(io::Error::other("injected: zero fill refused")),
                OnZeros::Delay(delay) => std::thread::sleep(*delay),
                OnZeros::Panic => panic!("injected: a storage backend panics mid zero fill"),
                OnZeros::Record(_) => {}
            }
        }
        self.0.write_all_at(buf, offset)?;
        if let OnZeros::Record(seen) = &self.1 {
            let mut seen = seen.lock().unwrap();
            let end = offset + buf.len() as u64;
            let field = if zeros {
                &mut seen.zeros_end
            } else {
                &mut seen.data_end
            };
            *field = (*field).max(end);
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.0.allocate(offset, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn map(&self) -> io::Result<annals_segment::storage::Mapping> {
        self.0.map()
    }
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ZerosFile(self.0.reopen()?, self.1.clone())))
    }
}

#[test]
fn a_failing_zero_fill_leaves_the_writer_working() {
    const SEGMENT: u64 = 1 << 20;
    let memory = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(Zeros(Arc::new(memory.handle()), OnZeros::Refuse));
    let (mut writer, reader) = open(Arc::clone(&storage), SEGMENT, Some(true));
    let written = write_commits(&mut writer, 2_000, 0);
    assert!(!writer.is_poisoned());
    assert_eq!(read_all(&reader), written);
    drop((writer, reader));
    assert_reopens_with(storage, SEGMENT, &written);
}

#[test]
fn a_writeback_error_the_filler_syncs_first_still_fails_the_writers_sync() {
    // The kernel reports a failed writeback to the next fsync through each
    // open file description, once. A filler syncing through the writer's
    // own handle takes that report, and the writer's next `fdatasync`
    // returns success over data that never reached the disk.
    const SEGMENT: u64 = 16 << 20;
    let faulty = FaultyStorage::new(Arc::new(MemStorage::new()));
    let (mut writer, reader) = open(Arc::new(faulty.clone()), SEGMENT, Some(true));
    // Past the point where filling starts, synced; then the filler's
    // zeros reach as far ahead as they go, and it idles.
    let written = write_large_batches(&mut writer, 10, 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut syncs = faulty.calls(FaultOp::Sync);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = faulty.calls(FaultOp::Sync);
        if now == syncs {
            break;
        }
        syncs = now;
        assert!(Instant::now() < deadline, "the filler never idled");
    }
    faulty.writeback_error();
    // More data (more than a chunk), not yet synced: the filler zeroes
    // (and syncs) further on, after the error.
    for i in 0..10 {
        let more: Vec<Owned> = (0..32).map(|k| event(1_000 + i * 32 + k, 1000)).collect();
        let records: Vec<Record<'_>> = more.iter().map(Owned::record).collect();
        writer.append(&[&records]).unwrap();
    }
    while faulty.calls(FaultOp::Sync) == syncs {
        assert!(Instant::now() < deadline, "the filler never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        writer.sync().is_err(),
        "the writer's fdatasync must report the writeback error the filler's sync saw"
    );
    assert!(writer.is_poisoned());
    assert_eq!(read_all(&reader), written, "nothing unsynced is published");
}

#[test]
fn a_writer_overtaking_the_filler_waits_for_its_chunk() {
    // Zero writes take 3 ms and the writer appends 32 KiB batches without
    // waiting for a sync: it catches up with the chunk being zeroed, and
    // must wait for it rather than write under it (the zeros would land on
    // its data).
    const SEGMENT: u64 = 4 << 20;
    let memory = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(Zeros(
        Arc::new(memory.handle()),
        OnZeros::Delay(Duration::from_millis(3)),
    ));
    let (mut writer, reader) = open(Arc::clone(&storage), SEGMENT, Some(true));
    let written = write_large_batches(&mut writer, 400, 50);
    assert!(reader.segments().len() >= 3, "the run should roll");
    assert_eq!(read_all(&reader), written);
    drop((writer, reader));
    assert_reopens_with(storage, SEGMENT, &written);
}

#[test]
fn a_filler_that_panics_mid_chunk_never_blocks_the_writer() {
    // The chunk the filler was zeroing stays "busy" unless its end is
    // recorded on unwind too: the writer, reaching it, would wait forever.
    const SEGMENT: u64 = 4 << 20;
    let memory = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(Zeros(Arc::new(memory.handle()), OnZeros::Panic));
    let (done, finished) = std::sync::mpsc::channel();
    let writing = std::thread::spawn(move || {
        let (mut writer, reader) = open(Arc::clone(&storage), SEGMENT, Some(true));
        let written = write_large_batches(&mut writer, 200, 1);
        assert_eq!(read_all(&reader), written);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the writer hung behind a panicked filler"
    );
    writing.join().unwrap();
}
