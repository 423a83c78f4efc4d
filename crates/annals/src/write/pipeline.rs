//! Leader/follower group commit: the bounded queue, who leads, how long a
//! leader gathers, and waking the followers a leader answered.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Answer, Work, Writer};
use crate::error::Error;
use crate::{Durability, WriteStats};

/// Where a waiting caller learns its fate.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Waiting,
    /// This caller is now the leader.
    Lead,
    /// Answered; the caller wakes others of its group on its way out.
    Done(Answer, Arc<Wakes>),
}

/// The answered followers of one group, woken as a tree: the leader wakes
/// two, and every follower woken wakes two more before it returns. Waking
/// one by one cost the leader ~13 µs per follower here (each wakee ran on
/// the waker's core before the next wake): ~0.5 ms for a group of 30.
struct Wakes {
    slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
}

impl Wakes {
    /// Wakes the next two followers not yet woken, if any.
    fn help(&self) {
        for _ in 0..2 {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            match self.slots.get(i) {
                Some(slot) => {
                    slot.changed.notify_one();
                }
                None => return,
            }
        }
    }
}

impl Slot {
    fn set(&self, state: SlotState) {
        self.fill(state);
        self.changed.notify_one();
    }

    /// Sets the state without waking the caller (see [`Wakes`]).
    fn fill(&self, state: SlotState) {
        *self.state.lock() = state;
    }

    /// Blocks until answered or made leader.
    fn wait(&self) -> SlotState {
        let mut state = self.state.lock();
        while matches!(*state, SlotState::Waiting) {
            self.changed.wait(&mut state);
        }
        std::mem::take(&mut *state)
    }
}

/// A queued request.
pub(crate) struct Request {
    pub(super) work: Work,
    slot: Arc<Slot>,
}

struct Queue {
    pending: VecDeque<Request>,
    leader: bool,
    /// How many requests the last leader expects the next group to hold:
    /// those waiting when it finished, plus those it answered (callers
    /// that append in a loop come straight back).
    expected: usize,
    /// While a leader gathers (or waits out a batching delay): the queue
    /// length at which it stops.
    gather_target: usize,
    /// Groups to commit without gathering, after a gather that waited its
    /// whole time for nobody.
    gather_skip: u32,
    /// Recent time to commit a group (moving average), which bounds how
    /// long a leader gathers.
    commit_time: Duration,
    stats: WriteStats,
}

/// Groups committed without gathering after a gather that gained nothing.
const GATHER_SKIP_GROUPS: u32 = 8;

/// The write path shared by every `Store` clone.
pub(crate) struct Pipeline {
    queue: Mutex<Queue>,
    space: Condvar,
    /// Wakes a gathering leader when the queue reaches its target.
    gathered: Condvar,
    writer: Mutex<Writer>,
    queue_max: usize,
    group_max: usize,
    delay: Option<Duration>,
    gather: bool,
}

