//! What a node can do and how requests should be shaped for it: request
//! alignment and transfer sizes (NBD block-size constraints, RBD objects,
//! O_DIRECT) and capability answers (nbdkit's `can_zero`, `can_fua`, ...).

/// Request shape constraints of a node. Zero means "no constraint".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLimits {
    /// Offsets and lengths of requests should be multiples of this (bytes,
    /// a power of two; 1 for byte-granular nodes).
    pub request_alignment: u32,
    /// Largest transfer the node takes in one request (0: unlimited).
    pub max_transfer: u64,
    /// Transfer size the node is fastest with (0: no preference).
    pub optimal_transfer: u64,
    /// Largest discard or zero request (0: unlimited).
    pub max_discard: u64,
}

impl Default for IoLimits {
    fn default() -> Self {
        IoLimits {
            request_alignment: 1,
            max_transfer: 0,
            optimal_transfer: 0,
            max_discard: 0,
        }
    }
}

/// How many requests a node takes at once (nbdkit's thread model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadModel {
    /// Any number of requests from any threads at once.
    #[default]
    Parallel,
    /// One request at a time; the host serialises.
    SerializeRequests,
}

/// What a node can do natively (without the host emulating it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCapabilities {
    /// `write_zeroes` is implemented (not emulated by writing zeros).
    pub can_zero: bool,
    /// Zeroing is fast (metadata only): NBD's FAST_ZERO may be honoured.
    pub can_fast_zero: bool,
    /// `ReqFlags::FUA` is honoured natively (else the host flushes).
    pub can_fua: bool,
    /// `discard` deallocates.
    pub can_discard: bool,
    /// Several connections/handles to the same image see each other's
    /// flushed writes (NBD multi-conn).
    pub multi_conn_safe: bool,
    /// The node's thread model.
    pub thread_model: ThreadModel,
}
