//! Consistency check and repair, counting like `qemu-img check`.
//!
//! Builds an in-memory refcount table from every reference (header, L1/L2
//! tables of the active state and every snapshot, the snapshot table, the
//! refcount table and blocks), compares it with the on-disk refcounts,
//! and checks the COPIED flags of the active state.

use crate::header::{get_u64, MAX_HOST_OFFSET, MAX_REFTABLE_BYTES};
use crate::mapping::{
    ClusterType, BITMAP_ALL_ALLOC, L1E_OFFSET_MASK, L1E_RESERVED_MASK, L2E_OFFSET_MASK,
    L2E_STD_RESERVED_MASK, OFLAG_COPIED, OFLAG_ZERO, REFT_OFFSET_MASK, REFT_RESERVED_MASK,
};
use crate::node::{Deferred, Qcow2Node, WState};
use block_core::{BlockNodeExt, CheckMode, CheckReport, Result};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The computed references: dense up to the file end, sparse beyond it
/// (a hostile entry far past the end must not size an allocation).
struct Refs {
    dense: Vec<u64>,
    sparse: BTreeMap<u64, u64>,
    cs_bits: u32,
    max: u64,
}

impl Refs {
    fn inc(&mut self, off: u64, len: u64, rep: &mut CheckReport) {
        if len == 0 {
            return;
        }
        let first = off >> self.cs_bits;
        let last = (off + len - 1) >> self.cs_bits;
        for k in first..=last {
            let slot = if (k as usize) < self.dense.len() {
                &mut self.dense[k as usize]
            } else {
                self.sparse.entry(k).or_insert(0)
            };
            if *slot >= self.max {
                log::error!("qcow2 check: refcount overflow at cluster {k}");
                rep.corruptions += 1;
            } else {
                *slot += 1;
            }
        }
    }
    fn get(&self, k: u64) -> u64 {
        if (k as usize) < self.dense.len() {
            self.dense[k as usize]
        } else {
            self.sparse.get(&k).copied().unwrap_or(0)
        }
    }

    /// The first run of `n` clusters from `from` on that nothing
    /// references (below the host offset limit).
    fn free_run(&self, from: u64, n: u64) -> Option<u64> {
        let max = MAX_HOST_OFFSET >> self.cs_bits;
        let mut start = from.max(1);
        let mut k = start;
        while k < max {
            if self.get(k) != 0 {
                start = k + 1;
            } else if k + 1 - start == n {
                return Some(start);
            }
            k += 1;
        }
        None
    }

    /// The refcount-block ranges (of `e` clusters) holding referenced
    /// clusters, ascending.
    fn used_ranges(&self, e: u64) -> Vec<u64> {
        let mut v: Vec<u64> = Vec::new();
        for (t, chunk) in self.dense.chunks(e as usize).enumerate() {
            if chunk.iter().any(|&r| r > 0) {
                v.push(t as u64);
            }
        }
        for (&k, &r) in &self.sparse {
            if r > 0 && v.last() != Some(&(k / e)) {
                v.push(k / e);
            }
        }
        v
    }
}

impl Qcow2Node {
    fn read_l1_from_disk(&self, off: u64, n: u32) -> Result<Vec<u64>> {
        let mut buf = vec![0u8; n as usize * 8];
        self.file.read_at(off, &mut buf)?;
        Ok((0..n as usize).map(|i| get_u64(&buf, i * 8)).collect())
    }

