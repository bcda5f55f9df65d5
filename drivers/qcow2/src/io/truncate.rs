//! Resizing: growing (L1 growth, zeroing stale tails, preallocation) and
//! shrinking (freeing clusters and L2 tables past the new end).

use crate::layout::header::MAX_L1_BYTES;
use crate::layout::mapping::{ClusterType, BITMAP_ALL_ALLOC, L1E_OFFSET_MASK, OFLAG_COPIED};
use crate::node::{Qcow2Node, WState};
use block_core::engine::{read_backing, zero_grown_area};
use block_core::{BlockError, Preallocation, Result};
use std::io::IoSliceMut;

impl Qcow2Node {
    /// Changes the virtual size. Its callers (the engine node, amend,
    /// create) have passed the write gate.
    pub(crate) fn truncate_impl(&self, new_size: u64, prealloc: Preallocation) -> Result<()> {
        if new_size % 512 != 0 {
            return Err(self.ctx(BlockError::invalid(
                "resize",
                "The new size must be a multiple of 512",
            )));
        }
        let (old, nb_snap, version) = {
            let m = self.meta_read();
            (m.h.size, m.h.nb_snapshots, m.h.version)
        };
        if nb_snap > 0 && version < 3 {
            return Err(self.ctx(BlockError::new(
                block_core::ErrorKind::Unsupported,
                "resize",
                "Can't resize a v2 image which has snapshots",
            )));
        }
        if new_size == old {
            return Ok(());
        }
        self.bitmaps_resize_check()?;
        self.resize_precheck(new_size, prealloc)?;
        self.bitmaps_before_change()?;
        if self.meta_read().h.lazy_refcounts() {
            self.mark_dirty()?;
        }
        let r = crate::bitmap::state::without_marks(|| {
            if new_size > old {
                self.grow(old, new_size, prealloc)
            } else {
                // `resize_precheck` refused preallocation with a shrink.
                self.shrink(new_size)
            }
        });
        if r.is_ok() {
            self.bitmaps_resized(new_size);
        }
        r
    }

    /// What can be known to fail a resize to `new_size`, checked before
    /// anything changes: preallocation with a shrink, a size the L1 table
    /// cannot map (QEMU's words: its L1 growth fails with EFBIG).
    pub(crate) fn resize_precheck(&self, new_size: u64, prealloc: Preallocation) -> Result<()> {
        let old = self.meta_read().h.size;
        if new_size < old && prealloc != Preallocation::Off {
            return Err(self.ctx(BlockError::invalid(
                "resize",
                "Preallocation can't be used for shrinking an image",
            )));
        }
        let l1_entries = self.meta_read().h.l1_entries_for(new_size);
        if new_size > old && l1_entries.saturating_mul(8) > MAX_L1_BYTES {
            return Err(self.ctx(BlockError::new(
                block_core::ErrorKind::OutOfRange,
                "resize",
                "Failed to grow the L1 table: File too large",
            )));
        }
        Ok(())
    }

    fn grow(&self, old: u64, new_size: u64, prealloc: Preallocation) -> Result<()> {
        {
            let mut ws = self.wlock();
            let need = self.meta_read().h.l1_entries_for(new_size);
            if need > self.meta_read().l1.len() as u64 {
                self.grow_l1(&mut ws, need)?;
            }
            let mut m = self.meta_write();
            m.h.size = new_size;
            m.header_dirty = true;
        }
        // Stale data past the old end (after an earlier shrink) and a
        // longer backing file must not show through the new area: the
        // engine zeroes it through the data path (guest I/O is quiesced).
        zero_grown_area(self, old, new_size)?;
        if prealloc != Preallocation::Off {
            self.preallocate(old, new_size, prealloc)?;
        }
        // QEMU resizes an external data file with its image, raw or not
        // (growing never shortens it).
        if let Some(d) = &self.data_file {
            if d.length()? < new_size {
                d.truncate(new_size, Preallocation::Off)?;
            }
        }
        let mut ws = self.wlock();
        self.writeback(&mut ws, false)
    }

