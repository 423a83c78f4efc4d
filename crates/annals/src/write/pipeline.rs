//! Leader/follower group commit: the bounded queue, who leads, and waking
//! the followers a leader answered.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Answer, Work, Writer};
use crate::error::Error;
use crate::Durability;

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
    Done(Answer),
}

impl Slot {
    fn set(&self, state: SlotState) {
        *self.state.lock() = state;
        self.changed.notify_one();
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
}

/// The write path shared by every `Store` clone.
pub(crate) struct Pipeline {
    queue: Mutex<Queue>,
    space: Condvar,
    writer: Mutex<Writer>,
    queue_max: usize,
    group_max: usize,
    delay: Option<Duration>,
}

impl Pipeline {
    pub(crate) fn new(writer: Writer, queue_max: usize, group_max: usize) -> Self {
        let delay = match writer.durability {
            Durability::Batched { delay } => Some(delay),
            _ => None,
        };
        Pipeline {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                leader: false,
            }),
            space: Condvar::new(),
            writer: Mutex::new(writer),
            queue_max: queue_max.max(1),
            group_max: group_max.max(1),
            delay,
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
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead_now {
            return self.lead(&slot);
        }
        match slot.wait() {
            SlotState::Done(answer) => answer,
            SlotState::Lead => self.lead(&slot),
            SlotState::Waiting => Answer::Append(Err(Error::Closed)),
        }
    }

    /// Commits one group, which holds the leader's own request (it is at
    /// the front of the queue), then passes leadership on.
    fn lead(&self, own: &Arc<Slot>) -> Answer {
        if let Some(delay) = self.delay {
            // Batched durability: give more writers time to join the group.
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline && self.queue.lock().pending.len() < self.group_max {
                std::thread::sleep(Duration::from_micros(50).min(delay));
            }
        }
        let group: Vec<Request> = {
            let mut queue = self.queue.lock();
            let n = queue.pending.len().min(self.group_max);
            let group = queue.pending.drain(..n).collect();
            self.space.notify_all();
            group
        };
        let answers = self.writer.lock().commit_group(&group);
        {
            let mut queue = self.queue.lock();
            match queue.pending.front() {
                Some(next) => next.slot.set(SlotState::Lead),
                None => queue.leader = false,
            }
        }
        let mut own_answer = None;
        for (request, answer) in group.into_iter().zip(answers) {
            if Arc::ptr_eq(&request.slot, own) {
                own_answer = Some(answer);
            } else {
                request.slot.set(SlotState::Done(answer));
            }
        }
        own_answer.unwrap_or(Answer::Append(Err(Error::Index(
            "the leader's request was not in its group".into(),
        ))))
    }

    /// Syncs on close, unless poisoned (the next open recovers from disk).
    pub(crate) fn close(&self) {
        let mut writer = self.writer.lock();
        if !writer.poisoned {
            let _ = writer.log.close_clean();
        }
    }
}
