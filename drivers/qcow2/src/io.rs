//! The data path: reads, writes with cluster/subcluster allocation and
//! copy-on-write, zero writes, discards, compressed writes, block status.

use crate::cache::Table;
use crate::compress;
use crate::header::put_u64;
use crate::mapping::{
    ClusterType, SubType, BITMAP_ALL_ALLOC, BITMAP_ALL_ZERO, L1E_OFFSET_MASK, L2E_OFFSET_MASK,
    OFLAG_COPIED, OFLAG_ZERO,
};
use crate::node::{Deferred, Lookup, Meta, Qcow2Node, WState};
use block_core::engine::{read_backing, read_mapped, ChildRef, MappedSource, Mapping};
use block_core::{
    iov_len_mut, BlockError, BlockNode, BlockNodeExt, ChildRole, Extent, ExtentFlags, ReqFlags,
    Result,
};
use std::io::IoSliceMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The qcow2 mapping seen through one hold of the metadata read lock, or
/// through one cluster's L2 entry already looked up (copy-on-write fill).
struct MetaView<'a> {
    node: &'a Qcow2Node,
    src: EntrySource<'a>,
}

/// Where [`MetaView`] finds L2 entries.
enum EntrySource<'a> {
    /// Looked up in the tables, per cluster.
    Meta(&'a Meta),
    /// The entry of the one cluster the reads stay in.
    Fixed(Lookup),
}

impl MetaView<'_> {
    fn lookup(&self, pos: u64) -> Result<Lookup> {
        match &self.src {
            EntrySource::Meta(m) => self.node.lookup(m, pos),
            EntrySource::Fixed(lk) => Ok(*lk),
        }
    }
}

