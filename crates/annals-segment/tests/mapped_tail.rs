//! Properties of how segment files are allocated, mapped and cut, which on
//! a real tmpfs decide between an error and a SIGBUS: recovery never reads
//! the unwritten tail through a mapping, a torn tail is cut without
//! shortening the file, a filesystem too full for a new segment is a typed
//! error at its creation, where allocation costs memory segments grow in
//! steps, and reads see frames written after the file grew.
//!
//! Method: a storage wrapper that stands for what the kernel does. Its
//! mappings show `0xAB` (not zeros) for every byte of a file that was never
//! written through it — what touching such a page through a mapping means
//! on a full tmpfs is a SIGBUS, here a wrong byte that any use shows — and
//! it records every `set_len` that would shorten a file.

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use annals_segment::storage::{FsStorage, Mapping, MemStorage, Storage, StorageFile};
use annals_segment::{segment_file_name, Error, LogOptions, Record};
use common::{event, read_all, Owned};

/// What the wrapper saw, shared by every handle.
#[derive(Debug, Default)]
struct Seen {
    /// Per file: end of the furthest byte written through the wrapper.
    written: HashMap<String, u64>,
    /// `set_len` calls that shortened a file: (file, from, to).
    shortened: Vec<(String, u64, u64)>,
    /// Allocation fails with ENOSPC.
    full: bool,
}

#[derive(Debug)]
struct Watched {
    inner: Arc<dyn Storage>,
    seen: Arc<Mutex<Seen>>,
    in_steps: bool,
    /// Mappings show 0xAB for unwritten bytes (else the real mapping).
    poison: bool,
}

#[derive(Debug)]
struct WatchedFile {
    name: String,
    inner: Arc<dyn StorageFile>,
    seen: Arc<Mutex<Seen>>,
    poison: bool,
}

impl Watched {
    fn new(inner: Arc<dyn Storage>, in_steps: bool) -> Arc<Self> {
        Arc::new(Watched {
            inner,
            seen: Arc::default(),
            in_steps,
            poison: true,
        })
    }

    fn wrap(&self, name: &str, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(WatchedFile {
            name: name.to_owned(),
            inner,
            seen: Arc::clone(&self.seen),
            poison: self.poison,
        })
    }
}

impl Storage for Watched {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.seen.lock().written.insert(name.to_owned(), 0);
        Ok(self.wrap(name, self.inner.create(name)?))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(name, self.inner.open(name)?))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut seen = self.seen.lock();
        let end = seen.written.remove(from).unwrap_or(0);
        seen.written.insert(to.to_owned(), end);
        drop(seen);
        self.inner.rename(from, to)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn try_lock(&self) -> io::Result<()> {
        self.inner.try_lock()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn allocate_in_steps(&self) -> bool {
        self.in_steps
    }
}

impl StorageFile for WatchedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let mut seen = self.seen.lock();
        let written = seen.written.entry(self.name.clone()).or_insert(0);
        *written = (*written).max(end);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let was = self.inner.len()?;
        if len < was {
            self.seen
                .lock()
                .shortened
                .push((self.name.clone(), was, len));
        }
        self.inner.set_len(len)
    }
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.seen.lock().full {
            return Err(io::Error::from_raw_os_error(28));
        }
        match self.inner.allocate(offset, len) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                let end = offset + len;
                if self.inner.len()? < end {
                    self.inner.set_len(end)?;
                }
                Ok(())
            }
            other => other,
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn map(&self) -> io::Result<Mapping> {
        let map = self.inner.map()?;
        if !self.poison {
            return Ok(map);
        }
        let written = self.seen.lock().written.get(&self.name).copied();
        // Files written before this wrapper saw them count as written.
        let Some(written) = written else {
            return Ok(map);
        };
        let mut bytes = map.bytes().to_vec();
        for byte in bytes.iter_mut().skip(written as usize) {
            *byte = 0xAB;
        }
        Ok(Mapping::new(Arc::new(bytes), false))
    }
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(WatchedFile {
            name: self.name.clone(),
            inner: self.inner.reopen()?,
            seen: Arc::clone(&self.seen),
            poison: self.poison,
        }))
    }
}

fn options(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        zero_ahead: Some(false),
    }
}

fn write(writer: &mut annals_segment::LogWriter, events: &[Owned]) {
    for batch in events.chunks(3) {
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        writer.append(&[&records]).unwrap();
        writer.sync().unwrap();
    }
}

#[test]
fn the_tail_of_the_active_segment_is_never_read_through_a_mapping() {
    let storage = Watched::new(Arc::new(MemStorage::new()), false);
    let events: Vec<Owned> = (0..40).map(|n| event(n, 300)).collect();
    let (mut writer, _, _) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(1 << 20)).unwrap();
    write(&mut writer, &events);
    // Killed: no clean close, so the next open checks the whole tail.
    drop(writer);
    let (_, reader, report) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(1 << 20)).unwrap();
    assert_eq!(
        report.truncated, None,
        "the unwritten tail was read through a mapping (it showed 0xAB, not zeros)"
    );
    assert_eq!(read_all(&reader), events);
}

