//! Rebuilding the refcount structure (`qemu-img check -r all`) with the
//! engine's rebuild (block_core::engine::rebuild): the clusters of the
//! old structure to avoid, and the commit point in the header.
//!
//! Crash-safe order (docs/qcow2.md, "Rebuilding the refcount structure"):
//! the new refcount blocks and table go only into clusters that nothing
//! references and the old structure does not use, so the old structure
//! stays intact; they are written and flushed, then the header's refcount
//! table fields switch to the new table and are flushed. Until that write
//! the image is the old one; after it, the old table and blocks are leaks
//! that the leak-repair pass that follows frees.

use crate::layout::header::MAX_REFTABLE_BYTES;
use crate::layout::overlap::kind;
use crate::node::{Qcow2Node, WState};
use block_core::engine::check::ComputedRefcounts as Refs;
use block_core::engine::codec::Endian;
use block_core::engine::rebuild::{rebuild_refcount_structure, RebuildGeometry};
use block_core::engine::refcount_alloc::RefcountStore;
use block_core::{BlockError, Result};

impl Qcow2Node {
    /// Builds a new refcount structure from `refs` (which then counts it
    /// too), writes it and switches the header to it. The old structure is
    /// left as leaks.
    pub(crate) fn rebuild_refcount_structure(
        &self,
        ws: &mut WState,
        refs: &mut Refs,
    ) -> Result<()> {
        let cs = self.geo().cs();
        // Drop the cached blocks of the old structure (written back
        // before the check began).
        self.rc.clear();
        // The old structure's clusters are never written, so that it
        // stays intact until the header switches, even where it names a
        // cluster the references do not count (an entry with reserved
        // bits, unaligned, or past the end of the file). QEMU's overlap
        // check fails the rebuild there; avoiding them never changes a
        // layout QEMU produces.
        let (rt_off, rt_clusters) = self.meta_read().h.reftable_place();
        let avoid = ws.structure_clusters(&self.geometry(), rt_off, rt_clusters);
        let g = RebuildGeometry {
            refcount_order: self.geo().refcount_order,
            max_reftable_bytes: MAX_REFTABLE_BYTES,
            endian: Endian::Big,
        };
        let new = rebuild_refcount_structure(refs, g, &avoid, &mut |off, buf| {
            self.write_meta(off, buf, kind::REFBLOCK | kind::REFTABLE)
        })?;
        let (rt_off, rt_clusters) = (new.table_offset, new.table_clusters);
        self.file.flush()?;
        // The commit point: the header names the new table.
        let hdr = [
            &rt_off.to_be_bytes()[..],
            &(rt_clusters as u32).to_be_bytes(),
        ]
        .concat();
        self.write_meta(48, &hdr, kind::HEADER)
            .map_err(|e| BlockError::io("check", format!("ERROR setting reftable: {e}")))?;
        self.file.flush()?;
        {
            let mut m = self.meta_write();
            m.h.refcount_table_offset = rt_off;
            m.h.refcount_table_clusters = rt_clusters as u32;
            ws.reftable = new.reftable;
            ws.reftable.resize((rt_clusters * cs / 8) as usize, 0);
            ws.reftable_dirty = false;
            ws.free_hint = 0;
            self.rc.clear();
            self.refresh_overlap(&m, ws);
        }
        log::info!(
            "qcow2: rebuilt the refcount structure: table at {rt_off:#x} ({rt_clusters} clusters)"
        );
        Ok(())
    }
}
