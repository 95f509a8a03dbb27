//! Named shared memory blocks (placeholder until written).

/// A named block of shared memory, like Python's
/// `multiprocessing.shared_memory.SharedMemory`.
#[derive(Debug)]
pub struct SharedMemory {
    _private: (),
}
