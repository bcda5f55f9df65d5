//! Check support for refcounted formats: the references computed from
//! the metadata ([`ComputedRefcounts`], QEMU's in-memory refcount table)
//! and their comparison with the stored refcounts
//! ([`compare_refcounts`]), repairing leaks and wrong counts through the
//! refcount allocator. Findings are recorded in the
//! [`CheckReport`] as structured data, with the
//! lines qemu-img prints.
//!
//! Pieces every format's check uses, refcounted or not: [`Findings`]
//! (record a finding and count it in one step, repairable findings),
//! [`ClusterStats`] (allocated, fragmented and compressed clusters),
//! [`run_check`] (the findings of a check that fails travel with its
//! error).
//! For refcounted formats, [`check_refcounts`] runs the whole count,
//! compare, rebuild and repair sequence over a [`RefcountCheck`].

use crate::engine::refcount_alloc::{AllocState, RefcountGeometry, RefcountStore};
use crate::error::{BlockError, Result};
use crate::info::{CheckReport, CheckStopped, FindingKind};
use crate::types::CheckMode;
use std::collections::BTreeMap;

/// Records an error finding (printed with the "ERROR" prefix QEMU uses).
pub fn error(rep: &mut CheckReport, kind: FindingKind, offset: Option<u64>, msg: String) {
    log::debug!("check: {msg}");
    let msg = if msg.starts_with("ERROR") {
        msg
    } else {
        format!("ERROR {msg}")
    };
    rep.push_finding(kind, offset, msg);
}

/// Records a finding printed as is (leaks, repairs, notes).
pub fn note(rep: &mut CheckReport, kind: FindingKind, offset: Option<u64>, msg: String) {
    log::debug!("check: {msg}");
    rep.push_finding(kind, offset, msg);
}

/// Recording findings and counting them in one step, as every format's
/// check does. The messages are the lines qemu-img prints.
pub trait Findings {
    /// Records a corruption (with QEMU's "ERROR" prefix) and counts it.
    fn corruption(&mut self, msg: String);
    /// Records an error that kept something from being checked and
    /// counts it.
    fn check_error(&mut self, msg: String);
    /// A corruption `what` that the check repairs when `fix` is true:
    /// records "Repairing {what}" (the caller repairs it and counts it
    /// fixed), else records "ERROR {what}" and counts the corruption.
    /// Returns `fix`.
    fn repairable(&mut self, fix: bool, what: String) -> bool;
}

impl Findings for CheckReport {
    fn corruption(&mut self, msg: String) {
        error(self, FindingKind::Corruption, None, msg);
        self.corruptions += 1;
    }

    fn check_error(&mut self, msg: String) {
        error(self, FindingKind::CheckError, None, msg);
        self.check_errors += 1;
    }

    fn repairable(&mut self, fix: bool, what: String) -> bool {
        if fix {
            note(self, FindingKind::Repair, None, format!("Repairing {what}"));
        } else {
            self.corruption(format!("ERROR {what}"));
        }
        fix
    }
}

/// The allocation figures of a check (QEMU's BlockFragInfo: allocated,
/// fragmented and compressed guest clusters), counted while the mapping
/// tables are walked in guest order. A data cluster is fragmented when it
/// does not follow the previous one in the file; a compressed one always
/// counts as fragmented. Used by every format whose check reports them
/// (qcow2, parallels, vhdx, vmdk).
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterStats {
    next_contiguous: u64,
}

impl ClusterStats {
    /// Counts an allocated cluster of `cluster_size` bytes at host offset
    /// `offset`.
    pub fn data(&mut self, rep: &mut CheckReport, offset: u64, cluster_size: u64) {
        bump(&mut rep.allocated_clusters);
        if self.next_contiguous != 0 && offset != self.next_contiguous {
            bump(&mut rep.fragmented_clusters);
        }
        self.next_contiguous = offset + cluster_size;
    }

    /// Counts a compressed cluster.
    pub fn compressed(&mut self, rep: &mut CheckReport) {
        bump(&mut rep.allocated_clusters);
        bump(&mut rep.compressed_clusters);
        bump(&mut rep.fragmented_clusters);
    }
}

fn bump(v: &mut Option<u64>) {
    *v = Some(v.unwrap_or(0) + 1);
}