#[test]
fn a_torn_tail_is_cut_without_shortening_the_file() {
    let storage = Watched::new(Arc::new(MemStorage::new()), false);
    let events: Vec<Owned> = (0..40).map(|n| event(n, 300)).collect();
    let (mut writer, reader, _) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(1 << 20)).unwrap();
    write(&mut writer, &events);
    let data_end = reader.segments()[0].data_bytes;
    drop(writer);
    // A torn frame: bytes that are no frame after the last one, and more
    // a page further on.
    let name = segment_file_name(0);
    let file = storage.open(&name).unwrap();
    let len = file.len().unwrap();
    file.write_all_at(&[0x5A; 100], data_end).unwrap();
    file.write_all_at(&[0x33; 10], data_end + 5000).unwrap();
    drop(file);
    let (_, reader, report) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(1 << 20)).unwrap();
    assert_eq!(report.truncated, Some((name.clone(), data_end)));
    assert_eq!(read_all(&reader), events);
    assert_eq!(
        storage.seen.lock().shortened,
        vec![],
        "a file was shortened"
    );
    let file = storage.open(&name).unwrap();
    assert_eq!(file.len().unwrap(), len, "the file keeps its length");
    let mut tail = vec![0xFFu8; 6000];
    file.read_exact_at(&mut tail, data_end).unwrap();
    assert!(tail.iter().all(|b| *b == 0), "the torn bytes are zeros now");
}

#[test]
fn a_filesystem_too_full_for_a_new_segment_is_an_error_at_its_creation() {
    let storage = Watched::new(Arc::new(MemStorage::new()), false);
    storage.seen.lock().full = true;
    let error = annals_segment::open(storage.clone() as Arc<dyn Storage>, options(1 << 20))
        .map(|_| ())
        .unwrap_err();
    match &error {
        Error::Io { op, source, .. } => {
            assert_eq!(*op, "preallocate");
            assert_eq!(source.raw_os_error(), Some(28), "{error}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    assert_eq!(
        storage.list().unwrap(),
        Vec::<String>::new(),
        "the segment that could not be allocated is removed"
    );
    // A segment rolled into on a full filesystem: the roll fails, typed.
    storage.seen.lock().full = false;
    let (mut writer, reader, _) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(64 << 10)).unwrap();
    storage.seen.lock().full = true;
    let events: Vec<Owned> = (0..1000).map(|n| event(n, 300)).collect();
    let mut error = None;
    for batch in events.chunks(3) {
        let records: Vec<Record<'_>> = batch.iter().map(Owned::record).collect();
        if let Err(e) = writer.append(&[&records]).and_then(|_| writer.sync()) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the first segment fills and the roll needs space");
    assert!(error.to_string().contains("os error 28"), "{error}");
    assert_eq!(reader.segments().len(), 1);
}

#[test]
fn where_allocation_costs_memory_segments_grow_in_steps() {
    let storage = Watched::new(Arc::new(MemStorage::new()), true);
    let (mut writer, reader, _) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(64 << 20)).unwrap();
    write(&mut writer, &[event(0, 10)]);
    let file = storage.open(&segment_file_name(0)).unwrap();
    assert_eq!(
        file.len().unwrap(),
        64 << 10,
        "a one-event segment holds 64 KiB"
    );
    let events: Vec<Owned> = (1..3000).map(|n| event(n, 1000)).collect();
    write(&mut writer, &events);
    let len = file.len().unwrap();
    let data = reader.segments()[0].data_bytes;
    assert!(
        len >= data && len <= data + (4 << 20),
        "the file grows ahead of the data by at most a step: {len} for {data}"
    );
    assert_eq!(read_all(&reader).len(), 3000);
}

#[test]
fn reads_see_frames_written_after_the_file_grew() {
    // Real files and real (live) mappings, allocated in steps: a mapping
    // taken when the file was 64 KiB long must not serve a read of a frame
    // written past that.
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Watched {
        poison: false,
        ..Arc::into_inner(Watched::new(
            Arc::new(FsStorage::open(dir.path()).unwrap()),
            true,
        ))
        .unwrap()
    });
    let (mut writer, reader, _) =
        annals_segment::open(storage.clone() as Arc<dyn Storage>, options(64 << 20)).unwrap();
    let mut events = Vec::new();
    for n in 0..2000 {
        let e = event(n, 1000);
        write(&mut writer, std::slice::from_ref(&e));
        events.push(e);
        // A read after every append keeps a mapping of the file as it was.
        let mut last = None;
        reader
            .with_event(n, |record| last = Some(Owned::from_record(record)))
            .unwrap();
        assert_eq!(last.as_ref(), events.last());
    }
    assert_eq!(read_all(&reader), events);
    reader.verify().unwrap();
}

#[test]
fn a_tail_full_of_the_salt_is_checked_without_reading_a_frame_per_offset() {
    // Every 8-byte word of a 24 MiB tail is the segment's salt, so every
    // aligned offset is a candidate for a later frame, and each claims a
    // length of up to 16 MiB: the search must read only each candidate's
    // header (its checksum fails first), not up to 16 MiB per offset.
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let (mut writer, reader, _) =
        annals_segment::open(Arc::clone(&storage), options(64 << 20)).unwrap();
    write(&mut writer, &[event(0, 100)]);
    let data_end = reader.segments()[0].data_bytes;
    drop(writer);
    let file = storage.open(&segment_file_name(0)).unwrap();
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).unwrap();
    let salt: [u8; 8] = header[24..32].try_into().unwrap();
    let tail: Vec<u8> = salt.iter().copied().cycle().take(24 << 20).collect();
    file.write_all_at(&tail, data_end + 8).unwrap();
    drop(file);
    let (done, finished) = std::sync::mpsc::channel();
    let opener = Arc::clone(&storage);
    std::thread::spawn(move || {
        let opened = annals_segment::open(opener, options(64 << 20))
            .map(|(_, reader, report)| (read_all(&reader).len(), report.truncated.is_some()));
        let _ = done.send(opened.map_err(|e| e.to_string()));
    });
    let opened = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("recovery did not finish within 60 s");
    assert_eq!(opened, Ok((1, true)));
}
