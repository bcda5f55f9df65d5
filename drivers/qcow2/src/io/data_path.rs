//! The data path's helpers behind the engine answers of `format.rs`:
//! L2 lookups and updates (allocating or copying L2 tables), host cluster
//! validation, cluster discards. The engine's `FormatNode` does the I/O.

use crate::layout::mapping::{
    ClusterType, BITMAP_ALL_ZERO, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COPIED, OFLAG_ZERO,
};
use crate::node::cache::Table;
use crate::node::{Lookup, Qcow2Node, WState};
use block_core::engine::ChildRef;
use block_core::Result;
use std::sync::Arc;

/// Bitmask of subclusters `a..=b`.
pub(crate) fn sc_mask(a: u32, b: u32) -> u64 {
    (u64::from(u32::MAX) >> (31 - b.min(31))) & !((1u64 << a) - 1)
}

impl Qcow2Node {
    /// The child data clusters live in.
    pub(crate) fn data_child(&self) -> ChildRef {
        if self.data_file.is_some() {
            ChildRef::DATA_FILE
        } else {
            ChildRef::FILE
        }
    }

    /// Whether the cluster of `lk` has a host cluster this image may write
    /// in place (COPIED, or in an external data file).
    pub(crate) fn owned(&self, lk: &Lookup) -> bool {
        let ct = self.geo().cluster_type(lk.entry);
        matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc)
            && (lk.entry & OFLAG_COPIED != 0 || self.data_file.is_some())
    }

    /// The host cluster offset of a standard entry, validated.
    pub(crate) fn host_cluster(&self, entry: u64, pos: u64) -> Result<u64> {
        let off = entry & L2E_OFFSET_MASK;
        if self.geo().in_cluster(off) != 0 {
            return Err(self.corruption(
                pos,
                &format!("Cluster allocation offset {off:#x} unaligned (guest offset {pos:#x})"),
            ));
        }
        Ok(off)
    }

    /// Stores an L2 entry (and bitmap), allocating or copying the L2 table
    /// first when it is missing or shared.
    pub(crate) fn set_l2_entry(
        &self,
        ws: &mut WState,
        pos: u64,
        entry: u64,
        bitmap: u64,
    ) -> Result<()> {
        let g = self.geo();
        let l2_idx = g.l2_index(pos) as usize;
        let table = self.ensure_l2(ws, pos)?;
        g.set_l2_entry(&mut table.write(), l2_idx, entry, bitmap);
        Ok(())
    }

    /// The writable L2 table mapping `pos`: allocated when missing, copied
    /// when shared (QEMU's `get_cluster_table`). Writes call it before
    /// allocating their data clusters, so that a new L2 table lands before
    /// the data in the file, as with QEMU.
    pub(crate) fn ensure_l2(&self, ws: &mut WState, pos: u64) -> Result<Arc<Table>> {
        let g = self.geo();
        let l1_idx = g.l1_index(pos) as usize;
        let l1e = self.meta_read().l1.get(l1_idx).copied();
        let Some(l1e) = l1e else {
            return Err(self.corruption(pos, "L1 table too small for the guest offset"));
        };
        let l2_off = l1e & L1E_OFFSET_MASK;
        let table = if l2_off == 0 || l1e & OFLAG_COPIED == 0 {
            let data = if l2_off == 0 {
                vec![0u8; g.cs() as usize]
            } else {
                self.l2_table(l2_off)?.read().clone()
            };
            let new_off = self.alloc_clusters(ws, 1)?;
            let t = self.l2.insert(new_off, data, true);
            {
                let mut m = self.meta_write();
                m.l1[l1_idx] = new_off | OFLAG_COPIED;
                m.l1_dirty = true;
                self.refresh_overlap(&m, ws);
            }
            if l2_off != 0 {
                ws.defer(l2_off, 1, false);
            }
            t
        } else {
            self.l2_table(l2_off)?
        };
        Ok(table)
    }

    pub(crate) fn lookup_now(&self, pos: u64) -> Result<Lookup> {
        let m = self.meta_read();
        self.lookup(&m, pos)
    }

    /// Discards the cluster at `pos` (QEMU's `discard_in_l2_slice` without
    /// `full_discard`): an allocated cluster, or any cluster over a backing
    /// file, becomes a zero cluster (unallocated in version 2) and its host
    /// cluster is freed.
    pub(crate) fn discard_cluster(&self, pos: u64) -> Result<()> {
        let g = self.geo();
        let has_backing = self.backing().is_some();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(pos)?;
        let ct = g.cluster_type(lk.entry);
        let allocated = matches!(
            ct,
            ClusterType::Normal | ClusterType::ZeroAlloc | ClusterType::Compressed
        );
        if allocated || has_backing {
            let (entry, bitmap) = if g.version < 3 {
                (0, 0)
            } else if g.extended_l2 {
                (0, BITMAP_ALL_ZERO)
            } else {
                (OFLAG_ZERO, 0)
            };
            if (entry, bitmap) != (lk.entry, lk.bitmap) {
                self.set_l2_entry(&mut ws, pos, entry, bitmap)?;
                self.defer_free_entry(&mut ws, lk.entry, true);
            }
        }
        Ok(())
    }
}