impl CheckReport {
    /// An empty report for an image of `total_clusters` guest clusters
    /// whose check counts the allocation figures ([`ClusterStats`]): they
    /// start at zero, so qemu-img prints them even when nothing is
    /// allocated.
    pub fn counting_clusters(total_clusters: u64) -> CheckReport {
        CheckReport {
            total_clusters: Some(total_clusters),
            allocated_clusters: Some(0),
            fragmented_clusters: Some(0),
            compressed_clusters: Some(0),
            ..CheckReport::default()
        }
    }
}

/// Runs a format's check `body` over the report `rep`. When it fails,
/// the findings recorded so far travel with the error as its
/// [`CheckStopped`] source (qemu-img prints them before "Check failed").
pub fn run_check(
    mut rep: CheckReport,
    body: impl FnOnce(&mut CheckReport) -> Result<()>,
) -> Result<CheckReport> {
    match body(&mut rep) {
        Ok(()) => Ok(rep),
        Err(e) => Err(e.with_source(CheckStopped {
            findings: rep.findings,
        })),
    }
}

/// The computed references: dense up to the file end, sparse beyond it
/// (a hostile entry far past the end must not size an allocation).
#[derive(Debug, Clone)]
pub struct ComputedRefcounts {
    dense: Vec<u64>,
    sparse: BTreeMap<u64, u64>,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The largest refcount value.
    pub max: u64,
    /// Length of the image file: a reference reaching one cluster or more
    /// past it is an error and is not counted (as in QEMU).
    pub file_len: u64,
}

impl ComputedRefcounts {
    /// No references yet, for a file of `file_len` bytes.
    pub fn new(file_len: u64, cluster_bits: u32, max: u64) -> ComputedRefcounts {
        ComputedRefcounts {
            dense: vec![0; file_len.div_ceil(1 << cluster_bits) as usize],
            sparse: BTreeMap::new(),
            cluster_bits,
            max,
            file_len,
        }
    }

    /// Clusters of the file (the dense part).
    pub fn file_clusters(&self) -> u64 {
        self.dense.len() as u64
    }

    /// Counts a reference to every cluster of `[off, off + len)`.
    pub fn inc(&mut self, off: u64, len: u64, rep: &mut CheckReport) {
        if len == 0 {
            return;
        }
        let end = off.saturating_add(len);
        if end > self.file_len && end - self.file_len >= 1 << self.cluster_bits {
            error(
                rep,
                FindingKind::Corruption,
                Some(off),
                format!("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {off:#x} size {len:#x}"),
            );
            rep.corruptions += 1;
            return;
        }
        let first = off >> self.cluster_bits;
        let last = (end - 1) >> self.cluster_bits;
        for k in first..=last {
            let max = self.max;
            let slot = self.slot(k);
            if *slot >= max {
                let at = k << self.cluster_bits;
                error(
                    rep,
                    FindingKind::Corruption,
                    Some(at),
                    format!("ERROR: overflow cluster offset={at:#x}"),
                );
                rep.corruptions += 1;
            } else {
                *slot += 1;
            }
        }
    }

    fn slot(&mut self, k: u64) -> &mut u64 {
        if (k as usize) < self.dense.len() {
            &mut self.dense[k as usize]
        } else {
            self.sparse.entry(k).or_insert(0)
        }
    }

    /// Sets the reference count of cluster `k`.
    pub fn set(&mut self, k: u64, v: u64) {
        *self.slot(k) = v;
    }

    /// The reference count of cluster `k`.
    pub fn get(&self, k: u64) -> u64 {
        if (k as usize) < self.dense.len() {
            self.dense[k as usize]
        } else {
            self.sparse.get(&k).copied().unwrap_or(0)
        }
    }

    /// Clusters covered: the file's, and any counted or allocated past it.
    pub fn len(&self) -> u64 {
        let past = self
            .sparse
            .iter()
            .rev()
            .find(|(_, &v)| v > 0)
            .map_or(0, |(&k, _)| k + 1);
        (self.dense.len() as u64).max(past)
    }

