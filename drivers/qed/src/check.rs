//! `blk check`, QEMU's qed check: every L1 entry must name an L2 table
//! inside the file, every L2 entry a cluster inside the file (offsets
//! aligned, after the header area), no cluster named twice; clusters of
//! the file no table names are leaks (what a crash between a cluster's
//! data write and its L2 entry leaves at the end of the file).
//!
//! Repair (`-r all`) clears invalid entries (their clusters then read from
//! the backing file, as QEMU repairs them); leaks are reported only, as
//! QEMU does (an append-only format loses nothing by them). A check that
//! leaves no corruption clears the need-check flag. The same check runs
//! with repair when a writable open finds the flag set.

use crate::format::{clear_need_check, QedFormat};
use crate::header::{ENDIAN, ZERO_CLUSTER};
use crate::tables::Metadata;
use block_core::control::CheckControl;
use block_core::engine::check::note;
use block_core::{BlockNodeExt, CheckMode, CheckReport, FindingKind, Result};

/// An entry to clear: L1 index, or (table offset, L2 index).
enum Fix {
    L1(usize),
    L2(u64, usize),
}

/// What the walk of the tables found.
struct Walk {
    /// Clusters the tables use (L2 tables and data), as cluster numbers.
    used: Vec<u64>,
    fixes: Vec<Fix>,
}

impl QedFormat {
    /// Walks the tables, recording corruptions in `rep`.
    fn walk(&self, m: &Metadata, rep: &mut CheckReport) -> Result<Walk> {
        let h = &m.header;
        let cs = h.cluster();
        let per_table = h.table_size as u64;
        let mut w = Walk {
            used: Vec::new(),
            fixes: Vec::new(),
        };
        let (mut allocated, mut fragmented) = (0, 0);
        let mut tables = std::collections::HashSet::new();
        for (i1, &t) in m.l1.iter().enumerate() {
            if t == 0 {
                continue;
            }
            if !m.valid_table(t) {
                rep.corruptions += 1;
                note(
                    rep,
                    FindingKind::Corruption,
                    Some(t),
                    format!("L1 entry {i1} names an invalid L2 table offset {t:#x}"),
                );
                w.fixes.push(Fix::L1(i1));
                continue;
            }
            w.used.extend((0..per_table).map(|k| t / cs + k));
            if !tables.insert(t) {
                // Named twice: counted when the used clusters are sorted;
                // its entries were checked the first time.
                continue;
            }
            let table = self.l2_table(m, t)?;
            let bytes = table.read();
            let mut last = 0;
            for i2 in 0..h.entries() as usize {
                let e = ENDIAN.u64(&bytes, i2 * 8);
                if e == 0 || e == ZERO_CLUSTER {
                    continue;
                }
                if !m.valid_cluster(e) {
                    rep.corruptions += 1;
                    note(
                        rep,
                        FindingKind::Corruption,
                        Some(e),
                        format!("L2 table {t:#x} entry {i2} names an invalid offset {e:#x}"),
                    );
                    w.fixes.push(Fix::L2(t, i2));
                    continue;
                }
                allocated += 1;
                if last != 0 && last + cs != e {
                    fragmented += 1;
                }
                last = e;
                w.used.push(e / cs);
            }
        }
        rep.allocated_clusters = Some(allocated);
        rep.fragmented_clusters = Some(fragmented);
        Ok(w)
    }

    /// Counts (and notes) the clusters between the header area and the end
    /// of the file that neither the L1 table nor `used` covers; reports
    /// clusters named twice as corruptions.
    fn leaks(&self, m: &Metadata, mut used: Vec<u64>, rep: &mut CheckReport) {
        let h = &m.header;
        let cs = h.cluster();
        let l1 = h.l1_table_offset / cs;
        used.extend(l1..l1 + u64::from(h.table_size));
        used.sort_unstable();
        let before = used.len();
        used.dedup();
        let dups = (before - used.len()) as u64;
        if dups > 0 {
            rep.corruptions += dups;
            note(
                rep,
                FindingKind::Corruption,
                None,
                format!("{dups} cluster(s) named by more than one table entry"),
            );
        }
        let (start, end) = (h.data_start() / cs, m.alloc.end() / cs);
        let mut pos = start;
        for &u in used.iter().chain(std::iter::once(&end)) {
            let u = u.min(end);
            if u > pos {
                let n = u - pos;
                rep.leaks += n;
                note(
                    rep,
                    FindingKind::Leak,
                    Some(pos * cs),
                    format!("Leaked: {n} cluster(s) at offset {:#x}", pos * cs),
                );
            }
            pos = pos.max(u + 1);
        }
    }

    /// Clears the entries of `fixes` on disk and in memory.
    fn apply(&self, m: &mut Metadata, fixes: &[Fix], rep: &mut CheckReport) -> Result<()> {
        for f in fixes {
            match *f {
                Fix::L1(i1) => {
                    let at = m.header.l1_table_offset + i1 as u64 * 8;
                    self.file.write_at(at, &[0u8; 8])?;
                    m.l1[i1] = 0;
                }
                Fix::L2(t, i2) => self.update_l2(m, t, i2, &[0])?,
            }
            rep.corruptions -= 1;
            rep.corruptions_fixed += 1;
        }
        if !fixes.is_empty() {
            note(
                rep,
                FindingKind::Repair,
                None,
                format!("Repaired {} invalid table entries", fixes.len()),
            );
        }
        self.file.flush()
    }

    /// The check, with or without repair, under the exclusive metadata lock.
    pub(crate) fn run_check(&self, fix: bool) -> Result<CheckReport> {
        let mut m = self.meta_mut();
        let mut rep = CheckReport {
            total_clusters: Some(m.header.clusters()),
            ..CheckReport::default()
        };
        let w = self.walk(&m, &mut rep)?;
        if fix {
            self.apply(&mut m, &w.fixes, &mut rep)?;
        }
        self.leaks(&m, w.used, &mut rep);
        if fix && rep.corruptions == 0 {
            clear_need_check(self.file.as_ref(), &mut m)?;
        }
        Ok(rep)
    }
}

impl CheckControl for QedFormat {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        self.run_check(mode.contains(CheckMode::FIX_ERRORS))
    }
}