impl Pipeline {
    /// `gather`: whether a leader in [`Durability::Fsync`] mode waits
    /// briefly for the callers the previous group answered (see the
    /// `gather` method).
    pub(crate) fn new(writer: Writer, queue_max: usize, group_max: usize, gather: bool) -> Self {
        let delay = match writer.durability {
            Durability::Batched { delay } => Some(delay),
            _ => None,
        };
        let gather = gather && writer.durability == Durability::Fsync;
        Pipeline {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                leader: false,
                expected: 0,
                gather_target: 0,
                gather_skip: 0,
                commit_time: Duration::ZERO,
                stats: WriteStats::default(),
            }),
            space: Condvar::new(),
            gathered: Condvar::new(),
            writer: Mutex::new(writer),
            queue_max: queue_max.max(1),
            group_max: group_max.max(1),
            delay,
            gather,
        }
    }

    /// Queues `work` and returns its answer, leading a group commit if no
    /// one else is.
    pub(crate) fn submit(&self, work: Work) -> Answer {
        let slot = Arc::new(Slot::default());
        let lead_now = {
            let mut queue = self.queue.lock();
            while queue.pending.len() >= self.queue_max {
                self.space.wait(&mut queue);
            }
            queue.pending.push_back(Request {
                work,
                slot: Arc::clone(&slot),
            });
            if queue.gather_target != 0 && queue.pending.len() >= queue.gather_target {
                self.gathered.notify_one();
            }
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead_now {
            return self.lead(&slot);
        }
        match slot.wait() {
            SlotState::Done(answer, wakes) => {
                wakes.help();
                answer
            }
            SlotState::Lead => self.lead(&slot),
            SlotState::Waiting => Answer::Append(Err(Error::Closed)),
        }
    }

    /// Commits one group, which holds the leader's own request (it is at
    /// the front of the queue), then passes leadership on.
    fn lead(&self, own: &Arc<Slot>) -> Answer {
        let group: Vec<Request> = {
            let mut queue = self.queue.lock();
            if let Some(delay) = self.delay {
                // Batched durability: give more writers time to join the
                // group, until it is full.
                let target = self.group_max.min(self.queue_max);
                self.wait_for_queue(&mut queue, target, Instant::now() + delay);
            } else if self.gather {
                self.gather(&mut queue);
            }
            let n = queue.pending.len().min(self.group_max);
            let group = queue.pending.drain(..n).collect();
            self.space.notify_all();
            group
        };
        let started = Instant::now();
        let (answers, woken) = {
            let mut writer = self.writer.lock();
            // A panic inside a commit (a `Storage` implementation, a broken
            // invariant) must not leave followers waiting on their slots and
            // the leader flag set forever: it poisons the writer like a
            // failed fsync, and every caller of the group is answered.
            let answers =
                match std::panic::catch_unwind(AssertUnwindSafe(|| writer.commit_group(&group))) {
                    Ok(answers) => answers,
                    Err(panic) => writer.fail(Error::Panicked(panic_message(&*panic)), &group),
                };
            (answers, std::mem::take(&mut writer.woken))
        };
        let took = started.elapsed();
        let next = {
            let mut queue = self.queue.lock();
            queue.commit_time = if queue.commit_time.is_zero() {
                took
            } else {
                (queue.commit_time * 7 + took) / 8
            };
            queue.expected = queue.pending.len() + group.len();
            queue.stats.groups += 1;
            queue.stats.requests += group.len() as u64;
            match queue.pending.front() {
                Some(next) => Some(Arc::clone(&next.slot)),
                None => {
                    queue.leader = false;
                    None
                }
            }
        };
        // Woken outside the queue lock: a wakee that preempts its waker
        // must not find the lock held (measured: the next leader waited
        // ~100 µs for it with 64 writers).
        if let Some(next) = next {
            next.set(SlotState::Lead);
        }
        let mut own_answer = None;
        let mut slots = Vec::with_capacity(group.len());
        let mut their_answers = Vec::with_capacity(group.len());
        for (request, answer) in group.into_iter().zip(answers) {
            let Request { work, slot } = request;
            // An undecided request goes back to its caller whole.
            let answer = match answer {
                Answer::Repair(None) => Answer::Repair(Some(work)),
                answer => answer,
            };
            if Arc::ptr_eq(&slot, own) {
                own_answer = Some(answer);
            } else {
                slots.push(slot);
                their_answers.push(answer);
            }
        }
        if !slots.is_empty() {
            let wakes = Arc::new(Wakes {
                slots,
                next: AtomicUsize::new(0),
            });
            for (slot, answer) in wakes.slots.iter().zip(their_answers) {
                slot.fill(SlotState::Done(answer, Arc::clone(&wakes)));
            }
            wakes.help();
        }
        // Last, once the writer is let go, leadership passed on and the
        // followers answered: async subscribers' wakers. A waker is the
        // user's code and may append; woken any earlier, that append would
        // queue behind this very thread and wait for ever
        // (`tests/lock_order.rs`).
        woken.wake();
        own_answer.unwrap_or(Answer::Append(Err(Error::Internal(
            "the leader's request was not in its group".into(),
        ))))
    }

    /// Waits, for at most a quarter of a recent group's commit time, until
    /// the queue holds the requests the previous leader expected: the ones
    /// it answered come back while the ones that waited are already here.
    /// Without it, callers that append in a loop split into two halves that
    /// take turns, each group half of them (8 writers: groups of ~4.4; with
    /// it ~7.8, and ~20% more commits/s — docs/PERFORMANCE-HISTORY.md). A caller
    /// alone expects only itself and never waits; a gather that waited its
    /// whole time for nobody turns gathering off for the next groups.
    fn gather(&self, queue: &mut parking_lot::MutexGuard<'_, Queue>) {
        if queue.gather_skip > 0 {
            queue.gather_skip -= 1;
            return;
        }
        let target = queue.expected.min(self.group_max).min(self.queue_max);
        let before = queue.pending.len();
        if before >= target {
            return;
        }
        queue.stats.gathers += 1;
        let deadline = Instant::now() + queue.commit_time / 4;
        if !self.wait_for_queue(queue, target, deadline) {
            queue.stats.gather_timeouts += 1;
            if queue.pending.len() == before {
                queue.gather_skip = GATHER_SKIP_GROUPS;
            }
        }
    }

    /// Waits until the queue holds `target` requests (true) or `deadline`
    /// passes (false). Submitters wake the waiter when they reach it.
    fn wait_for_queue(
        &self,
        queue: &mut parking_lot::MutexGuard<'_, Queue>,
        target: usize,
        deadline: Instant,
    ) -> bool {
        queue.gather_target = target;
        let mut reached = true;
        while queue.pending.len() < target {
            if self.gathered.wait_until(queue, deadline).timed_out() {
                reached = queue.pending.len() >= target;
                break;
            }
        }
        queue.gather_target = 0;
        reached
    }

    /// Counts of what the write path did since open.
    pub(crate) fn stats(&self) -> WriteStats {
        self.queue.lock().stats
    }

    /// Syncs on close and marks the log cleanly closed, unless poisoned
    /// (the next open recovers from disk); the error of that sync, if any.
    pub(crate) fn close(&self) -> crate::Result<()> {
        let mut writer = self.writer.lock();
        if writer.poison.is_some() {
            return Ok(());
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| writer.log.close_clean())) {
            Ok(result) => result.map_err(Error::from),
            Err(panic) => Err(Error::Panicked(panic_message(&*panic))),
        }
    }
}

/// The text a panic was raised with.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
