//! `Listener` and `Client` (being written).
