//! Property: whatever happens inside a group commit — a `Storage` that
//! panics on its Nth write or Nth sync — every caller of that group gets an
//! error, the store is poisoned as after a failed fsync (every later append
//! and flush fails fast, carrying the cause), nothing hangs, and every
//! append acknowledged before the panic survives a reopen.
//! Method: a storage wrapper that panics on a countdown, around the
//! crash-simulating `MemStorage`; concurrent appenders whose answers must
//! arrive within a deadline (a hang fails the test instead of blocking it).

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use annals::storage::{CrashMode, Mapping, MemStorage, Storage, StorageFile};
use annals::{Direction, Error, EventData, ExpectedVersion, Options, Store};

/// Countdowns shared by a storage and its files: at zero, the operation
/// panics (once); negative means disarmed.
#[derive(Debug, Default)]
struct Plan {
    writes: AtomicI64,
    syncs: AtomicI64,
}

impl Plan {
    fn disarmed() -> Arc<Plan> {
        let plan = Plan::default();
        plan.writes.store(-1, Ordering::SeqCst);
        plan.syncs.store(-1, Ordering::SeqCst);
        Arc::new(plan)
    }

    fn tick(counter: &AtomicI64, what: &str) {
        if counter.load(Ordering::SeqCst) < 0 {
            return;
        }
        if counter.fetch_sub(1, Ordering::SeqCst) == 0 {
            panic!("injected panic on a {what}");
        }
    }
}

#[derive(Debug)]
struct PanickyStorage {
    inner: Arc<dyn Storage>,
    plan: Arc<Plan>,
}

#[derive(Debug)]
struct PanickyFile {
    inner: Arc<dyn StorageFile>,
    plan: Arc<Plan>,
}

impl PanickyStorage {
    fn wrap(&self, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(PanickyFile {
            inner,
            plan: Arc::clone(&self.plan),
        })
    }
}

impl Storage for PanickyStorage {
    fn list(&self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn create(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(self.inner.create(name)?))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(self.inner.open(name)?))
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

impl StorageFile for PanickyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Plan::tick(&self.plan.writes, "write");
        self.inner.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        Plan::tick(&self.plan.syncs, "sync");
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        Plan::tick(&self.plan.syncs, "sync");
        self.inner.sync_all()
    }
    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }
    fn reopen(&self) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(PanickyFile {
            inner: self.inner.reopen()?,
            plan: Arc::clone(&self.plan),
        }))
    }
}

/// An answer must arrive within this time, or the store hangs.
const DEADLINE: Duration = Duration::from_secs(20);

fn options() -> Options {
    // No zero filler: its writes and syncs would take the countdown on a
    // thread of their own, outside any commit.
    Options::default().zero_ahead(false).segment_bytes(64 << 10)
}

fn event(i: u64) -> EventData {
    EventData::new("Happened", format!("event {i}"))
}

/// Runs `f` on a thread and waits for it at most [`DEADLINE`].
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what} hung for {DEADLINE:?}"))
}

