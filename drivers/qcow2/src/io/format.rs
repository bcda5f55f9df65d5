//! qcow2 as an engine [`Format`]: the answers about its layout (the
//! mapping of a guest range from L2 entries and subcluster bitmaps,
//! cluster allocation with copy-on-write at subcluster granularity,
//! compressed reads and writes), the rest delegating to the file that implements
//! it; `FormatNode` does the I/O, the gates and the bounds.

use crate::io::data_path::sc_mask;
use crate::layout::compress;
use crate::layout::mapping::{
    ClusterType, SubType, BITMAP_ALL_ALLOC, L2E_OFFSET_MASK, OFLAG_COPIED,
};
use crate::node::Qcow2Node;
use block_core::engine::{Allocation, ChildRef, Format, HostRef, Mapping};
use block_core::{
    AmendControl, BackingControl, BitmapControl, BlockError, BlockNode, BlockNodeExt, CheckControl,
    NodeInfo, Preallocation, Result, SnapshotControl,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

impl Format for Qcow2Node {
    fn size(&self) -> u64 {
        self.meta_read().h.size
    }

    fn allocation_unit(&self) -> u64 {
        self.geo().cs()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        match child {
            ChildRef::FILE => Some(self.file.clone()),
            ChildRef::DATA_FILE => self.data_file.clone(),
            _ => None,
        }
    }

    /// The data file (guest data before the L2 entries that point at it),
    /// then the image file.
    fn flushed_children(&self) -> Vec<ChildRef> {
        if self.data_file.is_some() {
            vec![ChildRef::DATA_FILE, ChildRef::FILE]
        } else {
            vec![ChildRef::FILE]
        }
    }

    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        Qcow2Node::backing(self)
    }

    /// The run of same-typed subclusters at `pos` inside its cluster (at
    /// most `len` bytes), as the engine's mapping.
    fn map(&self, pos: u64, len: u64) -> Result<Mapping> {
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
        let has_host = matches!(t, SubType::UnallocAlloc | SubType::ZeroAlloc);
        let host = has_host.then(|| HostRef {
            child: self.data_child(),
            offset: (lk.entry & L2E_OFFSET_MASK) + in_c,
        });
        Ok(match t {
            SubType::UnallocPlain | SubType::UnallocAlloc => Mapping::Unallocated { len, host },
            SubType::ZeroPlain | SubType::ZeroAlloc => Mapping::Zero {
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

    /// Fills `buf` from the compressed cluster mapping `pos`, read and
    /// decompressed.
    fn read_special(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        let lk = self.lookup_now(pos)?;
        if self.data_file.is_some() {
            return Err(self.corruption(pos, "compressed cluster in an image with a data file"));
        }
        let (coff, mut clen) = self.geo().compressed_range(lk.entry);
        let flen = self.file.length()?;
        if coff >= flen {
            let msg =
                format!("compressed cluster at {coff:#x} lies past the end of the image file");
            return Err(self.corruption(pos, &msg));
        }
        clen = clen.min(flen - coff);
        let mut inbuf = vec![0u8; clen as usize];
        self.file.read_at(coff, &mut inbuf)?;
        let mut c = vec![0u8; self.geo().cs() as usize];
        compress::decompress(self.geo().compression_type, &inbuf, &mut c)
            .map_err(|e| self.ctx(e.at(pos)))?;
        let in_c = self.geo().in_cluster(pos) as usize;
        buf.copy_from_slice(&c[in_c..in_c + buf.len()]);
        Ok(())
    }

    /// Host space for the cluster at `cstart`, as QEMU allocates it: the
    /// cluster's own when this image owns it (an unwritten subcluster, a
    /// preallocated zero cluster), the guest offset in an external data
    /// file, else a new cluster after the L2 table is made writable (a new
    /// L2 table lands before the data in the file). With extended L2
    /// entries copy-on-write covers the touched subclusters only, except
    /// over a compressed or shared cluster, which is copied whole.
    fn allocate(&self, cstart: u64, _len: u64) -> Result<Allocation> {
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
            // Without extended L2 entries the subcluster is the cluster.
            granule: if whole { g.cs() } else { g.sc_size() },
            reused,
        })
    }

    /// Links a written allocation: the entry points at the host cluster
    /// (COPIED); with extended L2 the subclusters of the guest data
    /// `[pos, pos+n)` become allocated. A replaced host or compressed
    /// cluster loses its reference.
    fn commit(&self, a: &Allocation, pos: u64, n: u64) -> Result<()> {
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
        let entry = a.host_offset | OFLAG_COPIED;
        self.set_l2_entry(&mut ws, a.guest_offset, entry, bitmap)?;
        let has_host = matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc);
        if !owned && (has_host || ct == ClusterType::Compressed) {
            self.defer_free_entry(&mut ws, lk.entry, false);
        }
        Ok(())
    }

    /// Gives a new cluster of a failed write back (a deferred decrement).
    fn abort(&self, a: &Allocation) {
        if !a.reused {
            self.wlock().defer(a.host_offset, 1, false);
        }
    }

    /// Writes the cluster at `pos` compressed (`data` is the cluster, or
    /// its part before the image end); `Ok(false)` when it does not
    /// compress.
    fn write_compressed(&self, pos: u64, data: &[u8]) -> Result<bool> {
        let g = self.geo();
        let cs = g.cs() as usize;
        if self.data_file.is_some() {
            let msg = "compressed writes are not supported with an external data file";
            return Err(self.ctx(BlockError::unsupported_feature("write", msg)));
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
        let coff = ws.alloc_bytes(self, c.len() as u64)?;
        self.write_data(coff, &c)?;
        self.set_l2_entry(&mut ws, pos, g.compressed_entry(coff, c.len() as u64), 0)?;
        self.defer_free_entry(&mut ws, lk.entry, false);
        Ok(true)
    }

    fn zero_granularity(&self) -> u64 {
        self.geo().sc_size()
    }

    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        self.make_zero_range(offset, offset + len, unmap)
    }

    /// Discards whole clusters of `[offset, offset+len)` (cluster-aligned;
    /// the last may end at the image end), as QEMU 10 does (its discard
    /// alignment is the cluster size even with subclusters); a version 2
    /// image with a backing file ignores discards (a discarded cluster
    /// would reveal the backing data).
    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        let g = self.geo();
        if g.version < 3 && self.backing().is_some() {
            return Ok(false);
        }
        for pos in (offset..offset + len).step_by(g.cs() as usize) {
            self.discard_cluster(pos)?;
        }
        Ok(true)
    }

    fn flush_metadata(&self) -> Result<()> {
        if self.inactive.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut ws = self.wlock();
        self.writeback(&mut ws, false)
    }

    fn invalidate(&self) -> Result<()> {
        self.invalidate_impl()
    }

    fn resize(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        self.truncate_impl(size, prealloc)
    }

    fn info(&self) -> Result<NodeInfo> {
        // Before `meta`: the bitmap lock comes first in the lock order.
        let bitmaps = self.bitmaps_info();
        let m = self.meta_read();
        let h = &m.h;
        // Keys are sorted when printed: the order here does not matter.
        let v3 = h.version >= 3;
        let mut d = serde_json::json!({
            "compat": if v3 { "1.1" } else { "0.10" },
            "compression-type": compress::type_name(h.compression_type),
            "refcount-bits": h.geometry().refcount_bits(),
        });
        if v3 {
            d["lazy-refcounts"] = h.lazy_refcounts().into();
            if let Some(df) = &h.data_file {
                d["data-file"] = df.as_str().into();
                d["data-file-raw"] = h.data_file_raw().into();
            }
            if h.crypt_method != 0 {
                d["encrypt"] = crate::layout::crypto::describe(&self.file, h)?;
            }
            if let Some(b) = bitmaps {
                d["bitmaps"] = b;
            }
            d["corrupt"] = (h.is_corrupt() || self.corrupt.load(Ordering::Acquire)).into();
            d["extended-l2"] = h.extended_l2().into();
        }
        Ok(NodeInfo {
            format: "qcow2".into(),
            virtual_size: h.size,
            cluster_size: Some(h.cluster_size()),
            dirty_flag: h.is_dirty(),
            backing_filename: h.backing_file.clone(),
            backing_filename_format: h.backing_format.clone(),
            format_specific: Some(serde_json::json!({"type": "qcow2", "data": d})),
        })
    }

    /// The image file's allocation only: QEMU 10's disk size of a qcow2
    /// image leaves an external data file out.
    fn allocated_size(&self) -> Result<u64> {
        self.file.allocated_size()
    }

    fn has_zero_init(&self) -> bool {
        !self.meta_read().h.data_file_raw()
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }

    /// A node whose reopen failed refuses everything; an encrypted image
    /// (no key support) refuses reads and block status.
    fn check_read(&self, op: &str) -> Result<()> {
        self.check_usable(op)?;
        if op != "length" && self.meta_read().h.crypt_method != 0 {
            return Err(self.ctx(crate::layout::crypto::no_secret(op)));
        }
        Ok(())
    }

    fn check_write(&self, op: &str) -> Result<()> {
        self.check_writable(op)
    }

    /// Before a guest change of `[offset, offset+len)` (or a management
    /// write): sets the dirty bit of a lazy-refcounts image and marks the
    /// persistent bitmaps.
    fn will_change(&self, offset: u64, len: u64) -> Result<()> {
        if self.meta_read().h.lazy_refcounts() && !self.dirty_set.load(Ordering::Acquire) {
            self.mark_dirty()?;
        }
        self.bitmaps_before_change()?;
        self.bitmaps_mark(offset, len);
        Ok(())
    }

    /// Data writes into the image file must not hit metadata.
    fn check_data_write(&self, child: ChildRef, host_offset: u64, len: u64) -> Result<()> {
        if child == ChildRef::FILE {
            self.pre_write_check(host_offset, len, 0)?;
        }
        Ok(())
    }

    fn in_flight(&self) -> Option<&RwLock<()>> {
        Some(&self.in_flight)
    }

    fn sparse_data(&self) -> bool {
        self.metadata_preallocated()
    }

    fn inactivate(&self) -> Result<()> {
        self.inactivate_impl()
    }

    fn activate(&self) -> Result<()> {
        self.activate_impl()
    }

    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        Some(self)
    }

    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }

    fn amend_control(&self) -> Option<&dyn AmendControl> {
        Some(self)
    }

    fn backing_control(&self) -> Option<&dyn BackingControl> {
        Some(self)
    }

    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        Some(self)
    }
}
