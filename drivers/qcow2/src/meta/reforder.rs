//! Changing the refcount width of an open image (`amend refcount_bits`):
//! every refcount is read, a new refcount table and new blocks of the new
//! width are written after the end of the file (describing themselves),
//! the header is switched to them, and the old structures are freed.
//! The new structure is the engine's `write_refcount_structure`.

use crate::node::Qcow2Node;
use block_core::engine::codec::Endian;
use block_core::engine::rebuild::{write_refcount_structure, RebuildGeometry};
use block_core::engine::refcount_alloc::{RefcountGeometry, RefcountStore};
use block_core::{BlockError, Result};

impl Qcow2Node {
    /// Rewrites the refcount structures with entries of 2^`order` bits.
    pub(crate) fn change_refcount_order(&self, order: u32) -> Result<()> {
        let mut ws = self.wlock();
        self.writeback(&mut ws, true)?;
        let g = self.geo();
        let cs = g.cs();
        let mut rc = ws.all_refcounts(self)?;
        let new_bits = 1u32 << order;
        let new_geo = RefcountGeometry {
            refcount_order: order,
            ..self.geometry()
        };
        let new_max = new_geo.max_refcount();
        if let Some((c, v)) = rc.iter().enumerate().find(|(_, v)| **v > new_max) {
            return Err(self.ctx(BlockError::invalid(
                "amend",
                format!(
                    "Cannot decrease refcount entry width to {new_bits} bits: Cluster at offset {:#x} has a refcount of {v}",
                    c as u64 * cs
                ),
            )));
        }
        // The old structures are dropped.
        let (old_rt, old_rt_clusters) = self.meta_read().h.reftable_place();
        let old = ws.structure_clusters(&self.geometry(), old_rt, old_rt_clusters);
        for &c in &old {
            if let Some(v) = rc.get_mut(c as usize) {
                *v = 0;
            }
        }
        // Place blocks, then the table, after everything in use.
        let start = (self.file.length()?.div_ceil(cs)).max(rc.len() as u64);
        let rg = RebuildGeometry {
            refcount_order: order,
            max_reftable_bytes: crate::layout::header::MAX_REFTABLE_BYTES,
            endian: Endian::Big,
        };
        let new = write_refcount_structure(
            "amend",
            &mut rc,
            start,
            g.cluster_bits,
            rg,
            &mut |off, buf| self.write_meta(off, buf, 0),
        )
        .map_err(|e| self.ctx(e))?;
        self.file.flush()?;
        {
            let mut m = self.meta_write();
            m.h.refcount_order = order;
            m.h.refcount_table_offset = new.table_offset;
            m.h.refcount_table_clusters = new.table_clusters as u32;
            self.rc.clear();
            ws.reftable = new.reftable;
            ws.reftable_dirty = false;
            ws.free_hint = 0;
            ws.free_byte_offset = 0;
            let mut ng = g;
            ng.refcount_order = order;
            self.set_geo(ng);
            self.write_header_locked(&mut m)?;
            self.refresh_overlap(&m, &ws);
        }
        self.file.flush()?;
        for c in old {
            let _ = self.file.discard(c * cs, cs);
        }
        Ok(())
    }
}