    /// True when no cluster is covered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indices of the clusters to compare: the file's and every counted
    /// one past it.
    pub fn indices(&self) -> Vec<u64> {
        let nb = self.dense.len() as u64;
        let mut idx: Vec<u64> = (0..nb).collect();
        idx.extend(self.sparse.keys().copied().filter(|k| *k >= nb));
        idx
    }
}

/// QEMU's compare_refcounts: compares the stored refcounts with `refs`,
/// repairing per `fix` through the allocator; a referenced cluster whose
/// refcount is 0 (its refcount block may be missing) sets `rebuild`
/// instead. Returns the highest cluster in use.
pub fn compare_refcounts(
    state: &mut AllocState,
    store: &dyn RefcountStore,
    refs: &ComputedRefcounts,
    fix: CheckMode,
    rebuild: &mut bool,
    rep: &mut CheckReport,
) -> u64 {
    let cs = 1u64 << refs.cluster_bits;
    let mut highest = 0u64;
    for i in refs.indices() {
        let r1 = match state.refcount(store, i) {
            Ok(v) => v,
            Err(e) => {
                error(
                    rep,
                    FindingKind::CheckError,
                    Some(i * cs),
                    format!("Can't get refcount for cluster {i}: {e}"),
                );
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
        if r1 == 0 {
            *rebuild = true;
        }
        let fixable = r1 != 0
            && ((r1 > r2 && fix.contains(CheckMode::FIX_LEAKS))
                || (r1 < r2 && fix.contains(CheckMode::FIX_ERRORS)));
        if fixable {
            let msg = format!("Repairing cluster {i} refcount={r1} reference={r2}");
            note(rep, FindingKind::Repair, Some(i * cs), msg);
            // Never allocates: r1 > 0, so a refcount block covers i.
            if state.change(store, i, r2 as i64 - r1 as i64).is_ok() {
                if r2 == 0 && i < refs.file_clusters() {
                    // Nothing references it: discard it as QEMU does
                    // (QCOW2_DISCARD_ALWAYS); a crash before the refcount
                    // reaches disk leaves a harmless leak.
                    store.discard(i * cs, cs);
                }
                if r1 > r2 {
                    rep.leaks_fixed += 1;
                } else {
                    rep.corruptions_fixed += 1;
                }
                continue;
            }
        } else if r1 < r2 {
            let msg = format!("ERROR cluster {i} refcount={r1} reference={r2}");
            error(rep, FindingKind::Corruption, Some(i * cs), msg);
        } else {
            let msg = format!("Leaked cluster {i} refcount={r1} reference={r2}");
            note(rep, FindingKind::Leak, Some(i * cs), msg);
        }
        if r1 < r2 {
            rep.corruptions += 1;
        } else {
            rep.leaks += 1;
        }
    }
    highest
}

/// QEMU's check_refblocks: counts every refcount block the refcount
/// table of `state` names into `refs`. Returns true when one is unusable
/// (reserved bits set, that is bits outside the geometry's offset mask;
/// not cluster aligned; referenced more than once) and the structure must
/// be rebuilt. A block past the end of the file is repaired (with
/// [`CheckMode::FIX_ERRORS`]) by `grow(new_length)` growing the file over
/// it.
pub fn check_refcount_blocks(
    state: &AllocState,
    g: &RefcountGeometry,
    refs: &mut ComputedRefcounts,
    mode: CheckMode,
    rep: &mut CheckReport,
    grow: &mut dyn FnMut(u64) -> Result<()>,
) -> bool {
    let cs = g.cluster_size();
    let mut rebuild = false;
    for (i, &e) in state.reftable.iter().enumerate() {
        let off = e & g.offset_mask;
        if e & !g.offset_mask != 0 {
            rep.corruption(format!(
                "ERROR refcount table entry {i} has reserved bits set"
            ));
            rebuild = true;
            continue;
        }
        if !off.is_multiple_of(cs) {
            rep.corruption(format!(
                "ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"
            ));
            rebuild = true;
            continue;
        }
        if off == 0 {
            continue;
        }
        if off / cs >= refs.file_len.div_ceil(cs) {
            let fix = mode.contains(CheckMode::FIX_ERRORS);
            if !rep.repairable(fix, format!("refcount block {i} is outside image")) {
                continue;
            }
            let grown = off
                .checked_add(cs)
                .filter(|&end| end < g.max_host_offset)
                .ok_or_else(|| BlockError::invalid("check", "offset too large"))
                .and_then(|end| grow(end).map(|_| end));
            match grown {
                Ok(end) => {
                    refs.file_len = end;
                    rep.corruptions_fixed += 1;
                    refs.inc(off, cs, rep);
                }
                Err(e) => {
                    // Not repaired: the corruption stays counted.
                    rep.corruptions += 1;
                    let msg = format!("ERROR could not resize image: {e}");
                    error(rep, FindingKind::CheckError, None, msg);
                    rebuild = true;
                }
            }
            continue;
        }
        refs.inc(off, cs, rep);
        if refs.get(off / cs) != 1 {
            rep.corruption(format!(
                "ERROR refcount block {i} refcount={}",
                refs.get(off / cs)
            ));
            rebuild = true;
        }
    }
    rebuild
}

/// What [`check_refcounts`] needs from a refcounted format, besides its
/// [`RefcountStore`].
pub trait RefcountCheck: RefcountStore {
    /// Counts every reference of the image into fresh computed refcounts
    /// (QEMU's calculate_refcounts), checking the refcount structure on
    /// the way (repairing per `mode` what needs no rebuild). Returns them
    /// and whether the structure must be rebuilt. With `stats`, the
    /// allocation figures are counted too ([`ClusterStats`]).
    fn count_references(
        &self,
        state: &mut AllocState,
        mode: CheckMode,
        rep: &mut CheckReport,
        stats: bool,
    ) -> Result<(ComputedRefcounts, bool)>;

    /// Writes a new refcount structure for `refs` (which then counts it
    /// too; see [`rebuild_refcount_structure`](crate::engine::rebuild::rebuild_refcount_structure))
    /// and switches the image to it.
    fn rebuild_structure(&self, state: &mut AllocState, refs: &mut ComputedRefcounts)
        -> Result<()>;
}

/// The refcount part of a check, as QEMU's qcow2_check_refcounts: count
/// the references, compare them with the stored refcounts, then repair per
/// `mode`: leaks and wrong refcounts in place, or (with
/// [`CheckMode::FIX_ERRORS`]) the whole structure rebuilt when a block is
/// unusable or a referenced cluster has refcount 0, followed by a count
/// of the new structure and a leak repair freeing the old one.
/// [`CheckMode::FIX_LEAKS`] alone cannot rebuild and fails with EIO
/// ("need to rebuild refcount structures"). The report's figures are
/// qemu-img's: after a repair they count what remains and what was fixed;
/// the allocation figures stay those of the first count. Returns the
/// highest cluster in use.
pub fn check_refcounts<F: RefcountCheck>(
    f: &F,
    state: &mut AllocState,
    mode: CheckMode,
    rep: &mut CheckReport,
) -> Result<u64> {
    let (mut refs, mut rebuild) = f.count_references(state, mode, rep, true)?;
    let pre_compare = rep.clone();
    let mut highest = compare_refcounts(state, f, &refs, CheckMode::REPORT, &mut rebuild, rep);
    if rebuild && mode.contains(CheckMode::FIX_ERRORS) {
        let old = rep.clone();
        note(
            rep,
            FindingKind::Note,
            None,
            "Rebuilding refcount structure".into(),
        );
        if let Err(e) = f.rebuild_structure(state, &mut refs) {
            error(rep, FindingKind::CheckError, None, e.to_string());
            return Err(f.context(e));
        }
        rep.corruptions = 0;
        rep.leaks = 0;
        rebuild = false;
        // The references change with the new structure: count again
        // (the allocation figures stay those of the first count).
        let stats = (
            rep.allocated_clusters,
            rep.fragmented_clusters,
            rep.compressed_clusters,
        );
        let (refs2, rb) = f.count_references(state, CheckMode::REPORT, rep, false)?;
        rebuild |= rb;
        (
            rep.allocated_clusters,
            rep.fragmented_clusters,
            rep.compressed_clusters,
        ) = stats;
        let mut fresh_leaks = 0;
        if mode.contains(CheckMode::FIX_LEAKS) {
            // The old structure is leaked now; free it (the counts of
            // this pass are not reported, its findings are).
            let mut r = CheckReport::default();
            highest =
                compare_refcounts(state, f, &refs2, CheckMode::FIX_LEAKS, &mut rebuild, &mut r);
            rep.findings.append(&mut r.findings);
            if rebuild {
                error(
                    rep,
                    FindingKind::Corruption,
                    None,
                    "ERROR rebuilt refcount structure is still broken".into(),
                );
            }
            fresh_leaks = r.leaks;
        }
        if rep.corruptions < old.corruptions {
            rep.corruptions_fixed += old.corruptions - rep.corruptions;
        }
        if rep.leaks < old.leaks {
            rep.leaks_fixed += old.leaks - rep.leaks;
        }
        rep.leaks += fresh_leaks;
    } else if mode.0 != 0 {
        if rebuild {
            error(
                rep,
                FindingKind::CheckError,
                None,
                "ERROR need to rebuild refcount structures".into(),
            );
            return Err(f.context(BlockError::io(
                "check",
                "need to rebuild refcount structures",
            )));
        }
        if rep.leaks != 0 || rep.corruptions != 0 {
            // Compare again, repairing, from the counts before the first
            // comparison (its findings stay).
            let findings = std::mem::take(&mut rep.findings);
            *rep = CheckReport {
                findings,
                ..pre_compare
            };
            highest = compare_refcounts(state, f, &refs, mode, &mut rebuild, rep);
        }
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::refcount_alloc::refcount_set;
    use crate::engine::table_cache::{Table, TableCache};
    use std::sync::{Arc, Mutex};

    /// A toy refcounted image of 512-byte clusters: one refcount block at
    /// cluster 1 (16-bit entries) and a fixed list of references.
    struct Toy {
        cache: TableCache,
        references: Vec<u64>,
        rebuilt: Mutex<u32>,
    }

    impl Toy {
        /// `stored[k]` is cluster k's stored refcount.
        fn new(stored: &[u64], references: &[u64]) -> (Toy, AllocState) {
            let mut block = vec![0u8; 512];
            for (k, &v) in stored.iter().enumerate() {
                refcount_set(&mut block, k as u64, 4, v);
            }
            let cache = TableCache::new(1 << 20);
            cache.insert(512, block, false);
            let state = AllocState {
                reftable: vec![512],
                ..AllocState::default()
            };
            let toy = Toy {
                cache,
                references: references.to_vec(),
                rebuilt: Mutex::new(0),
            };
            (toy, state)
        }
    }

    impl RefcountStore for Toy {
        fn geometry(&self) -> RefcountGeometry {
            RefcountGeometry {
                cluster_bits: 9,
                refcount_order: 4,
                max_host_offset: 1 << 30,
                max_reftable_bytes: 512,
                offset_mask: !511,
            }
        }
        fn refblock(&self, offset: u64) -> Result<Arc<Table>> {
            self.cache
                .get(offset)
                .ok_or_else(|| BlockError::io("read", "no block"))
        }
        fn new_refblock(&self, offset: u64) -> Arc<Table> {
            self.cache.insert(offset, vec![0; 512], true)
        }
        fn may_hold_refblock(&self, _offset: u64, _len: u64) -> bool {
            true
        }
        fn move_reftable(&self, offset: u64, clusters: u64) -> (u64, u64) {
            (offset, clusters)
        }
        fn structure_changed(&self, _state: &AllocState) {}
        fn cluster_freed(&self, _offset: u64) {}
        fn discard(&self, _offset: u64, _len: u64) {}
        fn corruption(&self, offset: u64, msg: &str) -> BlockError {
            BlockError::corrupt("refcount", msg).at(offset)
        }
    }

    impl RefcountCheck for Toy {
        fn count_references(
            &self,
            _state: &mut AllocState,
            _mode: CheckMode,
            rep: &mut CheckReport,
            stats: bool,
        ) -> Result<(ComputedRefcounts, bool)> {
            let mut refs = ComputedRefcounts::new(8 * 512, 9, 65535);
            let mut st = ClusterStats::default();
            for &k in &self.references {
                refs.inc(k * 512, 512, rep);
                if stats {
                    st.data(rep, k * 512, 512);
                }
            }
            Ok((refs, false))
        }
        fn rebuild_structure(
            &self,
            state: &mut AllocState,
            refs: &mut ComputedRefcounts,
        ) -> Result<()> {
            *self.rebuilt.lock().unwrap() += 1;
            // Rewrite the one block from the references.
            let tab = self.refblock(512)?;
            let mut d = tab.write();
            for k in 0..refs.len() {
                refcount_set(&mut d, k, 4, refs.get(k));
            }
            state.reftable = vec![512];
            Ok(())
        }
    }

    fn messages(rep: &CheckReport) -> Vec<&str> {
        rep.findings.iter().map(|f| f.message.as_str()).collect()
    }

    #[test]
    fn leaks_are_reported_then_repaired() {
        // Cluster 3 is leaked (refcount 1, no reference).
        let (toy, mut st) = Toy::new(&[1, 1, 1, 1], &[0, 1, 2]);
        let mut rep = CheckReport::default();
        let highest = check_refcounts(&toy, &mut st, CheckMode::REPORT, &mut rep).unwrap();
        assert_eq!((highest, rep.leaks, rep.leaks_fixed), (3, 1, 0));
        assert_eq!(messages(&rep), ["Leaked cluster 3 refcount=1 reference=0"]);
        assert_eq!(rep.allocated_clusters, Some(3));
        let mut rep = CheckReport::default();
        check_refcounts(&toy, &mut st, CheckMode::FIX_LEAKS, &mut rep).unwrap();
        assert_eq!((rep.leaks, rep.leaks_fixed), (0, 1));
        assert_eq!(
            messages(&rep),
            [
                "Leaked cluster 3 refcount=1 reference=0",
                "Repairing cluster 3 refcount=1 reference=0"
            ]
        );
        assert_eq!(st.refcount(&toy, 3).unwrap(), 0);
    }

    #[test]
    fn a_missing_refcount_needs_a_rebuild() {
        // Cluster 2 is referenced but has refcount 0.
        let (toy, mut st) = Toy::new(&[1, 1, 0], &[0, 1, 2]);
        let mut rep = CheckReport::default();
        let e = check_refcounts(&toy, &mut st, CheckMode::FIX_LEAKS, &mut rep).unwrap_err();
        assert_eq!(e.message, "need to rebuild refcount structures");
        assert_eq!(
            messages(&rep).last(),
            Some(&"ERROR need to rebuild refcount structures")
        );
        let mut rep = CheckReport::default();
        check_refcounts(&toy, &mut st, CheckMode::FIX_ERRORS, &mut rep).unwrap();
        assert_eq!(*toy.rebuilt.lock().unwrap(), 1);
        assert_eq!((rep.corruptions, rep.corruptions_fixed), (0, 1));
        assert_eq!(messages(&rep)[1], "Rebuilding refcount structure");
        assert_eq!(st.refcount(&toy, 2).unwrap(), 1);
    }

    #[test]
    fn refcount_blocks_are_checked() {
        // 1 KiB clusters, table entries with 512-byte aligned offsets, a
        // file of 8 clusters.
        let g = RefcountGeometry {
            cluster_bits: 10,
            refcount_order: 4,
            max_host_offset: 1 << 30,
            max_reftable_bytes: 1024,
            offset_mask: !511,
        };
        // Entry 0: a reserved bit; 1: unaligned; 2: none; 3: past the
        // end; 4: fine; 5: the same block again.
        let st = AllocState {
            reftable: vec![1024 | 1, 1024 + 512, 0, 20 * 1024, 2048, 2048],
            ..AllocState::default()
        };
        let mut rep = CheckReport::default();
        let mut refs = ComputedRefcounts::new(8 * 1024, 10, 65535);
        let mut grow = |_| -> Result<()> { panic!("no repair asked") };
        assert!(check_refcount_blocks(
            &st,
            &g,
            &mut refs,
            CheckMode::REPORT,
            &mut rep,
            &mut grow
        ));
        assert_eq!(
            messages(&rep),
            [
                "ERROR refcount table entry 0 has reserved bits set",
                "ERROR refcount block 1 is not cluster aligned; refcount table entry corrupted",
                "ERROR refcount block 3 is outside image",
                "ERROR refcount block 5 refcount=2",
            ]
        );
        assert_eq!(rep.corruptions, 4);
        // Repaired: the file grows over the block past the end.
        let mut rep = CheckReport::default();
        let mut refs = ComputedRefcounts::new(8 * 1024, 10, 65535);
        let mut grown = Vec::new();
        let mut grow = |len| {
            grown.push(len);
            Ok(())
        };
        check_refcount_blocks(
            &st,
            &g,
            &mut refs,
            CheckMode::FIX_ERRORS,
            &mut rep,
            &mut grow,
        );
        assert_eq!(grown, [21 * 1024]);
        assert_eq!((rep.corruptions, rep.corruptions_fixed), (3, 1));
        assert_eq!((refs.file_len, refs.get(20)), (21 * 1024, 1));
        assert_eq!(
            messages(&rep)[2],
            "Repairing refcount block 3 is outside image"
        );
    }

    #[test]
    fn findings_count_what_they_record() {
        let mut rep = CheckReport::default();
        rep.corruption("ERROR bad entry".into());
        rep.check_error("could not read".into());
        assert!(!rep.repairable(false, "entry 1 is incomplete".into()));
        assert!(rep.repairable(true, "entry 2 is incomplete".into()));
        assert_eq!((rep.corruptions, rep.check_errors), (2, 1));
        assert_eq!(
            messages(&rep),
            [
                "ERROR bad entry",
                "ERROR could not read",
                "ERROR entry 1 is incomplete",
                "Repairing entry 2 is incomplete"
            ]
        );
        assert_eq!(rep.findings[3].kind, FindingKind::Repair);
        assert_eq!(rep.findings[1].kind, FindingKind::CheckError);
    }

    #[test]
    fn cluster_stats_count_fragments() {
        let mut rep = CheckReport::default();
        let mut st = ClusterStats::default();
        st.data(&mut rep, 0x1000, 0x1000);
        st.data(&mut rep, 0x2000, 0x1000);
        st.data(&mut rep, 0x8000, 0x1000);
        st.compressed(&mut rep);
        assert_eq!(rep.allocated_clusters, Some(4));
        assert_eq!(rep.fragmented_clusters, Some(2));
        assert_eq!(rep.compressed_clusters, Some(1));
    }

    #[test]
    fn references_past_the_end_are_refused_or_sparse() {
        let mut rep = CheckReport::default();
        // 4 clusters of 512 bytes.
        let mut r = ComputedRefcounts::new(2048, 9, 3);
        r.inc(0, 1024, &mut rep);
        r.inc(512, 1, &mut rep);
        assert_eq!((r.get(0), r.get(1), r.get(2)), (1, 2, 0));
        // Less than a cluster past the end: counted (sparse).
        r.inc(2048, 100, &mut rep);
        assert_eq!(r.get(4), 1);
        assert_eq!(r.len(), 5);
        assert_eq!(r.indices(), [0, 1, 2, 3, 4]);
        assert_eq!(rep.corruptions, 0);
        // A cluster or more past it: an error, not counted.
        r.inc(1 << 40, 512, &mut rep);
        assert_eq!(rep.corruptions, 1);
        assert!(rep.findings[0]
            .message
            .starts_with("ERROR: counting reference"));
        assert_eq!(rep.findings[0].kind, FindingKind::Corruption);
        assert_eq!(rep.findings[0].offset, Some(1 << 40));
        // Overflow of the refcount width.
        r.inc(1024, 1, &mut rep);
        r.inc(1024, 1, &mut rep);
        r.inc(1024, 1, &mut rep);
        r.inc(1024, 1, &mut rep);
        assert_eq!(r.get(2), 3);
        assert_eq!(rep.corruptions, 2);
        assert_eq!(
            rep.findings[1].message,
            "ERROR: overflow cluster offset=0x400"
        );
    }

    #[test]
    fn error_prefix() {
        let mut rep = CheckReport::default();
        error(&mut rep, FindingKind::CheckError, None, "x failed".into());
        error(&mut rep, FindingKind::Corruption, None, "ERROR y".into());
        note(&mut rep, FindingKind::Leak, Some(5), "Leaked z".into());
        let m: Vec<&str> = rep.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(m, ["ERROR x failed", "ERROR y", "Leaked z"]);
    }
}
