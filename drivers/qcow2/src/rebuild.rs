//! Rebuilding the refcount structure from the computed references, as
//! `qemu-img check -r all` does when a refcount block is unusable or a
//! referenced cluster has refcount 0 (its block may be missing).
//!
//! Crash-safe order (docs/qcow2.md, "Rebuilding the refcount structure"):
//! the new refcount blocks and table go only into clusters that nothing
//! references (the computed references are the allocator; the on-disk
//! refcounts are what is broken), so the old structure stays intact; they
//! are written and flushed, then the header's refcount table fields switch
//! to the new table and are flushed. Until that write the image is the old
//! one; after it, the old table and blocks are leaks that the leak-repair
//! pass that follows frees.

use crate::check::Refs;
use crate::header::{put_u32, put_u64, MAX_REFTABLE_BYTES};
use crate::node::{Qcow2Node, WState};
use crate::overlap::kind;
use crate::refcount::rc_set;
use block_core::{BlockError, Result};

/// The on-disk refcount table being built.
struct NewTable {
    entries: Vec<u64>,
    /// Clusters the old structure names (sorted): never written, so that
    /// it stays intact until the header switches, even where it names a
    /// cluster the references do not count (an entry with reserved bits,
    /// unaligned, or past the end of the file). QEMU's overlap check
    /// fails the rebuild there; avoiding them never changes a layout
    /// QEMU produces.
    avoid: Vec<u64>,
}

impl Refs {
    /// Takes the first run of `n` clusters no reference uses, from
    /// `*first_free` on (past the end of the counted clusters when the
    /// gaps are too small); counts them and moves `*first_free` to the
    /// first gap seen. As QEMU's alloc_clusters_imrt.
    /// Clusters in `avoid` (sorted) count as used.
    fn alloc(&mut self, n: u64, first_free: &mut u64, avoid: &[u64]) -> u64 {
        let len = self.len().max(avoid.last().map_or(0, |&k| k + 1));
        let mut c = *first_free;
        let mut run = 0u64;
        let mut first_gap = true;
        while c < len && run < n {
            if self.get(c) == 0 && avoid.binary_search(&c).is_err() {
                run += 1;
                if first_gap {
                    *first_free = c;
                    first_gap = false;
                }
            } else {
                run = 0;
            }
            c += 1;
        }
        // Past `len` every cluster is free: the run completes there.
        let start = c - run;
        for k in start..start + n {
            self.set(k, 1);
        }
        start
    }
}

impl Qcow2Node {
    /// Writes the refcount blocks for the referenced clusters in
    /// `[first, end)`, allocating the missing ones from `refs`. Returns
    /// whether the table had to grow.
    fn rebuild_write_blocks(
        &self,
        refs: &mut Refs,
        table: &mut NewTable,
        first: u64,
        mut end: u64,
    ) -> Result<bool> {
        let g = self.geo();
        let cs = g.cs();
        let e = g.rb_entries();
        let mut first_free = 0u64;
        let mut grown = false;
        let mut c = first;
        while c < end {
            if refs.get(c) == 0 {
                c += 1;
                continue;
            }
            let t = c / e;
            let start = t * e;
            let off = match table.entries.get(t as usize) {
                Some(&o) if o != 0 => o,
                _ => {
                    // A block already written must not change under us.
                    first_free = first_free.max(start);
                    let k = refs.alloc(1, &mut first_free, &table.avoid);
                    if k >= end {
                        // The block counting this one must be written too.
                        end = k + 1;
                    }
                    if t as usize >= table.entries.len() {
                        let n = ((t + 1) * 8).div_ceil(cs) * cs / 8;
                        if n * 8 > MAX_REFTABLE_BYTES {
                            return Err(BlockError::invalid(
                                "check",
                                "ERROR allocating reftable: the refcount table would exceed its size limit",
                            ));
                        }
                        table.entries.resize(n as usize, 0);
                        grown = true;
                    }
                    table.entries[t as usize] = k * cs;
                    k * cs
                }
            };
            let mut block = vec![0u8; cs as usize];
            for j in 0..e {
                let v = refs.get(start + j);
                if v != 0 {
                    rc_set(&mut block, j, g.refcount_order, v);
                }
            }
            self.write_meta(off, &block, kind::REFBLOCK | kind::REFTABLE)
                .map_err(|e| BlockError::io("check", format!("ERROR writing refblock: {e}")))?;
            c = start + e;
        }
        Ok(grown)
    }

