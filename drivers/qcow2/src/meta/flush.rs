//! Metadata writeback in dependency order, dirty bit handling.
//!
//! Order on every writeback:
//! 1. refcount blocks (increments before the metadata that uses them),
//!    flush, the refcount table (a moved one: flush, then the header's
//!    refcount table fields), then flush the file child (and the data
//!    file: guest data before the L2 entries that point at it);
//! 2. L2 tables, flush;
//! 3. L1 table, flush;
//! 4. header, flush;
//! 5. deferred decrements (references dropped in steps 2-4), then the
//!    refcount blocks again, flush.
//!
//! With lazy refcounts and the dirty bit set, refcount blocks are only
//! written by a full writeback (close, inactivate, check) and before the
//! refcount table changes (a block it names must be on disk).

use crate::layout::features;
use crate::layout::overlap::kind;
use crate::node::{Qcow2Node, WState};
use block_core::engine::codec::{u64_table_bytes, Endian};
use block_core::engine::writeback::write_dirty;
use block_core::{BlockNodeExt, Result};
use std::sync::atomic::Ordering;

impl Qcow2Node {
    fn write_refblocks(&self) -> Result<()> {
        write_dirty(&self.rc, |off, d| self.write_meta(off, d, kind::REFBLOCK)).map(drop)
    }

    /// Writes the refcount table where the in-memory header puts it. A
    /// table that moved (grew) is written completely first; then, after a
    /// flush, only the header's refcount table fields are switched to it
    /// (other pending header changes wait for their own step). The old
    /// table is freed by a deferred decrement after the full header write.
    fn write_reftable(&self, ws: &mut WState) -> Result<()> {
        let (off, clusters) = self.meta_read().h.reftable_place();
        self.write_meta(
            off,
            &u64_table_bytes(&ws.reftable, Endian::Big),
            kind::REFTABLE,
        )?;
        let mut on_disk = [0u8; 12];
        self.file.read_at(48, &mut on_disk)?;
        let named = [&off.to_be_bytes()[..], &(clusters as u32).to_be_bytes()].concat();
        if on_disk[..] != named[..] {
            self.file.flush()?;
            self.write_meta(48, &named, kind::HEADER)?;
            self.file.flush()?;
        }
        ws.reftable_dirty = false;
        Ok(())
    }

    /// Writes every dirty table in dependency order. `full` also writes
    /// refcount blocks when lazy refcounts defer them.
    pub(crate) fn writeback(&self, ws: &mut WState, full: bool) -> Result<()> {
        let lazy = !full && self.dirty_set.load(Ordering::Acquire);
        let (l1_dirty, header_dirty) = {
            let m = self.meta_read();
            (m.l1_dirty, m.header_dirty)
        };
        let nothing = self.l2.dirty_count() == 0
            && !l1_dirty
            && !header_dirty
            && !ws.reftable_dirty
            && ws.deferred.is_empty()
            && (lazy || self.rc.dirty_count() == 0);
        if nothing {
            return Ok(());
        }
        // With lazy refcounts too when the table changes: a block the
        // table names must be on disk (else it may lie past the end of the
        // file or hold old bytes, and the repair refuses the structure).
        if !lazy || ws.reftable_dirty {
            self.write_refblocks()?;
        }
        if ws.reftable_dirty {
            // The refcount table is refcount metadata too: a new block must
            // be named by the table on disk before an L2 table references a
            // cluster it counts (written with the L1 table, a kill between
            // the L2 and the table writes left those clusters at refcount
            // 0, qemu-img check: corruptions).
            self.file.flush()?;
            self.write_reftable(ws)?;
        }
        if let Some(d) = &self.data_file {
            d.flush()?;
        }
        self.file.flush()?;
        write_dirty(&self.l2, |off, d| self.write_meta(off, d, kind::ACTIVE_L2))?;
        self.file.flush()?;
        {
            let mut m = self.meta_write();
            if m.l1_dirty {
                let buf = u64_table_bytes(&m.l1, Endian::Big);
                self.write_meta(m.h.l1_table_offset, &buf, kind::ACTIVE_L1)?;
                m.l1_dirty = false;
            }
            if m.header_dirty {
                self.file.flush()?;
                self.write_header_locked(&mut m)?;
            }
        }
        self.file.flush()?;
        if !ws.deferred.is_empty() {
            ws.apply_deferred(self)?;
            if !lazy {
                self.write_refblocks()?;
                self.file.flush()?;
            }
        }
        Ok(())
    }

    /// Serializes and writes cluster 0 from `m.h` (keeping the dirty bit
    /// as set on disk by this node).
    pub(crate) fn write_header_locked(&self, m: &mut crate::node::Meta) -> Result<()> {
        let mut h = m.h.clone();
        if self.dirty_set.load(Ordering::Acquire) {
            h.incompatible_features |= features::INCOMPAT_DIRTY;
        } else {
            h.incompatible_features &= !features::INCOMPAT_DIRTY;
        }
        let buf = h.serialize().map_err(|e| self.ctx(e))?;
        m.h.backing_file_offset = h.backing_file_offset;
        m.h.backing_file_size = h.backing_file_size;
        m.h.header_length = h.header_length;
        // Write the used part of cluster 0 only (the rest is zero).
        let used = buf.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let len = used.div_ceil(512).max(1) * 512;
        let len = len.min(buf.len());
        self.write_meta(0, &buf[..len], kind::HEADER)?;
        m.header_dirty = false;
        Ok(())
    }

    /// Sets the dirty bit before the first write of a lazy-refcounts image.
    pub(crate) fn mark_dirty(&self) -> Result<()> {
        if self.dirty_set.load(Ordering::Acquire) {
            return Ok(());
        }
        let _ws = self.wlock();
        if self.dirty_set.load(Ordering::Acquire) {
            return Ok(());
        }
        let bits = self.meta_read().h.incompatible_features | features::INCOMPAT_DIRTY;
        self.file.flush()?;
        self.write_incompat(bits)?;
        self.meta_write().h.incompatible_features = bits;
        self.dirty_set.store(true, Ordering::Release);
        Ok(())
    }

    /// Full writeback, then clears the dirty bit.
    pub(crate) fn mark_clean(&self, ws: &mut WState) -> Result<()> {
        self.writeback(ws, true)?;
        self.file.flush()?;
        if self.dirty_set.load(Ordering::Acquire) || self.meta_read().h.is_dirty() {
            let bits = self.meta_read().h.incompatible_features & !features::INCOMPAT_DIRTY;
            self.write_incompat(bits)?;
            self.meta_write().h.incompatible_features = bits;
            self.dirty_set.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Writes caches back when they hold too many dirty tables.
    pub(crate) fn maybe_writeback(&self, ws: &mut WState) -> Result<()> {
        if self.l2.needs_writeback() || self.rc.needs_writeback() || ws.deferred.len() > 4096 {
            self.writeback(ws, false)?;
        }
        Ok(())
    }
}
