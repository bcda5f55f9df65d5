//! The data path as answers to the engine (`block_core::engine`): the
//! mapping of a guest range (L2 entries and subcluster bitmaps), cluster
//! allocation with copy-on-write at subcluster granularity, compressed
//! cluster reads and writes. The engine's `FormatNode` does the I/O.

use crate::layout::compress;
use crate::layout::header::put_u64;
use crate::layout::mapping::{
    ClusterType, SubType, BITMAP_ALL_ALLOC, BITMAP_ALL_ZERO, L1E_OFFSET_MASK, L2E_OFFSET_MASK,
    OFLAG_COPIED, OFLAG_ZERO,
};
use crate::node::cache::Table;
use crate::node::{Deferred, Lookup, Qcow2Node, WState};
use block_core::engine::{Allocation, ChildRef, HostRef, Mapping};
use block_core::{BlockNodeExt, Result};
use std::sync::Arc;

/// Bitmask of subclusters `a..=b`.
pub(crate) fn sc_mask(a: u32, b: u32) -> u64 {
    let hi = if b >= 31 {
        u32::MAX as u64
    } else {
        (1u64 << (b + 1)) - 1
    };
    hi & !((1u64 << a) - 1)
}

impl Qcow2Node {
    /// The child data clusters live in.
    pub(crate) fn data_child(&self) -> ChildRef {
        if self.data_file.is_some() {
            ChildRef::DATA_FILE
        } else {
            ChildRef::FILE
        }
    }

    /// The run of same-typed subclusters at `pos` inside its cluster (at
    /// most `len` bytes), as the engine's mapping.
    pub(crate) fn map_range(&self, pos: u64, len: u64) -> Result<Mapping> {
        let g = self.geo();
        let scs = g.sc_size();
        let lk = self.lookup_now(pos)?;
        let in_c = g.in_cluster(pos);
        let sc = (in_c / scs) as u32;
        let t = g.subcluster_type(lk.entry, lk.bitmap, sc);
        let mut end_sc = sc + 1;
        while end_sc < g.sc_count() && g.subcluster_type(lk.entry, lk.bitmap, end_sc) == t {
            end_sc += 1;
        }
        let len = (u64::from(end_sc) * scs - in_c).min(len);
        // As QEMU's block status: the host offset is reported for every
        // subcluster whose cluster has a host cluster, never for
        // compressed ones.
        let host = Some(HostRef {
            child: self.data_child(),
            offset: (lk.entry & L2E_OFFSET_MASK) + in_c,
        });
        Ok(match t {
            SubType::UnallocPlain => Mapping::Unallocated { len, host: None },
            SubType::UnallocAlloc => Mapping::Unallocated { len, host },
            SubType::ZeroPlain => Mapping::Zero {
                len,
                allocated: true,
                host: None,
            },
            SubType::ZeroAlloc => Mapping::Zero {
                len,
                allocated: true,
                host,
            },
            SubType::Normal => Mapping::Data {
                child: self.data_child(),
                host_offset: self.host_cluster(lk.entry, pos)? + in_c,
                len,
                // In place unless shared (an external data file is never
                // shared: its clusters are the guest offsets).
                writable: lk.entry & OFLAG_COPIED != 0 || self.data_file.is_some(),
            },
            SubType::Compressed => Mapping::Special { len },
            SubType::Invalid => {
                return Err(self.corruption(pos, "invalid subcluster allocation bitmap"));
            }
        })
    }

    /// Fills `buf` from the compressed cluster mapping `pos`.
    pub(crate) fn read_special_range(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let lk = self.lookup_now(pos)?;
        let c = self.read_compressed(lk.entry, pos)?;
        let in_c = self.geo().in_cluster(pos) as usize;
        buf.copy_from_slice(&c[in_c..in_c + buf.len()]);
        Ok(())
    }

