//! Rebuilding a refcount structure from the computed references, as
//! `qemu-img check -r all` does when a refcount block is unusable or a
//! referenced cluster has refcount 0 (its block may be missing).
//!
//! Crash-safe order (docs/engine-metadata.md): the new refcount blocks
//! and table go only into clusters that nothing references (the computed
//! references are the allocator; the stored refcounts are what is
//! broken) and that the old structure does not use, so the old structure
//! stays intact; [`rebuild_refcount_structure`] writes them, and the
//! format then flushes and switches its header to the new table (the
//! commit point). After the switch the old table and blocks are leaks,
//! which a leak repair frees.
//!
//! [`write_refcount_structure`] is the other way to a new structure, for
//! a refcount width change (`amend refcount_bits`): every refcount known,
//! the new blocks and table go past everything in use, describing
//! themselves. [`AllocState::structure_clusters`] lists the clusters an
//! old structure occupies, which both must leave alone.

use crate::engine::check::ComputedRefcounts;
use crate::engine::codec::{u64_table_bytes, Endian};
use crate::engine::refcount_alloc::{
    refcount_set, self_describing_layout, AllocState, RefcountGeometry,
};
use crate::error::{BlockError, ErrorKind, Result};

impl ComputedRefcounts {
    /// Takes the first run of `n` clusters no reference uses, from
    /// `*first_free` on (past the end of the counted clusters when the
    /// gaps are too small); counts them and moves `*first_free` to the
    /// first gap seen. As QEMU's alloc_clusters_imrt. Clusters in `avoid`
    /// (sorted) count as used.
    pub fn alloc(&mut self, n: u64, first_free: &mut u64, avoid: &[u64]) -> u64 {
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

/// The shape of the structure to build.
#[derive(Debug, Clone, Copy)]
pub struct RebuildGeometry {
    /// log2 of the refcount width in bits.
    pub refcount_order: u32,
    /// Largest refcount table in bytes.
    pub max_reftable_bytes: u64,
    /// Byte order of the refcount table entries.
    pub endian: Endian,
}

/// A written refcount structure, not yet named by the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltStructure {
    /// The refcount table entries (padded to whole clusters).
    pub reftable: Vec<u64>,
    /// Where the table is.
    pub table_offset: u64,
    /// Its length in clusters.
    pub table_clusters: u64,
}

struct Builder<'a> {
    g: RebuildGeometry,
    cluster_bits: u32,
    entries: Vec<u64>,
    /// Clusters the old structure names (sorted): never written.
    avoid: &'a [u64],
}

impl Builder<'_> {
    /// Writes the refcount blocks for the referenced clusters in
    /// `[first, end)`, allocating the missing ones from `refs`. Returns
    /// whether the table had to grow.
    fn write_blocks(
        &mut self,
        refs: &mut ComputedRefcounts,
        first: u64,
        mut end: u64,
        write: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let cs = 1u64 << self.cluster_bits;
        let e = (cs * 8) >> self.g.refcount_order;
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
            let off = match self.entries.get(t as usize) {
                Some(&o) if o != 0 => o,
                _ => {
                    // A block already written must not change under us.
                    first_free = first_free.max(start);
                    let k = refs.alloc(1, &mut first_free, self.avoid);
                    if k >= end {
                        // The block counting this one must be written too.
                        end = k + 1;
                    }
                    if t as usize >= self.entries.len() {
                        let n = ((t + 1) * 8).div_ceil(cs) * cs / 8;
                        if n * 8 > self.g.max_reftable_bytes {
                            return Err(BlockError::invalid(
                                "check",
                                "ERROR allocating reftable: the refcount table would exceed its size limit",
                            ));
                        }
                        self.entries.resize(n as usize, 0);
                        grown = true;
                    }
                    self.entries[t as usize] = k * cs;
                    k * cs
                }
            };
            let mut block = vec![0u8; cs as usize];
            for j in 0..e {
                let v = refs.get(start + j);
                if v != 0 {
                    refcount_set(&mut block, j, self.g.refcount_order, v);
                }
            }
            write(off, &block)
                .map_err(|e| BlockError::io("check", format!("ERROR writing refblock: {e}")))?;
            c = start + e;
        }
        Ok(grown)
    }
}

