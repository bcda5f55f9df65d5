//! Changing the refcount width of an open image (`amend refcount_bits`):
//! every refcount is read, a new refcount table and new blocks of the new
//! width are written after the end of the file (describing themselves),
//! the header is switched to them, and the old structures are freed.

use crate::mapping::REFT_OFFSET_MASK;
use crate::node::Qcow2Node;
use crate::refcount::rc_set;
use block_core::engine::refcount_alloc::self_describing_layout;
use block_core::{BlockError, ErrorKind, Result};

impl Qcow2Node {
    /// Rewrites the refcount structures with entries of 2^`order` bits.
    pub(crate) fn change_refcount_order(&self, order: u32) -> Result<()> {
        let mut ws = self.wlock();
        self.writeback(&mut ws, true)?;
        let g = self.geo();
        let cs = g.cs();
        let mut rc = ws.all_refcounts(self)?;
        let new_bits = 1u32 << order;
        let new_max = if order == 6 {
            u64::MAX
        } else {
            (1u64 << new_bits) - 1
        };
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
        let (old_rt, old_rt_clusters) = {
            let m = self.meta_read();
            (
                m.h.refcount_table_offset,
                u64::from(m.h.refcount_table_clusters),
            )
        };
        let mut old: Vec<u64> = (0..old_rt_clusters).map(|i| old_rt / cs + i).collect();
        old.extend(
            ws.reftable
                .iter()
                .map(|x| x & REFT_OFFSET_MASK)
                .filter(|o| *o != 0)
                .map(|o| o / cs),
        );
        for &c in &old {
            if let Some(v) = rc.get_mut(c as usize) {
                *v = 0;
            }
        }
        // Place blocks, then the table, after everything in use.
        let new_e = (cs * 8) >> order;
        let start = (self.file.length()?.div_ceil(cs)).max(rc.len() as u64);
        let (k, t) = self_describing_layout(start, new_e, cs);
        if t * cs > crate::header::MAX_REFTABLE_BYTES {
            return Err(self.ctx(BlockError::new(
                ErrorKind::NoSpace,
                "amend",
                "the new refcount table would exceed its size limit",
            )));
        }
        let total = start + k + t;
        rc.resize(total as usize, 0);
        for c in start..total {
            rc[c as usize] = 1;
        }
        let mut table = vec![0u8; (t * cs) as usize];
        for b in 0..k {
            let mut blk = vec![0u8; cs as usize];
            for i in 0..new_e {
                let c = b * new_e + i;
                if c >= total {
                    break;
                }
                rc_set(&mut blk, i, order, rc[c as usize]);
            }
            let off = (start + b) * cs;
            self.write_meta(off, &blk, 0)?;
            crate::header::put_u64(&mut table, (b * 8) as usize, off);
        }
        let table_off = (start + k) * cs;
        self.write_meta(table_off, &table, 0)?;
        self.file.flush()?;
        {
            let mut m = self.meta_write();
            m.h.refcount_order = order;
            m.h.refcount_table_offset = table_off;
            m.h.refcount_table_clusters = t as u32;
            self.rc.clear();
            ws.reftable = (0..t * cs / 8)
                .map(|i| crate::header::get_u64(&table, (i * 8) as usize))
                .collect();
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
