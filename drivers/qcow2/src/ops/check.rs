//! Consistency check and repair, counting like `qemu-img check`.
//!
//! Builds an in-memory refcount table from every reference (header, L1/L2
//! tables of the active state and every snapshot, the snapshot table, the
//! refcount table and blocks), compares it with the on-disk refcounts,
//! and checks the COPIED flags of the active state.

use crate::layout::mapping::{
    ClusterType, BITMAP_ALL_ALLOC, L1E_OFFSET_MASK, L1E_RESERVED_MASK, L2E_OFFSET_MASK,
    L2E_STD_RESERVED_MASK, OFLAG_COPIED, OFLAG_ZERO,
};
use crate::node::{Qcow2Node, WState};
use crate::ops::copied::Walk;
use block_core::engine::check::{
    check_refcount_blocks, check_refcounts, note, run_check, ClusterStats, ComputedRefcounts,
    Findings, RefcountCheck,
};
use block_core::engine::refcount_alloc::RefcountStore;
use block_core::{BlockError, CheckMode, CheckReport, FindingKind, Preallocation, Result};
use std::sync::atomic::Ordering;

/// The computed references (the engine's).
pub(crate) type Refs = ComputedRefcounts;

impl RefcountCheck for Qcow2Node {
    /// QEMU's calculate_refcounts: every reference counted into a fresh
    /// `Refs`, with the refcount blocks checked (`check_refblocks`).
    /// Returns the references and whether the refcount structure must be
    /// rebuilt.
    fn count_references(
        &self,
        ws: &mut WState,
        mode: CheckMode,
        rep: &mut CheckReport,
        frag: bool,
    ) -> Result<(Refs, bool)> {
        let g = self.geo();
        let cs = g.cs();
        let flen = self.file.length()?;
        let m = self.meta_read();
        let (h, l1, snaps) = (m.h.clone(), m.l1.clone(), m.snapshots.clone());
        let snap_size = m.snapshots_size;
        drop(m);
        let mut refs = Refs::new(flen, g.cluster_bits, g.max_refcount());
        refs.inc(0, cs, rep);
        self.check_l1(h.l1_table_offset, &l1, &mut refs, rep, frag, mode);
        if self.data_file.is_some() && !snaps.is_empty() {
            let n = snaps.len();
            rep.corruption(format!("ERROR {n} snapshots in image with data file"));
        }
        for s in &snaps {
            let (id, name) = (&s.id, &s.name);
            if g.in_cluster(s.l1_offset) != 0 {
                rep.corruption(format!("ERROR snapshot {id} ({name}) l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry corrupted", s.l1_offset));
                continue;
            }
            if u64::from(s.l1_size) * 8 > crate::layout::header::MAX_L1_BYTES {
                rep.corruption(format!("ERROR snapshot {id} ({name}) l1_size={:#x}: L1 table is too large; snapshot table entry corrupted", s.l1_size));
                continue;
            }
            match self.read_l1_table(s.l1_offset, s.l1_size) {
                Ok(sl1) => self.check_l1(s.l1_offset, &sl1, &mut refs, rep, false, mode),
                Err(e) => rep.check_error(format!("ERROR: I/O error in check_refcounts_l1: {e}")),
            }
        }
        if h.nb_snapshots > 0 {
            refs.inc(h.snapshots_offset, snap_size, rep);
        }
        // Persistent bitmaps: their directory, tables and data clusters are
        // in use (bitmap/refs.rs); repair never frees them.
        for (off, len) in self.bitmap_references(rep)? {
            refs.inc(off, len, rep);
        }
        refs.inc(h.refcount_table_offset, ws.reftable.len() as u64 * 8, rep);
        // The refcount blocks: counted, a block past the end repaired by
        // growing the file over it.
        let grow = &mut |end| self.file.truncate(end, Preallocation::Off);
        let rebuild = check_refcount_blocks(ws, &self.geometry(), &mut refs, mode, rep, grow);
        Ok((refs, rebuild))
    }

    fn rebuild_structure(&self, ws: &mut WState, refs: &mut Refs) -> Result<()> {
        self.rebuild_refcount_structure(ws, refs)
    }
}

