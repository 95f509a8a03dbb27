//! Pipes and connections between processes (being written).
