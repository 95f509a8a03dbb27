//! The queue and the joinable queue (Python's `manager.Queue()` and
//! `manager.JoinableQueue()`).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use super::{Answer, Item, deadline};
use crate::error::{Error, RemoteErrorKind as K, Result};
use crate::manager::protocol::{Bytes, dec_args, remote};
use crate::manager::server::Cx;

/// An operation on a queue. `block: false` never waits; `timeout: None`
/// waits as long as it takes.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum QueueOp<'a> {
    /// Puts an item (item 0 of the call), waiting while the queue is full
    /// (a `Full` error when it gives up). Answer: unit.
    Put {
        /// Whether to wait at all.
        block: bool,
        /// The longest wait.
        timeout: Option<Duration>,
        /// The encoded item.
        #[serde(borrow)]
        item: Bytes<'a>,
    },
    /// Takes the next item, waiting for one (an `Empty` error when it
    /// gives up). Answer: the item (taken out).
    Get {
        /// Whether to wait at all.
        block: bool,
        /// The longest wait.
        timeout: Option<Duration>,
    },
    /// Answer: the number of items.
    Qsize,
    /// Answer: whether it has none.
    Empty,
    /// Answer: whether it is at its maximum size.
    Full,
    /// Marks one item taken earlier as done (joinable queues; a `Value`
    /// error if none is pending). Answer: unit.
    TaskDone,
    /// Waits until every item put was marked done (joinable queues;
    /// [`Error::Timeout`] past the timeout). Answer: unit.
    Join(Option<Duration>),
}

struct State {
    items: VecDeque<Item>,
    unfinished: u64,
}

/// A FIFO queue; a joinable one counts unfinished tasks.
pub(crate) struct Queue {
    state: Mutex<State>,
    maxsize: usize,
    joinable: bool,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

impl Queue {
    /// From an encoded maximum size (`u64`, 0: unbounded).
    pub(crate) fn make(init: &[u8], joinable: bool) -> Result<Queue> {
        let maxsize: u64 = dec_args(init)?;
        Ok(Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                unfinished: 0,
            }),
            maxsize: usize::try_from(maxsize).unwrap_or(usize::MAX),
            joinable,
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        })
    }

    fn full(&self, s: &State) -> bool {
        self.maxsize > 0 && s.items.len() >= self.maxsize
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: QueueOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut s = self.state.lock();
        Ok(match op {
            QueueOp::Put {
                block,
                timeout,
                item,
            } => {
                let d = deadline(block, timeout);
                while self.full(&s) {
                    if !cx.wait(&self.not_full, &mut s, d)? {
                        return Err(remote(K::Full, "the queue is full"));
                    }
                }
                s.items.push_back(Item::new(item.0, cx.held(0)));
                s.unfinished += 1;
                self.not_empty.notify_one();
                Answer::Unit
            }
            QueueOp::Get { block, timeout } => {
                let d = deadline(block, timeout);
                loop {
                    if let Some(item) = s.items.pop_front() {
                        self.not_full.notify_one();
                        return Ok(Answer::Item(item.take(cx)));
                    }
                    if !cx.wait(&self.not_empty, &mut s, d)? {
                        return Err(remote(K::Empty, "the queue is empty"));
                    }
                }
            }
            QueueOp::Qsize => Answer::Count(s.items.len() as u64),
            QueueOp::Empty => Answer::Bool(s.items.is_empty()),
            QueueOp::Full => Answer::Bool(self.full(&s)),
            QueueOp::TaskDone | QueueOp::Join(_) if !self.joinable => {
                return Err(remote(
                    K::UnknownMethod,
                    "task_done and join need a joinable queue",
                ));
            }
            QueueOp::TaskDone => {
                if s.unfinished == 0 {
                    return Err(remote(K::Value, "task_done() called too many times"));
                }
                s.unfinished -= 1;
                if s.unfinished == 0 {
                    self.all_done.notify_all();
                }
                Answer::Unit
            }
            QueueOp::Join(timeout) => {
                let d = deadline(true, timeout);
                while s.unfinished > 0 {
                    if !cx.wait(&self.all_done, &mut s, d)? {
                        return Err(Error::Timeout);
                    }
                }
                Answer::Unit
            }
        })
    }
}
