//! Internal snapshot operations: create, apply (goto), delete, and the
//! refcount walks they need; plus L1 growth.

use crate::layout::mapping::{ClusterType, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COPIED};
use crate::layout::snapshot::{self, Snapshot};
use crate::node::{Meta, Qcow2Node, WState};
use crate::ops::copied::Walk;
use block_core::engine::codec::{u64_table_bytes, Endian};
use block_core::{BlockError, ErrorKind, Result};
use std::time::UNIX_EPOCH;

impl Qcow2Node {
    /// Reads the L1 table of `entries` entries at `offset` (a snapshot's).
    pub(crate) fn read_l1_table(&self, offset: u64, entries: u32) -> Result<Vec<u64>> {
        crate::io::snapview::read_l1_table(&*self.file, "snapshot", offset, entries)
    }

    /// Adds `delta` to the refcount of every cluster reachable from `l1`
    /// (L2 tables and data). With a positive delta, COPIED flags in the
    /// L2 tables are cleared (the clusters become shared).
    pub(crate) fn update_tree(&self, ws: &mut WState, l1: &[u64], delta: i64) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        for &l1e in l1 {
            let l2 = l1e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let table = self.l2_table(l2)?;
            let d = table.read().clone();
            let mut cleared = false;
            for i in 0..g.l2_entries() as usize {
                let (e, _) = g.l2_entry(&d, i);
                match g.cluster_type(e) {
                    ClusterType::Normal | ClusterType::ZeroAlloc => {
                        let off = e & L2E_OFFSET_MASK;
                        if off != 0 && self.data_file.is_none() {
                            self.change_refcount(ws, off / cs, delta)?;
                        }
                        if delta > 0 && e & OFLAG_COPIED != 0 {
                            cleared = true;
                        }
                    }
                    ClusterType::Compressed => {
                        let (first, n) = g.compressed_clusters(e);
                        for c in 0..n {
                            self.change_refcount(ws, first / cs + c, delta)?;
                        }
                    }
                    _ => {}
                }
            }
            if cleared {
                let mut w = table.write();
                for i in 0..g.l2_entries() as usize {
                    let (e, bitmap) = g.l2_entry(&w, i);
                    g.set_l2_entry(&mut w, i, e & !OFLAG_COPIED, bitmap);
                }
            }
            self.change_refcount(ws, l2 / cs, delta)?;
        }
        Ok(())
    }

    /// Sets the COPIED flags of the active state from the refcounts.
    pub(crate) fn rebuild_copied(&self, ws: &mut WState) -> Result<()> {
        self.walk_copied(ws, Walk::Strict, |_| true).map(drop)
    }

    /// Grows the active L1 table to `entries`, moving it to new clusters
    /// (nothing to do when it has as many).
    pub(crate) fn grow_l1(&self, ws: &mut WState, entries: u64) -> Result<()> {
        if entries * 8 > crate::layout::header::MAX_L1_BYTES {
            let msg = "Active L1 table would exceed its size limit";
            return Err(self.ctx(BlockError::new(ErrorKind::OutOfRange, "resize", msg)));
        }
        self.writeback(ws, true)?;
        let mut new = self.meta_read().l1.clone();
        if entries <= new.len() as u64 {
            return Ok(());
        }
        new.resize(entries as usize, 0);
        let buf = u64_table_bytes(&new, Endian::Big);
        self.relocate_table(ws, &buf, |m, off| {
            let old = (m.h.l1_table_offset, m.l1.len() as u64 * 8);
            (m.l1, m.l1_dirty) = (new, false);
            (m.h.l1_table_offset, m.h.l1_size) = (off, entries as u32);
            old
        })
    }

    /// Writes a new snapshot table for `list` and points the header at it
    /// (the old table is freed after the header write).
    pub(crate) fn store_snapshots(&self, ws: &mut WState, list: Vec<Snapshot>) -> Result<()> {
        let buf = snapshot::serialize_table(&list);
        self.relocate_table(ws, &buf, |m, off| {
            let old = (m.h.snapshots_offset, m.snapshots_size);
            (m.h.snapshots_offset, m.h.nb_snapshots) = (off, list.len() as u32);
            (m.snapshots, m.snapshots_size) = (list, buf.len() as u64);
            old
        })
    }

    /// Moves a table referenced from the header to new clusters holding
    /// `buf` (none when it is empty): written and flushed first, then
    /// `link` points the metadata at the new offset and returns the old
    /// table's place (offset, bytes), freed after the header write.
    fn relocate_table(
        &self,
        ws: &mut WState,
        buf: &[u8],
        link: impl FnOnce(&mut Meta, u64) -> (u64, u64),
    ) -> Result<()> {
        let cs = self.geo().cs();
        let new_off = if buf.is_empty() {
            0
        } else {
            let off = self.alloc_clusters(ws, (buf.len() as u64).div_ceil(cs))?;
            // Refcounts for the new table first, then the table, then the header.
            self.writeback(ws, true)?;
            self.write_meta(off, buf, 0)?;
            self.file.flush()?;
            off
        };
        let (old_off, old_size) = {
            let mut m = self.meta_write();
            let old = link(&mut m, new_off);
            m.header_dirty = true;
            self.refresh_overlap(&m, ws);
            old
        };
        if old_size > 0 {
            ws.defer(old_off, old_size.div_ceil(cs), false);
        }
        self.writeback(ws, true)
    }

    fn find_snapshot(&self, id_or_name: &str) -> Result<usize> {
        let m = self.meta_read();
        m.snapshots
            .iter()
            .position(|s| s.id == id_or_name)
            .or_else(|| m.snapshots.iter().position(|s| s.name == id_or_name))
            .ok_or_else(|| {
                let msg = format!("Can't find snapshot '{id_or_name}'");
                self.ctx(BlockError::new(ErrorKind::NotFound, "snapshot", msg))
            })
    }

    fn snapshot_precheck(&self, op: &str) -> Result<()> {
        self.check_writable(op)?;
        if self.data_file.is_some() {
            let msg = "internal snapshots are not supported with an external data file";
            return Err(self.ctx(BlockError::unsupported_feature(op, msg)));
        }
        Ok(())
    }

    /// Creates an internal snapshot of the current state.
    pub(crate) fn snapshot_create_impl(&self, name: &str) -> Result<()> {
        self.snapshot_precheck("snapshot_create")?;
        if name.len() > u16::MAX as usize {
            return Err(self.ctx(BlockError::invalid("snapshot_create", "name too long")));
        }
        if self.meta_read().snapshots.len() as u32 >= crate::layout::header::MAX_SNAPSHOTS {
            return Err(self.ctx(BlockError::invalid("snapshot_create", "too many snapshots")));
        }
        self.bitmaps_before_change()?;
        let mut ws = self.wlock();
        self.writeback(&mut ws, true)?;
        let (l1, size, mut list) = {
            let m = self.meta_read();
            if m.snapshots.len() as u32 >= crate::layout::header::MAX_SNAPSHOTS {
                return Err(self.ctx(BlockError::invalid("snapshot_create", "too many snapshots")));
            }
            (m.l1.clone(), m.h.size, m.snapshots.clone())
        };
        let ids = list.iter().filter_map(|s| s.id.parse::<u64>().ok());
        let id = ids.max().unwrap_or(0) + 1;
        let shared: Vec<u64> = l1.iter().map(|e| e & !OFLAG_COPIED).collect();
        let buf = u64_table_bytes(&shared, Endian::Big);
        let mut l1_off = 0;
        if !buf.is_empty() {
            let cs = self.geo().cs();
            l1_off = self.alloc_clusters(&mut ws, (buf.len() as u64).div_ceil(cs))?;
            self.writeback(&mut ws, true)?;
            self.write_meta(l1_off, &buf, 0)?;
        }
        self.update_tree(&mut ws, &l1, 1)?;
        self.rebuild_copied(&mut ws)?;
        self.writeback(&mut ws, true)?;
        let now = UNIX_EPOCH.elapsed().unwrap_or_default();
        list.push(Snapshot {
            l1_offset: l1_off,
            l1_size: l1.len() as u32,
            id: id.to_string(),
            name: name.to_string(),
            // QEMU takes the date from g_get_real_time(): microseconds.
            date_sec: now.as_secs() as u32,
            date_nsec: now.subsec_micros() * 1000,
            vm_clock_nsec: 0,
            vm_state_size: 0,
            disk_size: Some(size),
            // qemu-img stores icount 0 (no record/replay), not "absent".
            icount: Some(0),
            extra_tail: Vec::new(),
        });
        self.store_snapshots(&mut ws, list)
    }

    /// Reverts the active state to a snapshot.
    pub(crate) fn snapshot_apply_impl(&self, id_or_name: &str) -> Result<()> {
        self.snapshot_precheck("snapshot_apply")?;
        self.bitmaps_snapshot_apply_check()?;
        let idx = self.find_snapshot(id_or_name)?;
        self.bitmaps_before_change()?;
        let mut ws = self.wlock();
        self.writeback(&mut ws, true)?;
        let sn = self.meta_read().snapshots[idx].clone();
        let mut sn_l1 = self.read_l1_table(sn.l1_offset, sn.l1_size)?;
        let disk_size = sn.disk_size.unwrap_or(self.meta_read().h.size);
        let need = self.meta_read().h.l1_entries_for(disk_size);
        self.grow_l1(&mut ws, need.max(sn_l1.len() as u64))?;
        self.update_tree(&mut ws, &sn_l1, 1)?;
        self.writeback(&mut ws, true)?;
        let old = {
            let mut m = self.meta_write();
            sn_l1.resize(m.l1.len(), 0);
            let old = std::mem::replace(&mut m.l1, sn_l1);
            m.l1_dirty = true;
            m.h.size = disk_size;
            m.header_dirty = true;
            self.refresh_overlap(&m, &ws);
            old
        };
        self.writeback(&mut ws, true)?;
        self.update_tree(&mut ws, &old, -1)?;
        self.rebuild_copied(&mut ws)?;
        self.writeback(&mut ws, true)?;
        self.refresh_overlap(&self.meta_read(), &ws);
        Ok(())
    }

    /// Deletes a snapshot and releases what only it referenced.
    pub(crate) fn snapshot_delete_impl(&self, id_or_name: &str) -> Result<()> {
        self.snapshot_precheck("snapshot_delete")?;
        let idx = self.find_snapshot(id_or_name)?;
        self.bitmaps_before_change()?;
        let mut ws = self.wlock();
        self.writeback(&mut ws, true)?;
        let mut list = self.meta_read().snapshots.clone();
        let sn = list.remove(idx);
        self.store_snapshots(&mut ws, list)?;
        let sn_l1 = self.read_l1_table(sn.l1_offset, sn.l1_size)?;
        self.update_tree(&mut ws, &sn_l1, -1)?;
        let cs = self.geo().cs();
        for c in 0..(u64::from(sn.l1_size) * 8).div_ceil(cs) {
            self.change_refcount(&mut ws, sn.l1_offset / cs + c, -1)?;
        }
        self.rebuild_copied(&mut ws)?;
        self.writeback(&mut ws, true)?;
        self.refresh_overlap(&self.meta_read(), &ws);
        Ok(())
    }
}