impl Qcow2Node {
    fn check_l2(
        &self,
        l2_off: u64,
        refs: &mut Refs,
        rep: &mut CheckReport,
        frag: bool,
        mode: CheckMode,
    ) {
        let g = self.geo();
        let cs = g.cs();
        let table = match self.l2_table(l2_off) {
            Ok(t) => t,
            Err(e) => return rep.check_error(format!("I/O error in check_refcounts_l2: {e}")),
        };
        let d = table.read().clone();
        let mut stats = ClusterStats::default();
        let mut fixed: Vec<(usize, u64)> = Vec::new();
        for i in 0..g.l2_entries() as usize {
            let (entry, bitmap) = g.l2_entry(&d, i);
            let ct = g.cluster_type(entry);
            if ct != ClusterType::Compressed && entry & L2E_STD_RESERVED_MASK != 0 {
                rep.corruption(format!(
                    "ERROR found l2 entry with reserved bits set: {entry:x}"
                ));
            }
            match ct {
                ClusterType::Compressed => {
                    let (copied, entry) = (entry & OFLAG_COPIED != 0, entry & !OFLAG_COPIED);
                    let (coff, csize) = g.compressed_range(entry);
                    if copied {
                        rep.corruption(format!("ERROR: coffset={coff:#x}: copied flag must never be set for compressed clusters"));
                    }
                    if self.data_file.is_some() {
                        rep.corruption(format!(
                            "ERROR compressed cluster {i} with data file, entry={entry:#x}"
                        ));
                        continue;
                    }
                    if bitmap != 0 {
                        rep.corruption(format!("ERROR compressed cluster {i} with non-zero subcluster allocation bitmap, entry={entry:#x}"));
                        continue;
                    }
                    refs.inc(coff, csize, rep);
                    if frag {
                        stats.compressed(rep);
                    }
                }
                ClusterType::Normal | ClusterType::ZeroAlloc => {
                    let off = entry & L2E_OFFSET_MASK;
                    if (bitmap >> 32) & bitmap != 0 {
                        rep.corruption(format!("ERROR offset={off:x}: Allocated cluster has corrupted subcluster allocation bitmap"));
                    }
                    if g.in_cluster(off) != 0 {
                        let contains_data = if g.extended_l2 {
                            bitmap & BITMAP_ALL_ALLOC != 0
                        } else {
                            entry & OFLAG_ZERO == 0
                        };
                        if contains_data {
                            rep.corruption(format!("ERROR offset={off:x}: Data cluster is not properly aligned; L2 entry corrupted."));
                        } else if rep.repairable(
                            mode.contains(CheckMode::FIX_ERRORS),
                            format!("offset={off:x}: Preallocated cluster is not properly aligned; L2 entry corrupted."),
                        ) {
                            fixed.push((i, if g.extended_l2 { 0 } else { OFLAG_ZERO }));
                            rep.corruptions_fixed += 1;
                            continue;
                        }
                    }
                    if frag {
                        stats.data(rep, off, cs);
                    }
                    if self.data_file.is_none() {
                        refs.inc(off, cs, rep);
                    }
                }
                ClusterType::Unallocated if bitmap & BITMAP_ALL_ALLOC != 0 => {
                    let msg = "ERROR: Unallocated cluster has non-zero subcluster allocation map";
                    rep.corruption(msg.to_string());
                }
                ClusterType::ZeroPlain | ClusterType::Unallocated => {}
            }
        }
        if !fixed.is_empty() {
            let mut w = table.write();
            for (i, e) in fixed {
                g.set_l2_entry(&mut w, i, e, 0);
            }
        }
    }

    fn check_l1(
        &self,
        l1_off: u64,
        l1: &[u64],
        refs: &mut Refs,
        rep: &mut CheckReport,
        frag: bool,
        mode: CheckMode,
    ) {
        refs.inc(l1_off, l1.len() as u64 * 8, rep);
        for &e in l1 {
            if e & L1E_RESERVED_MASK != 0 {
                rep.corruption(format!(
                    "ERROR found L1 entry with reserved bits set: {e:x}"
                ));
            }
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            refs.inc(l2, self.geo().cs(), rep);
            if self.geo().in_cluster(l2) != 0 {
                let why = "Table is not cluster aligned; L1 entry corrupted";
                rep.corruption(format!("ERROR l2_offset={l2:x}: {why}"));
                continue;
            }
            self.check_l2(l2, refs, rep, frag, mode);
        }
    }

