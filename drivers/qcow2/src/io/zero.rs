//! Zeroing in metadata, as QEMU's `qcow2_co_pwrite_zeroes` does it; the
//! engine splits the request at the subcluster size, widens partial pieces
//! over zeros and writes zero buffers where this answers "cannot".
//!
//! * Whole clusters get the zero flag (all zero bits); an allocated
//!   cluster is unmapped only with `MAY_UNMAP`, a compressed one always. A
//!   shared (non-COPIED) cluster keeps its reference, as in QEMU.
//! * Partial clusters get zero bits for their subclusters; compressed
//!   clusters cannot be partially zeroed.
//! * Version 2 has no zero flag: without a backing file zeroing discards,
//!   with one it cannot be expressed. Neither can zeros with a raw
//!   external data file (its content is the guest's).

use crate::io::data_path::sc_mask;
use crate::layout::mapping::{ClusterType, BITMAP_ALL_ZERO, OFLAG_ZERO};
use crate::node::Qcow2Node;
use block_core::Result;

impl Qcow2Node {
    /// Makes `[pos, end)` read as zeros: subcluster-aligned (or ending at
    /// the image end) and inside one cluster. `Ok(false)`: not expressible.
    pub(crate) fn make_zero_range(&self, pos: u64, end: u64, unmap: bool) -> Result<bool> {
        let g = self.geo();
        let (size, raw) = {
            let m = self.meta_read();
            (m.h.size, m.h.data_file_raw())
        };
        if raw {
            return Ok(false);
        }
        let cstart = g.cluster_start(pos);
        if g.version < 3 {
            if self.backing().is_some() {
                return Ok(false);
            }
            // Without a backing file a discarded cluster reads as zeros.
            self.discard_cluster(cstart)?;
            return Ok(true);
        }
        if pos == cstart && (end == cstart + g.cs() || end == size) {
            self.zero_cluster(cstart, unmap)?;
            return Ok(true);
        }
        let scs = g.sc_size();
        let a = (g.in_cluster(pos) / scs) as u32;
        let b = (g.in_cluster(end - 1) / scs) as u32;
        self.zero_subclusters(cstart, a, b)
    }

    /// QEMU's `zero_in_l2_slice` for one cluster.
    fn zero_cluster(&self, cstart: u64, unmap: bool) -> Result<()> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(cstart)?;
        let ct = g.cluster_type(lk.entry);
        let allocated = matches!(
            ct,
            ClusterType::Normal | ClusterType::ZeroAlloc | ClusterType::Compressed
        );
        let free = ct == ClusterType::Compressed || (unmap && allocated);
        let mut entry = if free { 0 } else { lk.entry };
        let bitmap = if g.extended_l2 {
            BITMAP_ALL_ZERO
        } else {
            entry |= OFLAG_ZERO;
            0
        };
        if (entry, bitmap) == (lk.entry, lk.bitmap) {
            return Ok(());
        }
        self.set_l2_entry(&mut ws, cstart, entry, bitmap)?;
        if free {
            self.defer_free_entry(&mut ws, lk.entry, true);
        }
        Ok(())
    }

    /// QEMU's `zero_l2_subclusters`: subclusters `a..=b` (not all of the
    /// cluster) get their zero bits; compressed clusters cannot.
    fn zero_subclusters(&self, cstart: u64, a: u32, b: u32) -> Result<bool> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(cstart)?;
        match g.cluster_type(lk.entry) {
            ClusterType::Normal | ClusterType::Unallocated => {}
            _ => return Ok(false),
        }
        let mask = sc_mask(a, b);
        let bitmap = (lk.bitmap | (mask << 32)) & !mask;
        if bitmap != lk.bitmap {
            self.set_l2_entry(&mut ws, cstart, lk.entry, bitmap)?;
        }
        Ok(true)
    }
}
