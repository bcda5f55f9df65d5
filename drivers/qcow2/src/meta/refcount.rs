//! qcow2 on the engine's refcount allocator
//! (block_core::engine::refcount_alloc): the image as a
//! [`RefcountStore`], the releases an L2 entry implies, and overlap-checked
//! metadata writes.
//!
//! Everything here runs with the allocation lock held (`&mut WState`).

use crate::layout::header::{MAX_HOST_OFFSET, MAX_REFTABLE_BYTES};
use crate::layout::mapping::{ClusterType, L2E_OFFSET_MASK, REFT_OFFSET_MASK};
use crate::node::{Qcow2Node, WState};
use block_core::engine::refcount_alloc::{AllocState, RefcountGeometry, RefcountStore};
use block_core::engine::table_cache::Table;
use block_core::{BlockError, Result};
use std::sync::Arc;

pub use block_core::engine::refcount_alloc::{refcount_get as rc_get, refcount_set as rc_set};

impl RefcountStore for Qcow2Node {
    fn geometry(&self) -> RefcountGeometry {
        let g = self.geo();
        RefcountGeometry {
            cluster_bits: g.cluster_bits,
            refcount_order: g.refcount_order,
            max_host_offset: MAX_HOST_OFFSET,
            max_reftable_bytes: MAX_REFTABLE_BYTES,
            offset_mask: REFT_OFFSET_MASK,
        }
    }
    fn refblock(&self, offset: u64) -> Result<Arc<Table>> {
        self.rc_table(offset)
    }
    fn new_refblock(&self, offset: u64) -> Arc<Table> {
        self.rc
            .insert(offset, vec![0u8; self.geo().cs() as usize], true)
    }
    fn may_hold_refblock(&self, offset: u64, len: u64) -> bool {
        self.overlap.check(offset, len, 0).is_none()
    }
    fn move_reftable(&self, offset: u64, clusters: u64) -> (u64, u64) {
        let mut m = self.meta_write();
        let old = m.h.reftable_place();
        m.h.refcount_table_offset = offset;
        m.h.refcount_table_clusters = clusters as u32;
        m.header_dirty = true;
        old
    }
    fn structure_changed(&self, state: &AllocState) {
        let m = self.meta_read();
        self.refresh_overlap(&m, state);
    }
    fn cluster_freed(&self, offset: u64) {
        self.l2.remove(offset);
    }
    fn quiesce_before_free(&self) {
        // Requests in flight hold the engine's in-flight lock for reading:
        // taking it for writing waits for them.
        drop(self.in_flight.write().unwrap_or_else(|e| e.into_inner()));
    }
    fn discard(&self, offset: u64, len: u64) {
        let _ = self.file.discard(offset, len);
    }
    fn corruption(&self, offset: u64, msg: &str) -> BlockError {
        Qcow2Node::corruption(self, offset, msg)
    }
    fn context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }
}

impl Qcow2Node {
    /// The refcount of cluster `ci` (0 when no refcount block covers it).
    pub(crate) fn get_refcount(&self, ws: &WState, ci: u64) -> Result<u64> {
        ws.refcount(self, ci)
    }

    /// Adds `delta` to the refcount of cluster `ci`, whose refcount block
    /// must exist for increments. Returns the new value.
    pub(crate) fn change_refcount(&self, ws: &mut WState, ci: u64, delta: i64) -> Result<u64> {
        ws.change(self, ci, delta)
    }

    /// Allocates `n` contiguous clusters with refcount 1; returns the
    /// offset of the first.
    pub(crate) fn alloc_clusters(&self, ws: &mut WState, n: u64) -> Result<u64> {
        ws.alloc_clusters(self, n)
    }

    /// Queues the release of whatever host storage an L2 entry references.
    pub(crate) fn defer_free_entry(&self, ws: &mut WState, entry: u64, punch: bool) {
        match self.geo().cluster_type(entry) {
            ClusterType::Compressed => {
                let (first, n) = self.geo().compressed_clusters(entry);
                ws.defer(first, n, punch);
            }
            ClusterType::Normal | ClusterType::ZeroAlloc => {
                let off = entry & L2E_OFFSET_MASK;
                if self.data_file.is_none() && off != 0 {
                    ws.defer(off, 1, punch);
                }
            }
            _ => {}
        }
    }

    /// Overlap-checked write of a metadata table.
    pub(crate) fn write_meta(&self, off: u64, buf: &[u8], ignore: u32) -> Result<()> {
        self.pre_write_check(off, buf.len() as u64, ignore)?;
        block_core::BlockNodeExt::write_at(&*self.file, off, buf)
    }
}