    /// Checks (and repairs, per `mode`) the image.
    pub(crate) fn check_impl(&self, mode: CheckMode) -> Result<CheckReport> {
        self.check_usable("check")?;
        if self.snapshot_view.is_some() {
            let msg = "cannot check a snapshot view; open the image without snapshot options";
            return Err(self.ctx(BlockError::unsupported_feature("check", msg)));
        }
        let repair = mode.0 != 0;
        if repair {
            self.check_changeable("check")?;
        }
        let mut ws = self.wlock();
        if self.check_changeable("check").is_ok() && !self.corrupt.load(Ordering::Acquire) {
            self.writeback(&mut ws, true)?;
        }
        let total = self.meta_read().h.size.div_ceil(self.geo().cs());
        let rep = run_check(CheckReport::counting_clusters(total), |rep| {
            self.check_locked(&mut ws, mode, rep)
        })?;
        if repair && rep.corruptions == 0 && rep.check_errors == 0 {
            // Consistent now: clear the corrupt bit.
            let was_corrupt = self.meta_read().h.is_corrupt();
            if self.corrupt.swap(false, Ordering::AcqRel) || was_corrupt {
                let mut m = self.meta_write();
                m.h.incompatible_features &= !crate::layout::features::INCOMPAT_CORRUPT;
                m.header_dirty = true;
            }
            self.writeback(&mut ws, true)?;
            self.file.flush()?;
        }
        Ok(rep)
    }

    /// The check proper: snapshot table entries, the refcounts (counted,
    /// compared and repaired by the engine's `check_refcounts`, which
    /// rebuilds the structure through meta/rebuild.rs when a block is unusable
    /// or a referenced cluster has refcount 0), then the COPIED flags.
    fn check_locked(&self, ws: &mut WState, mode: CheckMode, rep: &mut CheckReport) -> Result<()> {
        let cs = self.geo().cs();
        let incomplete = self.check_snapshot_table(rep, mode);
        let highest = check_refcounts(self, ws, mode, rep)?;
        self.check_copied(ws, rep, mode)?;
        rep.image_end_offset = Some((highest + 1) * cs);
        if !incomplete.is_empty() {
            self.fix_snapshot_table(ws, &incomplete, rep)?;
            rep.corruptions_fixed += incomplete.len() as u64;
        }
        Ok(())
    }

    /// Completes the snapshot entries `incomplete` (the disk size becomes
    /// the image's, as QEMU does) and writes the table anew. A table that
    /// lay past the end of the file has nothing to free.
    fn fix_snapshot_table(
        &self,
        ws: &mut WState,
        incomplete: &[usize],
        rep: &mut CheckReport,
    ) -> Result<()> {
        let flen = self.file.length()?;
        let list = {
            let mut m = self.meta_write();
            let size = m.h.size;
            if m.h.snapshots_offset.saturating_add(m.snapshots_size) > flen {
                // QEMU tries to free it and fails with EINVAL; say so alike.
                let msg = "qcow2_free_clusters failed: Invalid argument";
                note(rep, FindingKind::Note, None, msg.to_string());
                m.snapshots_size = 0;
            }
            let mut list = m.snapshots.clone();
            for &i in incomplete {
                list[i].disk_size = Some(size);
            }
            list
        };
        self.store_snapshots(ws, list)
    }

    /// Reports snapshot table entries that lack the fields version 3
    /// requires (QEMU: "snapshot table entry N is incomplete"). Returns
    /// those to repair (with FIX_ERRORS; they are fixed after the
    /// refcounts, as in QEMU).
    fn check_snapshot_table(&self, rep: &mut CheckReport, mode: CheckMode) -> Vec<usize> {
        let m = self.meta_read();
        let fix = mode.contains(CheckMode::FIX_ERRORS);
        let v3 = m.h.version >= 3;
        let incomplete =
            (0..m.snapshots.len()).filter(|&i| v3 && m.snapshots[i].disk_size.is_none());
        let what = |i| format!("snapshot table entry {i} is incomplete");
        incomplete
            .filter(|&i| rep.repairable(fix, what(i)))
            .collect()
    }

    /// QEMU's check_oflag_copied: the COPIED flag of every active L1 and
    /// L2 entry must say whether the refcount is 1. Repaired with
    /// FIX_ERRORS, and with FIX_LEAKS when the refcounts are now clean.
    fn check_copied(&self, ws: &mut WState, rep: &mut CheckReport, mode: CheckMode) -> Result<()> {
        let repair = mode.contains(CheckMode::FIX_ERRORS)
            || (mode.contains(CheckMode::FIX_LEAKS)
                && rep.check_errors == 0
                && rep.corruptions == 0
                && rep.leaks == 0);
        rep.corruptions_fixed += self.walk_copied(ws, Walk::Tolerant, |what| match what {
            Some(what) => rep.repairable(repair, what),
            None => {
                rep.check_error("ERROR: Could not read L2 table".to_string());
                false
            }
        })?;
        Ok(())
    }
}
