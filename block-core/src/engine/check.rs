//! Check support for refcounted formats: the references computed from
//! the metadata ([`ComputedRefcounts`], QEMU's in-memory refcount table)
//! and their comparison with the stored refcounts
//! ([`compare_refcounts`]), repairing leaks and wrong counts through the
//! refcount allocator. Findings are recorded in the
//! [`CheckReport`](crate::info::CheckReport) as structured data, with the
//! lines qemu-img prints.

use crate::engine::refcount_alloc::{AllocState, RefcountStore};
use crate::info::{CheckReport, FindingKind};
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

#[cfg(test)]
mod tests {
    use super::*;

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
