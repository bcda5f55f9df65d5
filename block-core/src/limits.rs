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

fn min_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

impl IoLimits {
    /// The limits a node needs to satisfy both `self` and `other` (two
    /// children that one request may reach): the larger alignment and
    /// optimal size, the smaller nonzero maximums.
    pub fn merge(self, other: IoLimits) -> IoLimits {
        IoLimits {
            request_alignment: self.request_alignment.max(other.request_alignment),
            max_transfer: min_nonzero(self.max_transfer, other.max_transfer),
            optimal_transfer: self.optimal_transfer.max(other.optimal_transfer),
            max_discard: min_nonzero(self.max_discard, other.max_discard),
        }
    }

    /// The limits of an image format over its data children (merged with
    /// [`IoLimits::merge`]) with allocation unit `unit` (a cluster), for
    /// any format: guest bytes map to child bytes at the same offset within
    /// a unit, so the children's alignment holds for guest requests too
    /// (for units at least that large); contiguous runs become one child
    /// request, so the children's maximum transfer holds; the format is
    /// fastest with whole units; discarding and zeroing are metadata
    /// operations, unlimited in size.
    pub fn for_format(children: IoLimits, unit: u64) -> IoLimits {
        IoLimits {
            request_alignment: children.request_alignment.max(1),
            max_transfer: children.max_transfer,
            optimal_transfer: children.optimal_transfer.max(unit),
            max_discard: 0,
        }
    }
}

impl NodeCapabilities {
    /// The capabilities of an image format node driven by the engine's
    /// generic node (or any node that, like it, zeroes and discards in
    /// metadata, fails a `NO_FALLBACK` zero fast instead of writing zeros,
    /// and flushes after a FUA request itself); nothing while read-only.
    /// Two nodes of the same image cache metadata apart, so the format is
    /// not multi-conn safe whatever its children are.
    pub fn for_format(writable: bool) -> NodeCapabilities {
        NodeCapabilities {
            can_zero: writable,
            can_fast_zero: writable,
            can_fua: writable,
            can_discard: writable,
            multi_conn_safe: false,
            thread_model: ThreadModel::Parallel,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_and_format_limits() {
        let a = IoLimits {
            request_alignment: 512,
            max_transfer: 1 << 20,
            optimal_transfer: 4096,
            max_discard: 0,
        };
        let b = IoLimits {
            request_alignment: 4096,
            max_transfer: 0,
            optimal_transfer: 0,
            max_discard: 1 << 30,
        };
        let m = a.merge(b);
        assert_eq!(
            m,
            IoLimits {
                request_alignment: 4096,
                max_transfer: 1 << 20,
                optimal_transfer: 4096,
                max_discard: 1 << 30,
            }
        );
        let f = IoLimits::for_format(m, 65536);
        assert_eq!(f.request_alignment, 4096);
        assert_eq!(f.max_transfer, 1 << 20);
        assert_eq!(f.optimal_transfer, 65536);
        assert_eq!(f.max_discard, 0);
        let ro = NodeCapabilities::for_format(false);
        assert!(!ro.can_zero && !ro.can_discard && !ro.can_fua);
        assert!(NodeCapabilities::for_format(true).can_fast_zero);
    }
}