    /// The clusters of the current refcount table and of every block it
    /// names (whatever the entry's flags), sorted.
    fn old_structure_clusters(&self, ws: &WState) -> Vec<u64> {
        let g = self.geo();
        let cs = g.cs();
        let (rt_off, rt_clusters) = {
            let m = self.meta_read();
            (
                m.h.refcount_table_offset,
                u64::from(m.h.refcount_table_clusters),
            )
        };
        let mut v: Vec<u64> = (0..rt_clusters).map(|i| rt_off / cs + i).collect();
        for &e in &ws.reftable {
            let off = e & crate::mapping::REFT_OFFSET_MASK;
            if off != 0 {
                v.push(off / cs);
                if off % cs != 0 {
                    v.push(off / cs + 1);
                }
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Builds a new refcount structure from `refs` (which then counts it
    /// too), writes it and switches the header to it. The old structure is
    /// left as leaks.
    pub(crate) fn rebuild_refcount_structure(
        &self,
        ws: &mut WState,
        refs: &mut Refs,
    ) -> Result<()> {
        let cs = self.geo().cs();
        // Drop the cached blocks of the old structure (written back
        // before the check began).
        self.rc.clear();
        let mut table = NewTable {
            entries: Vec::new(),
            avoid: self.old_structure_clusters(ws),
        };
        let len = refs.len();
        self.rebuild_write_blocks(refs, &mut table, 0, len)?;
        let (rt_off, rt_clusters) = loop {
            let n = (table.entries.len() as u64 * 8).div_ceil(cs);
            let mut first_free = 0;
            let k = refs.alloc(n, &mut first_free, &table.avoid);
            // The table's clusters need counting in their blocks.
            if !self.rebuild_write_blocks(refs, &mut table, k, k + n)? {
                break (k * cs, n);
            }
            // The table grew: place it again (the earlier place stays
            // counted and is freed as a leak).
        };
        let mut buf = vec![0u8; (rt_clusters * cs) as usize];
        for (i, &o) in table.entries.iter().enumerate() {
            put_u64(&mut buf, i * 8, o);
        }
        self.write_meta(rt_off, &buf, kind::REFBLOCK | kind::REFTABLE)
            .map_err(|e| BlockError::io("check", format!("ERROR writing reftable: {e}")))?;
        self.file.flush()?;
        // The commit point: the header names the new table.
        let mut hdr = [0u8; 12];
        put_u64(&mut hdr, 0, rt_off);
        put_u32(&mut hdr, 8, rt_clusters as u32);
        self.write_meta(48, &hdr, kind::HEADER)
            .map_err(|e| BlockError::io("check", format!("ERROR setting reftable: {e}")))?;
        self.file.flush()?;
        {
            let mut m = self.meta_write();
            m.h.refcount_table_offset = rt_off;
            m.h.refcount_table_clusters = rt_clusters as u32;
            ws.reftable = table.entries;
            ws.reftable.resize((rt_clusters * cs / 8) as usize, 0);
            ws.reftable_dirty = false;
            ws.free_hint = 0;
            self.rc.clear();
            self.refresh_overlap(&m, ws);
        }
        log::info!(
            "qcow2 check: rebuilt the refcount structure: table at {rt_off:#x} ({rt_clusters} clusters)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{assert_clean, open, qemu_img, qemu_io, raw_of, Scratch};
    use block_core::{CheckControl, CheckMode, CheckReport, OpenFlags};
    use std::collections::BTreeMap;

    /// The rebuild writes only where nothing is referenced: until the
    /// header switches, the old table and blocks are intact on disk (a
    /// crash before the switch leaves the old, consistent image); after
    /// it the image checks clean once the leaks are repaired.
    #[test]
    fn rebuild_leaves_the_old_structure_intact_until_the_header_switch() {
        let s = Scratch::new();
        let img = s.path("r.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4k",
            &img,
            "8M",
        ]);
        qemu_io(&img, &["write -P 5 0 1M", "write -P 6 5M 300k"]);
        let want = raw_of(&img, "qcow2");
        let before = std::fs::read(&img).unwrap();
        let (old_rt, old_blocks) = {
            let n = open(&img, OpenFlags::CHECK);
            let ws = n.wlock();
            let m = n.meta_read();
            let blocks: Vec<u64> = ws.reftable.iter().copied().filter(|&o| o != 0).collect();
            (m.h.refcount_table_offset, blocks)
        };
        let n = open(&img, OpenFlags::CHECK);
        {
            let mut ws = n.wlock();
            let mut rep = CheckReport::default();
            let (mut refs, _) = n.calculate_refs_for_test(&mut ws, &mut rep);
            n.rebuild_refcount_structure(&mut ws, &mut refs).unwrap();
            let m = n.meta_read();
            assert_ne!(m.h.refcount_table_offset, old_rt);
        }
        let after = std::fs::read(&img).unwrap();
        let cs = 4096usize;
        for &o in old_blocks.iter().chain([old_rt].iter()) {
            let o = o as usize;
            assert_eq!(
                before[o..o + cs],
                after[o..o + cs],
                "old structure at {o:#x} changed"
            );
        }
        // Only the header's refcount table fields changed in cluster 0.
        assert_eq!(before[..48], after[..48]);
        assert_eq!(before[60..cs], after[60..cs]);
        let r = n.check(CheckMode::FIX_LEAKS).unwrap();
        assert_eq!((r.corruptions, r.leaks, r.check_errors), (0, 0, 0), "{r:?}");
        drop(n);
        assert_clean(&img);
        assert_eq!(raw_of(&img, "qcow2"), want);
    }

    fn refs(used: &[u64], len: u64) -> Refs {
        let mut r = Refs {
            dense: vec![0; len as usize],
            sparse: BTreeMap::new(),
            cs_bits: 16,
            max: 65535,
            file_len: len << 16,
        };
        for &k in used {
            r.set(k, 1);
        }
        r
    }

    #[test]
    fn alloc_takes_gaps_then_appends() {
        let mut r = refs(&[0, 1, 3, 4], 5);
        let mut ff = 0;
        assert_eq!(r.alloc(1, &mut ff, &[]), 2);
        assert_eq!(ff, 2);
        // No gap of two: appended after the end.
        let mut ff = 0;
        assert_eq!(r.alloc(2, &mut ff, &[]), 5);
        assert_eq!(r.len(), 7);
        assert_eq!(r.get(6), 1);
        // A gap at the end is extended.
        let mut r = refs(&[0, 1], 3);
        let mut ff = 0;
        assert_eq!(r.alloc(2, &mut ff, &[]), 2);
        // Avoided clusters count as used, also past the end.
        let mut r = refs(&[0, 1], 3);
        let mut ff = 0;
        assert_eq!(r.alloc(1, &mut ff, &[2, 3]), 4);
    }
}