/// Arms a panic at the `nth` write or sync (counted from now), runs eight
/// concurrent appenders, and checks every one is answered, the store is
/// poisoned with the panic as its cause, and what was acknowledged before
/// survives a reopen.
fn panic_inside_a_commit(sync: bool, nth: i64) {
    let mem = MemStorage::new();
    let plan = Plan::disarmed();
    let storage = PanickyStorage {
        inner: Arc::new(mem.handle()),
        plan: Arc::clone(&plan),
    };
    let store = Store::open_storage(Arc::new(storage), options()).unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(
            store
                .append("before", ExpectedVersion::Any, vec![event(i)])
                .unwrap()
                .unwrap(),
        );
    }
    if sync {
        plan.syncs.store(nth, Ordering::SeqCst);
    } else {
        plan.writes.store(nth, Ordering::SeqCst);
    }

    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let appenders: Vec<_> = (0..threads)
        .map(|t| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut answers = Vec::new();
                for i in 0..20 {
                    let stream = format!("s-{t}");
                    answers.push(store.append(&stream, ExpectedVersion::Any, vec![event(i)]));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<_> = within_deadline("appenders after a panic in a commit", move || {
        appenders
            .into_iter()
            .flat_map(|a| a.join().expect("an appender panicked"))
            .collect()
    });

    let failed: Vec<&Error> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(!failed.is_empty(), "the armed panic never fired");
    for error in &failed {
        assert!(
            matches!(error.poison_cause(), Some(Error::Panicked(m)) if m.contains("injected panic")),
            "an answer after the panic does not carry it: {error}"
        );
    }
    // Once poisoned, nothing is acknowledged any more (per appender, in
    // the order it asked).
    for (t, chunk) in answers.chunks(20).enumerate() {
        if let Some(k) = chunk.iter().position(Result::is_err) {
            assert!(
                chunk[k..].iter().all(Result::is_err),
                "appender {t} was acknowledged after the store was poisoned"
            );
        }
    }
    for result in answers.iter().flatten() {
        acked.push(result.as_ref().unwrap().clone());
    }

    // Later calls fail fast with the same cause.
    let later = {
        let store = store.clone();
        within_deadline("an append after the panic", move || {
            store.append("later", ExpectedVersion::Any, vec![event(0)])
        })
    };
    assert!(
        matches!(&later, Err(e) if matches!(e.poison_cause(), Some(Error::Panicked(_)))),
        "{later:?}"
    );
    let flushed = {
        let store = store.clone();
        within_deadline("a flush after the panic", move || store.flush())
    };
    assert!(flushed.is_err(), "a flush after the panic succeeded");
    // Reads still work, and closing does not hang.
    for result in &acked {
        let read = store
            .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(read[0].position, result.first_position);
    }
    within_deadline("closing a poisoned store", move || drop(store));

    // Everything acknowledged survives a crash and reopen.
    let image = mem.crash_image(7, CrashMode::DropUnsynced);
    let store = Store::open_storage(Arc::new(image), options()).unwrap();
    for result in &acked {
        let read = store
            .read_stream(&result.stream, result.first_version, Direction::Forward, 1)
            .unwrap();
        assert_eq!(read.len(), 1, "lost {result:?}");
        assert_eq!(read[0].position, result.first_position);
    }
    store.verify().unwrap();
}

#[test]
fn a_panic_on_the_nth_sync_inside_a_commit_answers_every_caller_and_poisons() {
    for nth in [0, 1, 3] {
        panic_inside_a_commit(true, nth);
    }
}

#[test]
fn a_panic_on_the_nth_write_inside_a_commit_answers_every_caller_and_poisons() {
    for nth in [0, 1, 3] {
        panic_inside_a_commit(false, nth);
    }
}

#[test]
fn every_request_of_a_failed_group_carries_the_cause() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let store = Store::open_storage(Arc::new(faulty.clone()), options()).unwrap();
    store
        .append("s", ExpectedVersion::Any, vec![event(0)])
        .unwrap()
        .unwrap();
    faulty.inject(Fault {
        op: FaultOp::Sync,
        nth: 0,
        persistent: false,
        kind: FaultKind::Eio,
    });
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let appenders: Vec<_> = (0..threads)
        .map(|t| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                store.append(&format!("s-{t}"), ExpectedVersion::Any, vec![event(1)])
            })
        })
        .collect();
    for appender in appenders {
        let answer = appender.join().unwrap();
        let Err(error) = &answer else {
            panic!("acknowledged after a failed fsync: {answer:?}");
        };
        assert!(
            matches!(error.poison_cause(), Some(Error::Log(_))),
            "an answer does not carry the failed fsync: {error}"
        );
        assert!(
            std::error::Error::source(error).is_some(),
            "{error} has no source"
        );
    }
}

#[test]
fn close_returns_the_final_sync_error() {
    use annals::storage::{Fault, FaultKind, FaultOp, FaultyStorage};
    use annals::Durability;
    let mem = MemStorage::new();
    let faulty = FaultyStorage::new(Arc::new(mem.handle()));
    let store = Store::open_storage(
        Arc::new(faulty.clone()),
        options().durability(Durability::Buffered),
    )
    .unwrap();
    store
        .append("s", ExpectedVersion::Any, vec![event(0)])
        .unwrap()
        .unwrap();
    faulty.inject(Fault {
        op: FaultOp::Sync,
        nth: 0,
        persistent: true,
        kind: FaultKind::Eio,
    });
    let closed = store.close();
    assert!(closed.is_err(), "the failed final sync was swallowed");
}

#[test]
fn close_of_one_clone_flushes_and_keeps_the_store_open() {
    let mem = MemStorage::new();
    let store = Store::open_storage(Arc::new(mem.handle()), options()).unwrap();
    let other = store.clone();
    store
        .append("s", ExpectedVersion::Any, vec![event(0)])
        .unwrap()
        .unwrap();
    store.close().unwrap();
    other
        .append("s", ExpectedVersion::Any, vec![event(1)])
        .unwrap()
        .unwrap();
    other.close().unwrap();
}
