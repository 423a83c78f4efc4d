//! Property: rebuilding a damaged index run never holds up the write path.
//! An append whose lookup meets a damaged run has it rebuilt on its own
//! caller's thread and is then decided; meanwhile appends to other streams
//! keep committing. Afterwards every event reads back and `verify` is
//! clean.
//! Method: a real store whose one run has a flipped byte in its stream
//! table, reopened through a storage wrapper that holds the rebuild at a
//! gate (the creation of its new run file) until the test opens it; while
//! it is held, an append to a fresh stream must be answered.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use annals::storage::{FsStorage, Storage, StorageFile};
use annals::{EventData, ExpectedVersion, Options, Store};
use parking_lot::{Condvar, Mutex};

mod common;
use common::*;

/// Holds every `create` while closed, and says when one is waiting.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    waiting: AtomicBool,
    lock: Mutex<()>,
    opened: Condvar,
}

#[derive(Debug)]
struct GatedStorage {
    inner: FsStorage,
    gate: Arc<Gate>,
}

impl Storage for GatedStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        let mut guard = self.gate.lock.lock();
        while self.gate.closed.load(Ordering::SeqCst) {
            self.gate.waiting.store(true, Ordering::SeqCst);
            self.gate.opened.wait(&mut guard);
        }
        drop(guard);
        self.inner.create(name)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        self.inner.open(name)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
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
}

/// What an append to a fresh stream, made on another thread, answered
/// within 10 s: while a rebuild waits at the gate, the write path must be
/// free to answer it.
fn fresh_append_answered(store: &Store) -> Result<annals::Result<bool>, mpsc::RecvTimeoutError> {
    let (sender, receiver) = mpsc::channel();
    let store = store.clone();
    std::thread::spawn(move || {
        let result = store.append(
            "fresh-1",
            ExpectedVersion::NoStream,
            vec![EventData::new("E", "1")],
        );
        let _ = sender.send(result.map(|r| r.is_ok()));
    });
    receiver.recv_timeout(Duration::from_secs(10))
}

#[test]
fn a_damaged_run_is_rebuilt_off_the_write_path() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100_000);
    let mut model = Model::new();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        fill(&store, &mut model, 3_000, 50, 2);
    }
    let runs = run_files(dir.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    flip(&dir.path().join(&runs[0].0), 4096 + 1000);

    let gate = Arc::new(Gate::default());
    let storage = GatedStorage {
        inner: FsStorage::open(dir.path()).unwrap(),
        gate: Arc::clone(&gate),
    };
    let store = Store::open_storage(Arc::new(storage), options()).unwrap();
    gate.closed.store(true, Ordering::SeqCst);

    // Appends to every stream of the run: one of them meets the damaged
    // page, and its rebuild waits at the gate.
    let appender = {
        let (store, mut model) = (store.clone(), model.clone());
        std::thread::spawn(move || {
            let mut streams: Vec<String> = model.keys().cloned().collect();
            streams.sort();
            for stream in &streams {
                let positions = model.get_mut(stream).unwrap();
                let version = positions.len() as u64;
                let written = store
                    .append(
                        stream,
                        ExpectedVersion::Exact(version - 1),
                        vec![event(stream, version)],
                    )
                    .unwrap()
                    .unwrap();
                positions.push(written.first_position);
            }
            model
        })
    };
    wait_for("the rebuild to reach the gate", || {
        gate.waiting.load(Ordering::SeqCst)
    });

    // The write path is free: a fresh stream commits while the rebuild waits.
    let answered = fresh_append_answered(&store);
    // Open the gate before judging, so that a failure does not hang.
    gate.closed.store(false, Ordering::SeqCst);
    {
        let _guard = gate.lock.lock();
        gate.opened.notify_all();
    }
    assert!(
        matches!(answered, Ok(Ok(true))),
        "an append to another stream waited for the rebuild: {answered:?}"
    );
    let model = appender.join().unwrap();
    check_against(&store, &model);
    store.verify().unwrap();
}

/// The same for a conditional append (issue 22) whose query meets a
/// damaged page of a *secondary* (tag) run: its rebuild must not hold up
/// the write path either. It did: the condition's lookup rebuilt the run
/// inline, on the group-commit leader, so an unconditional append to a
/// fresh stream waited for the whole rebuild.
/// Opens the gate when dropped: a failed assertion must not leave the
/// store's close (which creates files) waiting at it for ever.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(false, Ordering::SeqCst);
        let _guard = self.0.lock.lock();
        self.0.opened.notify_all();
    }
}

#[test]
fn a_damaged_tag_run_met_by_a_condition_is_rebuilt_off_the_write_path() {
    use annals::{AppendCondition, ConditionFailed, Query, QueryItem};
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().index_buffer_events(100_000);
    let tags: Vec<String> = (0..200).map(|i| format!("t:{i}")).collect();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        for chunk in 0..30 {
            let events = (0..100)
                .map(|i| EventData::new("E", "{}").with_tag(tags[(chunk * 100 + i) % 200].clone()))
                .collect();
            store
                .append("tagged", ExpectedVersion::Any, events)
                .unwrap()
                .unwrap();
        }
    }
    let sidx: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sidx"))
        .collect();
    assert_eq!(sidx.len(), 1, "{sidx:?}");
    // A byte of every page after the header: any lookup meets damage.
    let path = dir.path().join(&sidx[0]);
    let length = std::fs::metadata(&path).unwrap().len();
    for page in 1..length / 4096 {
        flip(&path, page * 4096 + 100);
    }

    let gate = Arc::new(Gate::default());
    let storage = GatedStorage {
        inner: FsStorage::open(dir.path()).unwrap(),
        gate: Arc::clone(&gate),
    };
    let store = Store::open_storage(Arc::new(storage), options()).unwrap();
    let end = store.position_end();
    // Declared after the store: dropped (the gate opened) before it.
    let opener = OpenOnDrop(Arc::clone(&gate));
    gate.closed.store(true, Ordering::SeqCst);

    // Conditions on every tag, from the start: one of them meets a damaged
    // page, and its rebuild waits at the gate.
    let appender = {
        let (store, tags) = (store.clone(), tags.clone());
        std::thread::spawn(move || {
            for (i, tag) in tags.iter().enumerate() {
                let query = Query::new([QueryItem::new().tags([tag.as_str()])]);
                let outcome = store
                    .append_with_condition(
                        vec![(
                            "other".into(),
                            ExpectedVersion::Any,
                            vec![EventData::new("E", "{}")],
                        )],
                        AppendCondition::new(query),
                    )
                    .unwrap();
                // The tag's first event, in the damaged run, fails it.
                let failed = Err(ConditionFailed { position: i as u64 }.into());
                assert_eq!(outcome, failed, "{tag}");
            }
        })
    };
    wait_for("the rebuild to reach the gate", || {
        gate.waiting.load(Ordering::SeqCst)
    });

    let answered = fresh_append_answered(&store);
    drop(opener);
    assert!(
        matches!(answered, Ok(Ok(true))),
        "an append to another stream waited for the rebuild: {answered:?}"
    );
    appender.join().unwrap();
    assert_eq!(store.position_end(), end + 1, "only the fresh append");
    store.verify().unwrap();
}