    fn check_l2(
        &self,
        l2_off: u64,
        refs: &mut Refs,
        rep: &mut CheckReport,
        frag: bool,
        mode: CheckMode,
    ) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        let table = match self.l2_table(l2_off) {
            Ok(t) => t,
            Err(e) => {
                log::error!("qcow2 check: I/O error in check_refcounts_l2: {e}");
                rep.check_errors += 1;
                return Ok(());
            }
        };
        let d = table.read().clone();
        let es = g.l2_entry_size() as usize;
        let mut next_contig = 0u64;
        let mut fixed: Vec<(usize, u64)> = Vec::new();
        for i in 0..g.l2_entries() as usize {
            let entry = get_u64(&d, i * es);
            let bitmap = if g.extended_l2 {
                get_u64(&d, i * es + 8)
            } else {
                0
            };
            let ct = g.cluster_type(entry);
            if ct != ClusterType::Compressed && entry & L2E_STD_RESERVED_MASK != 0 {
                log::error!("qcow2 check: L2 entry with reserved bits set: {entry:x}");
                rep.corruptions += 1;
            }
            match ct {
                ClusterType::Compressed => {
                    if entry & OFLAG_COPIED != 0 {
                        log::error!("qcow2 check: copied flag set on a compressed cluster");
                        rep.corruptions += 1;
                    }
                    if self.data_file.is_some() {
                        log::error!("qcow2 check: compressed cluster with data file");
                        rep.corruptions += 1;
                        continue;
                    }
                    if bitmap != 0 {
                        log::error!("qcow2 check: compressed cluster with non-zero bitmap");
                        rep.corruptions += 1;
                    }
                    let (first, n) = g.compressed_clusters(entry & !OFLAG_COPIED);
                    let (coff, csize) = g.compressed_range(entry & !OFLAG_COPIED);
                    let _ = (first, n);
                    refs.inc(coff, csize, rep);
                    if frag {
                        rep.allocated_clusters = Some(rep.allocated_clusters.unwrap_or(0) + 1);
                        rep.compressed_clusters = Some(rep.compressed_clusters.unwrap_or(0) + 1);
                        rep.fragmented_clusters = Some(rep.fragmented_clusters.unwrap_or(0) + 1);
                    }
                }
                ClusterType::Normal | ClusterType::ZeroAlloc => {
                    let off = entry & L2E_OFFSET_MASK;
                    if (bitmap >> 32) & bitmap != 0 {
                        log::error!("qcow2 check: corrupted subcluster allocation bitmap");
                        rep.corruptions += 1;
                    }
                    if g.in_cluster(off) != 0 {
                        rep.corruptions += 1;
                        let contains_data = if g.extended_l2 {
                            bitmap & BITMAP_ALL_ALLOC != 0
                        } else {
                            entry & OFLAG_ZERO == 0
                        };
                        if !contains_data && mode.contains(CheckMode::FIX_ERRORS) {
                            let new = if g.extended_l2 { 0 } else { OFLAG_ZERO };
                            fixed.push((i, new));
                            rep.corruptions -= 1;
                            rep.corruptions_fixed += 1;
                            continue;
                        }
                        log::error!("qcow2 check: cluster offset {off:x} not aligned");
                    }
                    if frag {
                        rep.allocated_clusters = Some(rep.allocated_clusters.unwrap_or(0) + 1);
                        if next_contig != 0 && off != next_contig {
                            rep.fragmented_clusters =
                                Some(rep.fragmented_clusters.unwrap_or(0) + 1);
                        }
                        next_contig = off + cs;
                    }
                    if self.data_file.is_none() {
                        refs.inc(off, cs, rep);
                    }
                }
                ClusterType::ZeroPlain => {}
                ClusterType::Unallocated => {
                    if bitmap & BITMAP_ALL_ALLOC != 0 {
                        log::error!("qcow2 check: unallocated cluster with allocation bits");
                        rep.corruptions += 1;
                    }
                }
            }
        }
        if !fixed.is_empty() {
            let mut w = table.write();
            for (i, e) in fixed {
                crate::header::put_u64(&mut w, i * es, e);
                if g.extended_l2 {
                    crate::header::put_u64(&mut w, i * es + 8, 0);
                }
            }
        }
        Ok(())
    }

    fn check_l1(
        &self,
        l1_off: u64,
        l1: &[u64],
        refs: &mut Refs,
        rep: &mut CheckReport,
        frag: bool,
        mode: CheckMode,
    ) -> Result<()> {
        refs.inc(l1_off, l1.len() as u64 * 8, rep);
        for &e in l1 {
            if e & L1E_RESERVED_MASK != 0 {
                log::error!("qcow2 check: L1 entry with reserved bits set: {e:x}");
                rep.corruptions += 1;
            }
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            refs.inc(l2, self.geo().cs(), rep);
            if self.geo().in_cluster(l2) != 0 {
                log::error!("qcow2 check: L2 table offset {l2:x} not cluster aligned");
                rep.corruptions += 1;
                continue;
            }
            self.check_l2(l2, refs, rep, frag, mode)?;
        }
        Ok(())
    }

    /// Checks (and repairs, per `mode`) the image.
    pub(crate) fn check_impl(&self, mode: CheckMode) -> Result<CheckReport> {
        self.check_usable("check")?;
        if self.snapshot_view.is_some() {
            return Err(self.ctx(crate::error::unsupported(
                "check",
                "cannot check a snapshot view; open the image without snapshot options",
            )));
        }
        let repair = mode.0 != 0;
        if repair {
            if self.read_only {
                return Err(self.ctx(crate::error::read_only("check", "image is read-only")));
            }
            if self.inactive.load(Ordering::Acquire) {
                return Err(self.ctx(crate::error::read_only("check", "image is inactive")));
            }
        }
        let mut ws = self.wlock();
        let writable = !self.read_only && !self.inactive.load(Ordering::Acquire);
        if writable && !self.corrupt.load(Ordering::Acquire) {
            self.writeback(&mut ws, true)?;
        }
        let rep = self.check_locked(&mut ws, mode)?;
        if repair && rep.corruptions == 0 && rep.check_errors == 0 {
            // Consistent now: clear the corrupt bit.
            let was_corrupt =
                self.meta_read().h.is_corrupt() || self.corrupt.load(Ordering::Acquire);
            self.corrupt.store(false, Ordering::Release);
            if was_corrupt {
                let mut m = self.meta_write();
                m.h.incompatible_features &= !crate::features::INCOMPAT_CORRUPT;
                m.header_dirty = true;
            }
            self.writeback(&mut ws, true)?;
            self.file.flush()?;
        }
        Ok(rep)
    }

    fn check_locked(&self, ws: &mut WState, mode: CheckMode) -> Result<CheckReport> {
        let g = self.geo();
        let cs = g.cs();
        let mut rep = CheckReport::default();
        let flen = self.file.length()?;
        let nb = flen.div_ceil(cs);
        let (h, l1, snaps, snap_size) = {
            let m = self.meta_read();
            (
                m.h.clone(),
                m.l1.clone(),
                m.snapshots.clone(),
                m.snapshots_size,
            )
        };
        rep.total_clusters = Some(h.size.div_ceil(cs));
        rep.allocated_clusters = Some(0);
        rep.fragmented_clusters = Some(0);
        rep.compressed_clusters = Some(0);
        let mut refs = Refs {
            dense: vec![0u64; nb as usize],
            sparse: BTreeMap::new(),
            cs_bits: g.cluster_bits,
            max: g.max_refcount(),
        };
        refs.inc(0, cs, &mut rep);
        self.check_l1(h.l1_table_offset, &l1, &mut refs, &mut rep, true, mode)?;
        for s in &snaps {
            match self.read_l1_from_disk(s.l1_offset, s.l1_size.min(4 << 20)) {
                Ok(sl1) => {
                    self.check_l1(s.l1_offset, &sl1, &mut refs, &mut rep, false, mode)?;
                }
                Err(e) => {
                    log::error!("qcow2 check: I/O error in check_refcounts_l1: {e}");
                    rep.check_errors += 1;
                }
            }
        }
        refs.inc(h.snapshots_offset, snap_size, &mut rep);
        for (off, len) in self.bitmap_references(&mut rep)? {
            refs.inc(off, len, &mut rep);
        }
        refs.inc(
            h.refcount_table_offset,
            ws.reftable.len() as u64 * 8,
            &mut rep,
        );
        // A refcount block that is unusable (misplaced, shared with other
        // data, outside the image) must not be written through.
        let mut broken_blocks = false;
        for (i, &e) in ws.reftable.iter().enumerate() {
            let off = e & REFT_OFFSET_MASK;
            if e & REFT_RESERVED_MASK != 0 {
                log::error!("qcow2 check: refcount table entry {i} has reserved bits set");
                rep.corruptions += 1;
                broken_blocks = true;
                continue;
            }
            if g.in_cluster(off) != 0 {
                log::error!("qcow2 check: refcount block {i} is not cluster aligned");
                rep.corruptions += 1;
                broken_blocks = true;
                continue;
            }
            if off == 0 {
                continue;
            }
            if off / cs >= nb {
                log::error!("qcow2 check: refcount block {i} is outside image");
                rep.corruptions += 1;
                broken_blocks = true;
                continue;
            }
            refs.inc(off, cs, &mut rep);
            if refs.get(off / cs) != 1 {
                log::error!(
                    "qcow2 check: refcount block {i} refcount={}",
                    refs.get(off / cs)
                );
                rep.corruptions += 1;
                broken_blocks = true;
            }
        }
        if !broken_blocks && mode.contains(CheckMode::FIX_ERRORS) {
            self.cover_references(ws, &mut refs)?;
        }
        // Compare.
        let mut highest = 0u64;
        let mut idx: Vec<u64> = (0..nb).collect();
        idx.extend(refs.sparse.keys().copied().filter(|k| *k >= nb));
        for i in idx {
            let r1 = match self.get_refcount(ws, i) {
                Ok(v) => v,
                Err(e) => {
                    log::error!("qcow2 check: can't get refcount for cluster {i}: {e}");
                    rep.check_errors += 1;
                    continue;
                }
            };
            let r2 = refs.get(i);
            if r1 > 0 || r2 > 0 {
                highest = i;
            }
            if r1 == r2 {
                continue;
            }
            let fix = !broken_blocks
                && ((r1 > r2 && mode.contains(CheckMode::FIX_LEAKS))
                    || (r1 < r2 && mode.contains(CheckMode::FIX_ERRORS)));
            // Never allocates: `cover_references` made every block the
            // references need (an uncovered cluster stays reported).
            if fix && self.change_refcount(ws, i, r2 as i64 - r1 as i64).is_ok() {
                if r1 > r2 {
                    rep.leaks_fixed += 1;
                } else {
                    rep.corruptions_fixed += 1;
                }
                continue;
            }
            if r1 < r2 {
                log::error!("qcow2 check: ERROR cluster {i} refcount={r1} reference={r2}");
                rep.corruptions += 1;
            } else {
                log::warn!("qcow2 check: Leaked cluster {i} refcount={r1} reference={r2}");
                rep.leaks += 1;
            }
        }
        if broken_blocks && mode.0 != 0 {
            // Rebuilding the refcount structure is not implemented: repair
            // nothing rather than write refcounts into unusable blocks.
            log::error!("qcow2 check: ERROR need to rebuild refcount structures");
            rep.check_errors += 1;
            rep.image_end_offset = Some((highest + 1) * cs);
            return Ok(rep);
        }
        self.check_copied(ws, &mut rep, mode)?;
        rep.image_end_offset = Some((highest + 1) * cs);
        Ok(rep)
    }

    /// Gives every referenced cluster a refcount block (growing the
    /// refcount table if needed) before the repair writes refcounts. The
    /// new structures go only to clusters that `refs`, the references just
    /// computed, shows unused, and are counted in `refs`: the on-disk
    /// refcounts that the allocator trusts are what is being repaired
    /// (after a crash with lazy refcounts they call clusters free that
    /// hold data, and the missing block's range may start with data), so
    /// nothing here may use them. As in QEMU's rebuild of the refcount
    /// structure. A block goes into its own range when that has a free
    /// cluster (it describes itself), else to the first free cluster.
    /// Ranges that no table within the size limit can cover stay
    /// uncovered; their clusters are then reported, not fixed.
    fn cover_references(&self, ws: &mut WState, refs: &mut Refs) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        let e = g.rb_entries();
        // Clusters are only ever taken here, so the first free one never
        // moves down.
        let mut cursor = 1u64;
        let mut limit = MAX_REFTABLE_BYTES / 8;
        let mut changed = false;
        for _ in 0..64 {
            let covered = |ws: &WState, t: u64| {
                ws.reftable
                    .get(t as usize)
                    .is_some_and(|x| x & REFT_OFFSET_MASK != 0)
            };
            let mut need = refs.used_ranges(e);
            need.retain(|&t| t < limit && !covered(ws, t));
            let Some(&top) = need.last() else {
                break;
            };
            changed = true;
            if top >= ws.reftable.len() as u64 {
                if !self.grow_reftable_for_repair(ws, refs, top + 1, &mut cursor) {
                    limit = ws.reftable.len() as u64;
                }
                continue;
            }
            for t in need {
                let own = ((t * e).max(1)..(t + 1) * e).find(|&c| refs.get(c) == 0);
                let c = match own {
                    Some(c) => c,
                    None => {
                        while refs.get(cursor) != 0 {
                            cursor += 1;
                        }
                        cursor
                    }
                };
                let off = c * cs;
                refs.inc(off, cs, &mut CheckReport::default());
                self.l2.remove(off);
                self.rc.insert(off, vec![0u8; cs as usize], true);
                ws.reftable[t as usize] = off;
                ws.reftable_dirty = true;
                log::info!("qcow2 check: new refcount block {t} at {off:#x}");
            }
        }
        if changed {
            let m = self.meta_read();
            self.refresh_overlap(&m, ws);
        }
        Ok(())
    }

    /// Moves the refcount table to clusters `refs` shows free, with at
    /// least `min_entries` entries (and enough to cover itself). The old
    /// table stays counted in `refs` and is freed after the header that
    /// points at the new one is written. Returns false (and does nothing)
    /// when the table would exceed its size limit.
    fn grow_reftable_for_repair(
        &self,
        ws: &mut WState,
        refs: &mut Refs,
        min_entries: u64,
        cursor: &mut u64,
    ) -> bool {
        let cs = self.geo().cs();
        let e = self.geo().rb_entries();
        let most = MAX_REFTABLE_BYTES / 8;
        let mut entries = min_entries.max((ws.reftable.len() as u64 * 2).min(most));
        let (loc, k) = loop {
            let k = (entries * 8).div_ceil(cs);
            if k * cs > MAX_REFTABLE_BYTES {
                log::error!("qcow2 check: refcount table would exceed its size limit");
                return false;
            }
            while refs.get(*cursor) != 0 {
                *cursor += 1;
            }
            let Some(loc) = refs.free_run(*cursor, k) else {
                return false;
            };
            let need = (loc + k - 1) / e + 1;
            if need > entries {
                entries = need.max((need + need / 2).min(most));
                continue;
            }
            break (loc, k);
        };
        refs.inc(loc * cs, k * cs, &mut CheckReport::default());
        let (old_off, old_clusters) = {
            let mut m = self.meta_write();
            let old = (
                m.h.refcount_table_offset,
                u64::from(m.h.refcount_table_clusters),
            );
            m.h.refcount_table_offset = loc * cs;
            m.h.refcount_table_clusters = k as u32;
            m.header_dirty = true;
            old
        };
        ws.reftable.resize((k * cs / 8) as usize, 0);
        ws.reftable_dirty = true;
        ws.deferred.push(Deferred {
            offset: old_off,
            clusters: old_clusters,
            punch: false,
        });
        log::info!("qcow2 check: refcount table moved to {:#x}", loc * cs);
        let m = self.meta_read();
        self.refresh_overlap(&m, ws);
        true
    }

    fn check_copied(&self, ws: &mut WState, rep: &mut CheckReport, mode: CheckMode) -> Result<()> {
        let g = self.geo();
        let fix = mode.contains(CheckMode::FIX_ERRORS);
        let l1 = self.meta_read().l1.clone();
        for (i, &l1e) in l1.iter().enumerate() {
            let l2 = l1e & L1E_OFFSET_MASK;
            if l2 == 0 || g.in_cluster(l2) != 0 {
                continue;
            }
            let Ok(rc) = self.get_refcount(ws, l2 / g.cs()) else {
                continue;
            };
            if (rc == 1) != (l1e & OFLAG_COPIED != 0) {
                if fix {
                    let mut m = self.meta_write();
                    m.l1[i] = if rc == 1 {
                        l1e | OFLAG_COPIED
                    } else {
                        l1e & !OFLAG_COPIED
                    };
                    m.l1_dirty = true;
                    rep.corruptions_fixed += 1;
                } else {
                    log::error!("qcow2 check: OFLAG_COPIED L2 cluster: l1_index={i} refcount={rc}");
                    rep.corruptions += 1;
                }
            }
            let Ok(table) = self.l2_table(l2) else {
                rep.check_errors += 1;
                continue;
            };
            let es = g.l2_entry_size() as usize;
            let d = table.read().clone();
            let mut changes = Vec::new();
            for j in 0..g.l2_entries() as usize {
                let e = get_u64(&d, j * es);
                let ct = g.cluster_type(e);
                let off = e & L2E_OFFSET_MASK;
                let relevant =
                    ct == ClusterType::Normal || (ct == ClusterType::ZeroAlloc && off != 0);
                if !relevant {
                    continue;
                }
                let rc = if self.data_file.is_some() {
                    1
                } else {
                    match self.get_refcount(ws, off / g.cs()) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                };
                if (rc == 1) != (e & OFLAG_COPIED != 0) {
                    if fix {
                        changes.push((
                            j,
                            if rc == 1 {
                                e | OFLAG_COPIED
                            } else {
                                e & !OFLAG_COPIED
                            },
                        ));
                        rep.corruptions_fixed += 1;
                    } else {
                        log::error!(
                            "qcow2 check: OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}"
                        );
                        rep.corruptions += 1;
                    }
                }
            }
            if !changes.is_empty() {
                let mut w = table.write();
                for (j, e) in changes {
                    crate::header::put_u64(&mut w, j * es, e);
                }
            }
        }
        Ok(())
    }
}
