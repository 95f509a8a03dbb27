//! Queues between processes (being written).