impl MappedSource for MetaView<'_> {
    /// The run of same-typed subclusters at `pos` inside its cluster.
    fn map(&self, pos: u64, len: u64) -> Result<Mapping> {
        let (node, g) = (self.node, self.node.geo());
        let scs = g.sc_size();
        let lk = self.lookup(pos)?;
        let in_c = g.in_cluster(pos);
        let sc = (in_c / scs) as u32;
        let t = g.subcluster_type(lk.entry, lk.bitmap, sc);
        let mut end_sc = sc + 1;
        while end_sc < g.sc_count() && g.subcluster_type(lk.entry, lk.bitmap, end_sc) == t {
            end_sc += 1;
        }
        let len = (u64::from(end_sc) * scs - in_c).min(len);
        Ok(match t {
            SubType::UnallocPlain | SubType::UnallocAlloc => Mapping::Unallocated { len, host: None },
            SubType::ZeroPlain | SubType::ZeroAlloc => Mapping::Zero {
                len,
                allocated: true,
                host: None,
            },
            SubType::Normal => Mapping::Data {
                child: if node.data_file.is_some() {
                    ChildRef::DATA_FILE
                } else {
                    ChildRef::FILE
                },
                host_offset: node.host_cluster(lk.entry, pos)? + in_c,
                len,
                writable: false,
            },
            SubType::Compressed => Mapping::Special { len },
            SubType::Invalid => {
                return Err(node.corruption(pos, "invalid subcluster allocation bitmap"));
            }
        })
    }

    fn child_node(&self, _child: ChildRef) -> Result<Arc<dyn BlockNode>> {
        Ok(self.node.data_node().clone())
    }

    fn read_unallocated(&self, pos: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()> {
        read_backing(self.node.backing().as_deref(), pos, bufs)
    }

    fn read_special(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let lk = self.lookup(pos)?;
        let c = self.node.read_compressed(lk.entry, pos)?;
        let in_c = self.node.geo().in_cluster(pos) as usize;
        buf.copy_from_slice(&c[in_c..in_c + buf.len()]);
        Ok(())
    }
}

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
    /// Checks that `[offset, offset+len)` lies inside the virtual disk.
    pub(crate) fn check_range(&self, op: &str, offset: u64, len: u64, size: u64) -> Result<()> {
        if offset > size || len > size - offset {
            return Err(self.ctx(
                crate::error::out_of_range(
                    op,
                    format!("request of {len} bytes at {offset} is past the end of the {size}-byte image"),
                )
                .at(offset),
            ));
        }
        Ok(())
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

    /// Reads guest bytes at `offset` into `bufs` through the engine's read
    /// loop: contiguous host clusters become one child request, straight
    /// into the caller's buffers.
    pub(crate) fn read_guest(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()> {
        self.check_usable("read")?;
        let m = self.meta_read();
        self.check_range("read", offset, iov_len_mut(bufs), m.h.size)?;
        let view = MetaView {
            node: self,
            src: EntrySource::Meta(&m),
        };
        read_mapped(&view, offset, bufs)
    }

    /// Fills `out` with the current content of guest bytes
    /// `[cstart+from, cstart+to)` as described by `lk` (copy-on-write source).
    fn fill_old(&self, lk: &Lookup, cstart: u64, from: u64, to: u64, out: &mut [u8]) -> Result<()> {
        let view = MetaView {
            node: self,
            src: EntrySource::Fixed(*lk),
        };
        debug_assert_eq!(out.len() as u64, to - from);
        read_mapped(&view, cstart + from, &mut [IoSliceMut::new(out)])
    }

    /// True when a write of `n` bytes at `in_c` of the cluster of `lk` can
    /// go to the existing host cluster without metadata changes.
    fn in_place_ok(&self, lk: &Lookup, in_c: u64, n: u64) -> bool {
        let g = self.geo();
        if g.cluster_type(lk.entry) != ClusterType::Normal {
            return false;
        }
        if lk.entry & OFLAG_COPIED == 0 && self.data_file.is_none() {
            return false;
        }
        if g.extended_l2 {
            let scs = g.sc_size();
            let a = (in_c / scs) as u32;
            let b = ((in_c + n - 1) / scs) as u32;
            let mask = sc_mask(a, b);
            return lk.bitmap & mask == mask;
        }
        true
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

    /// Writes within one cluster through the existing mapping if possible.
    fn write_in_place(&self, pos: u64, data: &[u8]) -> Result<bool> {
        let m = self.meta_read();
        let lk = self.lookup(&m, pos)?;
        let in_c = self.geo().in_cluster(pos);
        if !self.in_place_ok(&lk, in_c, data.len() as u64) {
            return Ok(false);
        }
        let host = self.host_cluster(lk.entry, pos)?;
        self.write_data(host + in_c, data)?;
        Ok(true)
    }

    /// Writes within one cluster, allocating (and copying on write) as needed.
    fn write_alloc(&self, pos: u64, data: &[u8]) -> Result<()> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let in_c = g.in_cluster(pos);
        let n = data.len() as u64;
        {
            let m = self.meta_read();
            let lk = self.lookup(&m, pos)?;
            if self.in_place_ok(&lk, in_c, n) {
                let host = self.host_cluster(lk.entry, pos)?;
                return self.write_data(host + in_c, data);
            }
        }
        let lk = self.lookup_now(pos)?;
        let cstart = pos - in_c;
        let cs = g.cs();
        let scs = g.sc_size();
        let ct = g.cluster_type(lk.entry);
        let has_host = matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc);
        let owned = has_host && (lk.entry & OFLAG_COPIED != 0 || self.data_file.is_some());
        let (host, whole) = if owned {
            (self.host_cluster(lk.entry, pos)?, false)
        } else if self.data_file.is_some() {
            (cstart, false)
        } else {
            let whole =
                g.extended_l2 && (ct == ClusterType::Compressed || ct == ClusterType::Normal);
            self.ensure_l2(&mut ws, pos)?;
            (self.alloc_clusters(&mut ws, 1)?, whole)
        };
        let sc0 = (in_c / scs) as u32;
        let sc1 = ((in_c + n - 1) / scs) as u32;
        let (rs, re) = if whole || !g.extended_l2 {
            (0, cs)
        } else {
            (u64::from(sc0) * scs, (u64::from(sc1) + 1) * scs)
        };
        let mut cbuf = vec![0u8; (re - rs) as usize];
        let (head, rest) = cbuf.split_at_mut((in_c - rs) as usize);
        let (mid, tail) = rest.split_at_mut(n as usize);
        if owned && ct == ClusterType::ZeroAlloc {
            // Preallocated zero cluster: the padding reads as zeros.
        } else {
            self.fill_old(&lk, cstart, rs, in_c, head)?;
            self.fill_old(&lk, cstart, in_c + n, re, tail)?;
        }
        mid.copy_from_slice(data);
        self.write_data(host + rs, &cbuf)?;
        let bitmap = if g.extended_l2 {
            let base = if ct == ClusterType::Compressed {
                BITMAP_ALL_ALLOC
            } else {
                lk.bitmap
            };
            let mask = sc_mask(sc0, sc1);
            (base | mask) & !(mask << 32)
        } else {
            0
        };
        self.set_l2_entry(&mut ws, pos, host | OFLAG_COPIED, bitmap)?;
        if !owned && (has_host || ct == ClusterType::Compressed) {
            self.defer_free_entry(&mut ws, lk.entry, false);
        }
        Ok(())
    }

    /// Before a write: refuses it if not allowed and sets the dirty bit of
    /// a lazy-refcounts image.
    pub(crate) fn begin_write(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        self.check_writable(op)?;
        let (size, lazy) = {
            let m = self.meta_read();
            (m.h.size, m.h.lazy_refcounts())
        };
        self.check_range(op, offset, len, size)?;
        if lazy && !self.dirty_set.load(Ordering::Acquire) {
            self.mark_dirty()?;
        }
        self.bitmaps_before_change()?;
        self.bitmaps_mark(offset, len);
        Ok(())
    }

    /// Writes guest bytes at `offset`.
    pub(crate) fn write_linear(&self, offset: u64, buf: &[u8], flags: ReqFlags) -> Result<()> {
        self.begin_write("write", offset, buf.len() as u64)?;
        if flags.contains(ReqFlags::COMPRESSED) {
            self.write_compressed(offset, buf)?;
        } else {
            self.write_plain(offset, buf)?;
        }
        if flags.contains(ReqFlags::FUA) {
            self.flush_all()?;
        }
        Ok(())
    }

    pub(crate) fn write_plain(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let cs = self.geo().cs();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = ((cs - self.geo().in_cluster(pos)) as usize).min(buf.len() - done);
            let chunk = &buf[done..done + n];
            if !self.write_in_place(pos, chunk)? {
                self.write_alloc(pos, chunk)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Compressed writes: whole clusters (the last may end at the image end).
    fn write_compressed(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        if self.data_file.is_some() {
            return Err(self.ctx(crate::error::unsupported(
                "write",
                "compressed writes are not supported with an external data file",
            )));
        }
        let size = self.meta_read().h.size;
        let end = offset + buf.len() as u64;
        if g.in_cluster(offset) != 0 || (g.in_cluster(end) != 0 && end != size) {
            return Err(self.ctx(
                BlockError::invalid("write", "compressed writes must be cluster aligned")
                    .at(offset),
            ));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = (cs as usize).min(buf.len() - done);
            let mut cl = vec![0u8; cs as usize];
            cl[..n].copy_from_slice(&buf[done..done + n]);
            let Some(c) = compress::compress(g.compression_type, &cl, cs as usize - 1)? else {
                self.write_plain(pos, &buf[done..done + n])?;
                done += n;
                continue;
            };
            let mut ws = self.wlock();
            self.maybe_writeback(&mut ws)?;
            let lk = self.lookup_now(pos)?;
            self.ensure_l2(&mut ws, pos)?;
            let coff = self.alloc_bytes(&mut ws, c.len() as u64)?;
            self.write_data(coff, &c)?;
            self.set_l2_entry(&mut ws, pos, g.compressed_entry(coff, c.len() as u64), 0)?;
            self.defer_free_entry(&mut ws, lk.entry, false);
            done += n;
        }
        Ok(())
    }

    /// Discards whole clusters in the range, as QEMU 10 does (its discard
    /// alignment is the cluster size even with subclusters): partial
    /// clusters are ignored, except a partial last cluster that ends at the
    /// image end; a version 2 image with a backing file ignores discards
    /// (a discarded cluster would reveal the backing data).
    pub(crate) fn discard_impl(&self, offset: u64, len: u64) -> Result<()> {
        self.begin_write("discard", offset, len)?;
        let g = self.geo();
        let cs = g.cs();
        let size = self.meta_read().h.size;
        let end = offset + len;
        let mut pos = offset.div_ceil(cs) * cs;
        let has_backing = self.backing().is_some();
        if g.version < 3 && has_backing {
            return Ok(());
        }
        while pos < end {
            let cend = (pos + cs).min(size);
            if cend > end {
                break;
            }
            self.discard_cluster(pos)?;
            pos += cs;
        }
        Ok(())
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

    /// Block status of the range at `offset` (at most `len` bytes).
    pub(crate) fn block_status_impl(&self, offset: u64, len: u64) -> Result<Extent> {
        self.check_usable("block_status")?;
        let g = self.geo();
        let m = self.meta_read();
        let size = m.h.size;
        if offset >= size || len == 0 {
            return Ok(Extent {
                length: len.min(size.saturating_sub(offset)).max(1),
                flags: ExtentFlags::ZERO,
                ..Extent::default()
            });
        }
        let len = len.min(size - offset);
        let scs = g.sc_size();
        let has_backing = self.backing().is_some();
        // As QEMU's qcow2_co_block_status: the host offset is reported for
        // every subcluster whose cluster has a host cluster (normal data,
        // preallocated zeros, unallocated subclusters of an allocated
        // extended-L2 cluster), never for compressed clusters. With an
        // external data file the offset is in the data file, and the
        // extent says so (`mapped_child`).
        let classify = |lk: &Lookup, pos: u64| -> (ExtentFlags, Option<u64>) {
            let in_c = g.in_cluster(pos);
            let t = g.subcluster_type(lk.entry, lk.bitmap, (in_c / scs) as u32);
            let host = (lk.entry & L2E_OFFSET_MASK) + in_c;
            let (flags, has_host) = match t {
                SubType::UnallocPlain | SubType::UnallocAlloc => (
                    if has_backing {
                        ExtentFlags(0)
                    } else {
                        ExtentFlags::ZERO
                    },
                    t == SubType::UnallocAlloc,
                ),
                SubType::ZeroPlain => (ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED), false),
                SubType::ZeroAlloc => (ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED), true),
                SubType::Normal => (ExtentFlags::DATA.with(ExtentFlags::ALLOCATED), true),
                SubType::Compressed => (
                    ExtentFlags::DATA
                        .with(ExtentFlags::ALLOCATED)
                        .with(ExtentFlags::COMPRESSED),
                    false,
                ),
                SubType::Invalid => (ExtentFlags::DATA.with(ExtentFlags::ALLOCATED), false),
            };
            if has_host {
                (flags.with(ExtentFlags::OFFSET_VALID), Some(host))
            } else {
                (flags, None)
            }
        };
        let lk0 = self.lookup(&m, offset)?;
        let (flags, host0) = classify(&lk0, offset);
        let mut pos = offset;
        // Extend over following subclusters/clusters with the same status
        // (and contiguous host offsets); bound the walk to keep the call
        // cheap.
        let mut steps = 0;
        while pos < offset + len && steps < 65536 {
            let lk = self.lookup(&m, pos)?;
            let (f, h) = classify(&lk, pos);
            if f != flags {
                break;
            }
            if let (Some(h0), Some(h)) = (host0, h) {
                if h != h0 + (pos - offset) {
                    break;
                }
            }
            let in_c = g.in_cluster(pos);
            pos += scs - in_c % scs;
            steps += 1;
        }
        let length = pos.min(offset + len) - offset;
        drop(m);
        Ok(Extent {
            length: length.max(1),
            flags: self.recurse_flag(flags),
            mapped_offset: host0.unwrap_or(0),
            mapped_child: if self.data_file.is_some() {
                ChildRole::DataFile
            } else {
                ChildRole::File
            },
        })
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