    /// Whether the cluster of `lk` has a host cluster this image may write
    /// in place (COPIED, or in an external data file).
    fn owned(&self, lk: &Lookup) -> bool {
        let ct = self.geo().cluster_type(lk.entry);
        matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc)
            && (lk.entry & OFLAG_COPIED != 0 || self.data_file.is_some())
    }

    /// Host space for the cluster at `cstart`, as QEMU allocates it: the
    /// cluster's own when this image owns it (an unwritten subcluster, a
    /// preallocated zero cluster), the guest offset in an external data
    /// file, else a new cluster after the L2 table is made writable (a new
    /// L2 table lands before the data in the file). With extended L2
    /// entries copy-on-write covers the touched subclusters only, except
    /// over a compressed or shared cluster, which is copied whole.
    pub(crate) fn allocate_cluster(&self, cstart: u64) -> Result<Allocation> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(cstart)?;
        let ct = g.cluster_type(lk.entry);
        let (host, whole, reused) = if self.owned(&lk) {
            (self.host_cluster(lk.entry, cstart)?, false, true)
        } else if self.data_file.is_some() {
            (cstart, false, true)
        } else {
            let whole =
                g.extended_l2 && matches!(ct, ClusterType::Compressed | ClusterType::Normal);
            self.ensure_l2(&mut ws, cstart)?;
            (self.alloc_clusters(&mut ws, 1)?, whole, false)
        };
        Ok(Allocation {
            guest_offset: cstart,
            len: g.cs(),
            child: self.data_child(),
            host_offset: host,
            granule: if g.extended_l2 && !whole {
                g.sc_size()
            } else {
                g.cs()
            },
            reused,
        })
    }

    /// Links a written allocation: the entry points at the host cluster
    /// (COPIED); with extended L2 the subclusters of the guest data
    /// `[pos, pos+n)` become allocated. A replaced host or compressed
    /// cluster loses its reference.
    pub(crate) fn commit_cluster(&self, a: &Allocation, pos: u64, n: u64) -> Result<()> {
        let g = self.geo();
        let mut ws = self.wlock();
        let lk = self.lookup_now(a.guest_offset)?;
        let ct = g.cluster_type(lk.entry);
        let bitmap = if g.extended_l2 {
            let base = if ct == ClusterType::Compressed {
                BITMAP_ALL_ALLOC
            } else {
                lk.bitmap
            };
            let scs = g.sc_size();
            let in_c = pos - a.guest_offset;
            let mask = sc_mask((in_c / scs) as u32, ((in_c + n.max(1) - 1) / scs) as u32);
            (base | mask) & !(mask << 32)
        } else {
            0
        };
        let owned = self.owned(&lk);
        self.set_l2_entry(
            &mut ws,
            a.guest_offset,
            a.host_offset | OFLAG_COPIED,
            bitmap,
        )?;
        let has_host = matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc);
        if !owned && (has_host || ct == ClusterType::Compressed) {
            self.defer_free_entry(&mut ws, lk.entry, false);
        }
        Ok(())
    }

    /// Gives a new cluster of a failed write back (a deferred decrement).
    pub(crate) fn abort_cluster(&self, a: &Allocation) {
        if a.reused {
            return;
        }
        self.wlock().deferred.push(Deferred {
            offset: a.host_offset,
            clusters: 1,
            punch: false,
        });
    }

    /// Writes the cluster at `pos` compressed (`data` is the cluster, or
    /// its part before the image end); `Ok(false)` when it does not
    /// compress.
    pub(crate) fn write_compressed_cluster(&self, pos: u64, data: &[u8]) -> Result<bool> {
        let g = self.geo();
        let cs = g.cs() as usize;
        if self.data_file.is_some() {
            return Err(self.ctx(crate::error::unsupported(
                "write",
                "compressed writes are not supported with an external data file",
            )));
        }
        let mut cl = vec![0u8; cs];
        cl[..data.len()].copy_from_slice(data);
        let Some(c) = compress::compress(g.compression_type, &cl, cs - 1)? else {
            return Ok(false);
        };
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(pos)?;
        self.ensure_l2(&mut ws, pos)?;
        let coff = self.alloc_bytes(&mut ws, c.len() as u64)?;
        self.write_data(coff, &c)?;
        self.set_l2_entry(&mut ws, pos, g.compressed_entry(coff, c.len() as u64), 0)?;
        self.defer_free_entry(&mut ws, lk.entry, false);
        Ok(true)
    }

    /// The host cluster offset of a standard entry, validated.
    pub(crate) fn host_cluster(&self, entry: u64, pos: u64) -> Result<u64> {
        let off = entry & L2E_OFFSET_MASK;
        if self.geo().in_cluster(off) != 0 {
            return Err(self.corruption(
                pos,
                &format!("Cluster allocation offset {off:#x} unaligned (guest offset {pos:#x})"),
            ));
        }
        Ok(off)
    }

    /// Reads and decompresses the compressed cluster of `entry`.
    pub(crate) fn read_compressed(&self, entry: u64, pos: u64) -> Result<Vec<u8>> {
        if self.data_file.is_some() {
            return Err(self.corruption(pos, "compressed cluster in an image with a data file"));
        }
        let (coff, mut clen) = self.geo().compressed_range(entry);
        let flen = self.file.length()?;
        if coff >= flen {
            return Err(self.corruption(
                pos,
                &format!("compressed cluster at {coff:#x} lies past the end of the image file"),
            ));
        }
        clen = clen.min(flen - coff);
        let mut inbuf = vec![0u8; clen as usize];
        self.file.read_at(coff, &mut inbuf)?;
        let mut out = vec![0u8; self.geo().cs() as usize];
        compress::decompress(self.geo().compression_type, &inbuf, &mut out)
            .map_err(|e| self.ctx(e.at(pos)))?;
        Ok(out)
    }

    /// Stores an L2 entry (and bitmap), allocating or copying the L2 table
    /// first when it is missing or shared.
    pub(crate) fn set_l2_entry(
        &self,
        ws: &mut WState,
        pos: u64,
        entry: u64,
        bitmap: u64,
    ) -> Result<()> {
        let g = self.geo();
        let l2_idx = g.l2_index(pos) as usize;
        let table = self.ensure_l2(ws, pos)?;
        let es = g.l2_entry_size() as usize;
        let mut d = table.write();
        put_u64(&mut d, l2_idx * es, entry);
        if g.extended_l2 {
            put_u64(&mut d, l2_idx * es + 8, bitmap);
        }
        Ok(())
    }

    /// The writable L2 table mapping `pos`: allocated when missing, copied
    /// when shared (QEMU's `get_cluster_table`). Writes call it before
    /// allocating their data clusters, so that a new L2 table lands before
    /// the data in the file, as with QEMU.
    pub(crate) fn ensure_l2(&self, ws: &mut WState, pos: u64) -> Result<Arc<Table>> {
        let g = self.geo();
        let l1_idx = g.l1_index(pos) as usize;
        let l1e = self.meta_read().l1.get(l1_idx).copied();
        let Some(l1e) = l1e else {
            return Err(self.corruption(pos, "L1 table too small for the guest offset"));
        };
        let l2_off = l1e & L1E_OFFSET_MASK;
        let table = if l2_off == 0 || l1e & OFLAG_COPIED == 0 {
            let data = if l2_off == 0 {
                vec![0u8; g.cs() as usize]
            } else {
                self.l2_table(l2_off)?.read().clone()
            };
            let new_off = self.alloc_clusters(ws, 1)?;
            let t = self.l2.insert(new_off, data, true);
            {
                let mut m = self.meta_write();
                m.l1[l1_idx] = new_off | OFLAG_COPIED;
                m.l1_dirty = true;
                self.refresh_overlap(&m, ws);
            }
            if l2_off != 0 {
                ws.deferred.push(Deferred {
                    offset: l2_off,
                    clusters: 1,
                    punch: false,
                });
            }
            t
        } else {
            self.l2_table(l2_off)?
        };
        Ok(table)
    }

    pub(crate) fn lookup_now(&self, pos: u64) -> Result<Lookup> {
        let m = self.meta_read();
        self.lookup(&m, pos)
    }

    /// Discards whole clusters of `[offset, offset+len)` (cluster-aligned;
    /// the last may end at the image end), as QEMU 10 does (its discard
    /// alignment is the cluster size even with subclusters); a version 2
    /// image with a backing file ignores discards (a discarded cluster
    /// would reveal the backing data).
    pub(crate) fn discard_clusters(&self, offset: u64, len: u64) -> Result<bool> {
        let g = self.geo();
        if g.version < 3 && self.backing().is_some() {
            return Ok(false);
        }
        let mut pos = offset;
        while pos < offset + len {
            self.discard_cluster(pos)?;
            pos += g.cs();
        }
        Ok(true)
    }

    /// Discards the cluster at `pos` (QEMU's `discard_in_l2_slice` without
    /// `full_discard`): an allocated cluster, or any cluster over a backing
    /// file, becomes a zero cluster (unallocated in version 2) and its host
    /// cluster is freed.
    pub(crate) fn discard_cluster(&self, pos: u64) -> Result<()> {
        let g = self.geo();
        let has_backing = self.backing().is_some();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(pos)?;
        let ct = g.cluster_type(lk.entry);
        let allocated = matches!(
            ct,
            ClusterType::Normal | ClusterType::ZeroAlloc | ClusterType::Compressed
        );
        if allocated || has_backing {
            let (entry, bitmap) = if g.version < 3 {
                (0, 0)
            } else if g.extended_l2 {
                (0, BITMAP_ALL_ZERO)
            } else {
                (OFLAG_ZERO, 0)
            };
            if (entry, bitmap) != (lk.entry, lk.bitmap) {
                self.set_l2_entry(&mut ws, pos, entry, bitmap)?;
                self.defer_free_entry(&mut ws, lk.entry, true);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::sc_mask;

    #[test]
    fn masks() {
        assert_eq!(sc_mask(0, 0), 1);
        assert_eq!(sc_mask(0, 31), 0xffff_ffff);
        assert_eq!(sc_mask(3, 5), 0b111000);
    }
}