    /// Allocates clusters for `[start, end)` (metadata preallocation) and
    /// makes the file child long enough for them.
    pub(crate) fn preallocate(&self, start: u64, end: u64, mode: Preallocation) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        let mut ws = self.wlock();
        let mut file_end = 0u64;
        let flen = self.data_node().length()?;
        for pos in (start / cs * cs..end).step_by(cs as usize) {
            let lk = self.lookup_now(pos)?;
            let ct = g.cluster_type(lk.entry);
            if ct == ClusterType::Unallocated || ct == ClusterType::ZeroPlain {
                let host = if self.data_file.is_some() {
                    pos
                } else {
                    self.alloc_clusters(&mut ws, 1)?
                };
                let bitmap = if g.extended_l2 { BITMAP_ALL_ALLOC } else { 0 };
                if ct == ClusterType::Unallocated && self.backing().is_some() && !g.extended_l2 {
                    // Keep the backing data visible: copy it in.
                    let mut buf = vec![0u8; cs as usize];
                    let b = self.backing();
                    read_backing(b.as_deref(), pos, &mut [IoSliceMut::new(&mut buf)])?;
                    self.write_data(host, &buf)?;
                } else if host < flen && self.data_file.is_none() {
                    // A reused cluster may hold stale bytes.
                    self.write_data(host, &vec![0u8; cs as usize])?;
                }
                self.set_l2_entry(&mut ws, pos, host | OFLAG_COPIED, bitmap)?;
                file_end = file_end.max(host + cs);
            }
        }
        self.writeback(&mut ws, false)?;
        let node = self.data_node();
        if node.length()? < file_end {
            let fmode = match mode {
                Preallocation::Metadata => Preallocation::Off,
                m => m,
            };
            node.truncate(file_end, fmode)?;
        }
        Ok(())
    }

    fn shrink(&self, new_size: u64) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        let mut ws = self.wlock();
        let old = self.meta_read().h.size;
        for pos in (new_size.div_ceil(cs) * cs..old).step_by(cs as usize) {
            let lk = self.lookup_now(pos)?;
            if lk.entry != 0 || lk.bitmap != 0 {
                self.set_l2_entry(&mut ws, pos, 0, 0)?;
                self.defer_free_entry(&mut ws, lk.entry, true);
            }
        }
        let need = self.meta_read().h.l1_entries_for(new_size) as usize;
        {
            let mut m = self.meta_write();
            for i in need..m.l1.len() {
                let l2 = m.l1[i] & L1E_OFFSET_MASK;
                if l2 != 0 {
                    m.l1[i] = 0;
                    m.l1_dirty = true;
                    ws.defer(l2, 1, true);
                }
            }
            m.h.size = new_size;
            m.header_dirty = true;
            self.refresh_overlap(&m, &ws);
        }
        self.writeback(&mut ws, false)?;
        self.shrink_reftable(&mut ws)?;
        // QEMU truncates the file after the last used cluster even with
        // lazy refcounts in effect (the in-memory refcounts are exact; the
        // L1/L2 tables written above no longer reference the tail).
        self.trim_file_tail(&mut ws)?;
        if let Some(d) = &self.data_file {
            d.truncate(new_size, Preallocation::Off)?;
        }
        Ok(())
    }

    /// Drops the refcount blocks that count no cluster but (maybe)
    /// themselves, as QEMU's `qcow2_shrink_reftable` after a shrink: the
    /// refcount table entries are cleared on disk first, then the blocks'
    /// clusters are freed (the engine's `drop_unused_refblocks`).
    fn shrink_reftable(&self, ws: &mut WState) -> Result<()> {
        ws.drop_unused_refblocks(self, |ws, blocks| {
            blocks.iter().for_each(|&b| self.rc.remove(b));
            self.writeback(ws, false)
        })
        .map(drop)
    }
}
