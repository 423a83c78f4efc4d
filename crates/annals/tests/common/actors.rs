//! Actor threads of a race test, whose first failure is the one reported.
//!
//! When one actor panics, others often panic after it for its sake: a
//! mutex it held is poisoned, a channel closed. Joining them in spawn order
//! with `join().unwrap()` fails the test with `Any { .. }` at the join,
//! whichever actor is joined first. Here every panic in an actor is
//! recorded by a panic hook *before* it unwinds (so before the guards it
//! holds poison anything: a failure caused by it is always recorded after
//! it), the test is told to stop, and [`Actors::join`] joins all of them
//! and fails with the first failure's thread, place and message.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread::JoinHandle;

/// A panic in an actor thread.
#[derive(Debug, Clone)]
pub struct ActorFailure {
    /// Order among every recorded panic of the process.
    pub sequence: u64,
    /// The actor's name.
    pub actor: String,
    /// `file:line:column` of the panic.
    pub place: String,
    /// The panic's message.
    pub message: String,
}

type Failures = Arc<Mutex<Vec<ActorFailure>>>;

thread_local! {
    /// Where this thread's panics are recorded: set in actor threads only.
    static SINK: RefCell<Option<(String, Failures)>> = const { RefCell::new(None) };
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

/// The text of a panic payload (`panic!` with a message gives `&str` or
/// `String`).
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic payload that is not text)".to_owned()
    }
}

/// Installs, once per process, a hook that records the panics of actor
/// threads and then does what the previous hook did (prints the panic).
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            // `try_with`: a panic while the thread's locals are torn down
            // is only printed.
            let _ = SINK.try_with(|sink| {
                if let Some((actor, failures)) = &*sink.borrow() {
                    let failure = ActorFailure {
                        sequence: SEQUENCE.fetch_add(1, Ordering::SeqCst),
                        actor: actor.clone(),
                        place: info.location().map_or_else(String::new, |l| l.to_string()),
                        message: payload_text(info.payload()),
                    };
                    failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(failure);
                }
            });
            previous(info);
        }));
    });
}

/// The actor threads of one test.
#[derive(Default)]
pub struct Actors {
    failures: Failures,
    handles: Vec<(String, JoinHandle<()>)>,
}

impl Actors {
    /// No actors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `body` on a thread named `name`. If it panics, the panic is
    /// recorded and `on_failure` runs (to tell the others to stop).
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        on_failure: impl FnOnce() + Send + 'static,
        body: impl FnOnce() + Send + 'static,
    ) {
        install_hook();
        let name = name.into();
        let failures = Arc::clone(&self.failures);
        let actor = name.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                SINK.with(|sink| *sink.borrow_mut() = Some((actor, failures)));
                if std::panic::catch_unwind(AssertUnwindSafe(body)).is_err() {
                    on_failure();
                }
            })
            .unwrap_or_else(|e| panic!("spawning actor {name}: {e}"));
        self.handles.push((name, handle));
    }

    /// Whether an actor has failed.
    pub fn failed(&self) -> bool {
        !self.failures().is_empty()
    }

    /// The failures recorded so far, first first.
    pub fn failures(&self) -> Vec<ActorFailure> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        failures.sort_by_key(|f| f.sequence);
        failures
    }

    /// Joins every actor. If any failed, panics with the first failure
    /// (and how many came after it, with their messages).
    pub fn join(mut self) {
        let mut unrecorded = Vec::new();
        for (name, handle) in std::mem::take(&mut self.handles) {
            // Actors catch their own panics; one escaping anyway (from
            // `on_failure`) is reported too, after the recorded ones.
            if let Err(payload) = handle.join() {
                unrecorded.push(format!("{name}: {}", payload_text(payload.as_ref())));
            }
        }
        let failures = self.failures();
        let Some(first) = failures.first() else {
            assert!(unrecorded.is_empty(), "actors failed: {unrecorded:?}");
            return;
        };
        let later: Vec<String> = failures[1..]
            .iter()
            .map(|f| format!("{} at {}: {}", f.actor, f.place, f.message))
            .chain(unrecorded)
            .collect();
        panic!(
            "actor {} failed first, at {}: {}\n({} later failure(s), perhaps caused by it: {later:#?})",
            first.actor,
            first.place,
            first.message,
            later.len()
        );
    }
}
