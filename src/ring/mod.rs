//! The byte ring: the one building block under the queue, the pool's task
//! and result queues and the pipe's shared-memory stream.
#[cfg(feature = "serde")]
pub(crate) mod records;
