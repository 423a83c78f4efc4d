//! Zero-filling the active segment ahead of the writer: it happens (the
//! file's blocks get allocated ahead of the data), it never touches a byte
//! the writer wrote (every event reads back, before and after reopen, with
//! the filler racing the writer in every segment), a filler that fails
//! leaves the writer working, and a writeback error the filler's sync meets
//! first still fails the writer's.

mod common;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
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

/// Bytes of the file held by blocks that were written (data or zeros):
/// extents that `fallocate` reserved but nothing wrote yet ("unwritten")
/// do not count. (Segments are now `fallocate`d whole at creation, so
/// `st_blocks` counts every block of the segment from the start; what the
/// filler changes is whether they hold written zeros.) Falls back to
/// `st_blocks` where FIEMAP is not supported.
fn allocated_bytes(path: &std::path::Path) -> u64 {
    written_extent_bytes(path).unwrap_or_else(|| std::fs::metadata(path).unwrap().blocks() * 512)
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

#[test]
fn the_active_segment_is_zero_filled_ahead_of_the_writer() {
    const SEGMENT: u64 = 16 << 20;
    // Blocks allocated to the segment after the same commits, without and
    // with zero-filling (waiting for the filler, which runs behind).
    let mut allocated = Vec::new();
    for zero in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let (mut writer, reader) = open(storage, SEGMENT, Some(zero));
        // About 1 MiB of data: past the point where filling starts.
        let written = write_commits(&mut writer, 400, 0);
        assert_eq!(read_all(&reader), written);
        let path = dir.path().join(segment_file_name(0));
        let floor = allocated.first().copied().unwrap_or(0) + (4 << 20);
        let deadline = Instant::now() + Duration::from_secs(10);
        while zero && allocated_bytes(&path) < floor && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        allocated.push(allocated_bytes(&path));
        drop(writer);
        // The zeros are past the end: recovery finds exactly the events.
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let (_, reader) = open(storage, SEGMENT, Some(zero));
        assert_eq!(read_all(&reader), written);
    }
    let (without, with) = (allocated[0], allocated[1]);
    assert!(
        without < 2 << 20,
        "without filling about the data's 1 MiB is allocated: {without} bytes"
    );
    assert!(
        with >= without + (4 << 20),
        "with filling, zeros are allocated ahead of the data: {with} vs {without} bytes"
    );
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
#[derive(Debug, Clone, Copy)]
enum OnZeros {
    Refuse,
    Delay(Duration),
    Panic,
}

/// Memory storage that meddles with the filler's writes.
#[derive(Debug)]
struct Zeros(MemStorage, OnZeros);

#[derive(Debug)]
struct ZerosFile(Arc<dyn StorageFile>, OnZeros);

impl Storage for Zeros {
    fn list(&self) -> io::Result<Vec<String>> {
        self.0.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ZerosFile(self.0.create(name)?, self.1)))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(ZerosFile(self.0.open(name)?, self.1)))
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
}

impl StorageFile for ZerosFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if buf.len() >= 64 << 10 && buf.iter().all(|&b| b == 0) {
            match self.1 {
                OnZeros::Refuse => return Err(io::Error::other("injected: zero fill refused")),
                OnZeros::Delay(delay) => std::thread::sleep(delay),
                OnZeros::Panic => panic!("injected: a storage backend panics mid zero fill"),
            }
        }
        self.0.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
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
        Ok(Arc::new(ZerosFile(self.0.reopen()?, self.1)))
    }
}

#[test]
fn a_failing_zero_fill_leaves_the_writer_working() {
    const SEGMENT: u64 = 1 << 20;
    let memory = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(Zeros(memory.handle(), OnZeros::Refuse));
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
        memory.handle(),
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
    let storage: Arc<dyn Storage> = Arc::new(Zeros(memory.handle(), OnZeros::Panic));
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