/// Builds a new refcount structure for `refs` (which then counts it too)
/// in clusters nothing references and `avoid` (sorted: the old
/// structure's clusters) does not name, writing its blocks and its table
/// with `write(offset, bytes)`. The caller flushes and switches its
/// header to the result.
pub fn rebuild_refcount_structure(
    refs: &mut ComputedRefcounts,
    g: RebuildGeometry,
    avoid: &[u64],
    write: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<RebuiltStructure> {
    let cs = 1u64 << refs.cluster_bits;
    let mut b = Builder {
        g,
        cluster_bits: refs.cluster_bits,
        entries: Vec::new(),
        avoid,
    };
    let len = refs.len();
    b.write_blocks(refs, 0, len, write)?;
    let (table_offset, table_clusters) = loop {
        let n = (b.entries.len() as u64 * 8).div_ceil(cs);
        let mut first_free = 0;
        let k = refs.alloc(n, &mut first_free, avoid);
        // The table's clusters need counting in their blocks.
        if !b.write_blocks(refs, k, k + n, write)? {
            break (k * cs, n);
        }
        // The table grew: place it again (the earlier place stays
        // counted and is freed as a leak).
    };
    let mut reftable = b.entries;
    reftable.resize((table_clusters * cs / 8) as usize, 0);
    write(table_offset, &u64_table_bytes(&reftable, g.endian))
        .map_err(|e| BlockError::io("check", format!("ERROR writing reftable: {e}")))?;
    Ok(RebuiltStructure {
        reftable,
        table_offset,
        table_clusters,
    })
}

impl AllocState {
    /// The clusters of the refcount table at `table_offset`
    /// (`table_clusters` long) and of every block it names (whatever the
    /// entry's flags; an unaligned block spans two clusters), sorted and
    /// deduplicated.
    pub fn structure_clusters(
        &self,
        g: &RefcountGeometry,
        table_offset: u64,
        table_clusters: u64,
    ) -> Vec<u64> {
        let cs = g.cluster_size();
        let mut v: Vec<u64> = (0..table_clusters).map(|i| table_offset / cs + i).collect();
        for off in self.reftable.iter().map(|e| e & g.offset_mask) {
            if off != 0 {
                v.push(off / cs);
                if !off.is_multiple_of(cs) {
                    v.push(off / cs + 1);
                }
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Writes a complete refcount structure of width 2^`g.refcount_order`
/// bits for `refcounts` (index: cluster; clusters of `1 << cluster_bits`
/// bytes) from cluster `start` on (past everything in use): the blocks,
/// then the table, both counted in `refcounts` (which grows to cover
/// them), written with `write(offset, bytes)`. The caller flushes and
/// switches its header to the result. A table above the size limit is
/// refused (no space, for operation `op`) before anything is written.
pub fn write_refcount_structure(
    op: &'static str,
    refcounts: &mut Vec<u64>,
    start: u64,
    cluster_bits: u32,
    g: RebuildGeometry,
    write: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<RebuiltStructure> {
    let cs = 1u64 << cluster_bits;
    let e = (cs * 8) >> g.refcount_order;
    let (blocks, table_clusters) = self_describing_layout(start, e, cs);
    if table_clusters * cs > g.max_reftable_bytes {
        let msg = "the new refcount table would exceed its size limit";
        return Err(BlockError::new(ErrorKind::NoSpace, op, msg));
    }
    let total = start + blocks + table_clusters;
    refcounts.resize(total as usize, 0);
    refcounts[start as usize..].fill(1);
    let mut reftable = vec![0u64; (table_clusters * cs / 8) as usize];
    for (b, entry) in reftable.iter_mut().enumerate().take(blocks as usize) {
        let mut block = vec![0u8; cs as usize];
        let first = b as u64 * e;
        for (i, &v) in refcounts
            .iter()
            .skip(first as usize)
            .take(e as usize)
            .enumerate()
        {
            refcount_set(&mut block, i as u64, g.refcount_order, v);
        }
        *entry = (start + b as u64) * cs;
        write(*entry, &block)?;
    }
    let table_offset = (start + blocks) * cs;
    write(table_offset, &u64_table_bytes(&reftable, g.endian))?;
    Ok(RebuiltStructure {
        reftable,
        table_offset,
        table_clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::refcount_alloc::refcount_get;
    use crate::info::CheckReport;
    use std::collections::BTreeMap;

    fn refs(used: &[u64], len: u64) -> ComputedRefcounts {
        let mut r = ComputedRefcounts::new(len << 16, 16, 65535);
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

    /// The rebuilt structure counts every reference and itself, avoids
    /// the old structure and writes only unreferenced clusters.
    #[test]
    fn rebuilt_structure_describes_itself() {
        // 512-byte clusters, 16-bit refcounts: 256 per block.
        let mut r = ComputedRefcounts::new(600 * 512, 9, 65535);
        let mut rep = CheckReport::default();
        r.inc(0, 512, &mut rep);
        r.inc(10 * 512, 300 * 512, &mut rep); // clusters 10..310
        r.inc(5 * 512, 512, &mut rep);
        r.inc(5 * 512, 512, &mut rep); // shared: refcount 2
        let before = r.clone();
        let avoid = [1, 2, 3];
        let mut disk: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let g = RebuildGeometry {
            refcount_order: 4,
            max_reftable_bytes: 1 << 20,
            endian: Endian::Big,
        };
        let s = rebuild_refcount_structure(&mut r, g, &avoid, &mut |off, d| {
            disk.insert(off, d.to_vec());
            Ok(())
        })
        .unwrap();
        for &off in disk.keys() {
            let c = off / 512;
            assert_eq!(before.get(c), 0, "wrote referenced cluster {c}");
            assert!(!avoid.contains(&c), "wrote the old structure at {c}");
        }
        assert_eq!(s.table_clusters, 1);
        let table = &disk[&s.table_offset];
        // Every counted cluster has its refcount in the block the table names.
        for c in 0..r.len() {
            let boff = Endian::Big.u64(table, (c / 256 * 8) as usize);
            let want = r.get(c);
            if want == 0 && boff == 0 {
                continue;
            }
            let got = refcount_get(&disk[&boff], c % 256, 4);
            assert_eq!(got, want, "cluster {c}");
        }
        assert_eq!(r.get(5), 2);
    }

    /// A structure of a new width counts everything and itself; the old
    /// structure's clusters are listed for it to avoid.
    #[test]
    fn a_structure_of_another_width_describes_itself() {
        // 1 KiB clusters; table entries hold 512-byte aligned offsets.
        let g = RefcountGeometry {
            cluster_bits: 10,
            refcount_order: 4,
            max_host_offset: 1 << 40,
            max_reftable_bytes: 512,
            offset_mask: !0x1ff,
        };
        let st = AllocState {
            reftable: vec![3 * 1024, 0, 7 * 1024 + 512],
            ..AllocState::default()
        };
        assert_eq!(st.structure_clusters(&g, 1024, 2), [1, 2, 3, 7, 8]);
        for order in [0u32, 3, 6] {
            // 300 clusters in use, a few shared.
            let mut rc = vec![1u64; 300];
            let mut disk: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let rg = RebuildGeometry {
                refcount_order: order,
                max_reftable_bytes: 1 << 20,
                endian: Endian::Big,
            };
            rc[5] = if order == 0 { 1 } else { 2 };
            let s = write_refcount_structure("amend", &mut rc, 300, 9, rg, &mut |off, d| {
                disk.insert(off, d.to_vec());
                Ok(())
            })
            .unwrap();
            let e = (512 * 8) >> order;
            let table = &disk[&s.table_offset];
            assert_eq!(s.table_offset / 512 + s.table_clusters, rc.len() as u64);
            for (c, &want) in rc.iter().enumerate() {
                let boff = Endian::Big.u64(table, c / e * 8);
                assert_eq!(refcount_get(&disk[&boff], (c % e) as u64, order), want);
            }
        }
        let rg = RebuildGeometry {
            refcount_order: 0,
            max_reftable_bytes: 0,
            endian: Endian::Big,
        };
        let e = write_refcount_structure("amend", &mut vec![1; 10], 10, 9, rg, &mut |_, _| {
            panic!("nothing is written")
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NoSpace);
    }

    #[test]
    fn failed_writes_name_what_failed() {
        let mut r = refs(&[0], 1);
        let g = RebuildGeometry {
            refcount_order: 4,
            max_reftable_bytes: 1 << 20,
            endian: Endian::Big,
        };
        let e = rebuild_refcount_structure(&mut r, g, &[], &mut |_, _| {
            Err(BlockError::io("write", "EIO"))
        })
        .unwrap_err();
        assert!(
            e.message.starts_with("ERROR writing refblock"),
            "{}",
            e.message
        );
    }
}
