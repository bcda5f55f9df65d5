//! The [`BlockNode`] implementation: dispatch to the data path, and the
//! accessors of the management capabilities (control.rs).

use crate::compress;
use crate::node::Qcow2Node;
use block_core::{
    iov_len, AmendControl, BackingControl, BitmapControl, BlockNode, CheckControl, Extent,
    IoLimits, MigrationControl, NodeCapabilities, NodeInfo, Preallocation, ReqFlags, Result,
    SnapshotControl, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};

impl BlockNode for Qcow2Node {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        _flags: ReqFlags,
    ) -> Result<()> {
        if self.meta_read().h.crypt_method != 0 {
            return Err(self.ctx(crate::crypto::no_secret("read")));
        }
        self.read_guest(offset, bufs)
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        if bufs.len() == 1 {
            return self.write_linear(offset, &bufs[0], flags);
        }
        let mut tmp = Vec::with_capacity(iov_len(bufs) as usize);
        for b in bufs {
            tmp.extend_from_slice(b);
        }
        self.write_linear(offset, &tmp, flags)
    }

    fn flush(&self) -> Result<()> {
        self.flush_all()
    }

    fn length(&self) -> Result<u64> {
        self.check_usable("length")?;
        Ok(self.meta_read().h.size)
    }

    fn info(&self) -> Result<NodeInfo> {
        // Before `meta`: the bitmap lock comes first in the lock order.
        let bitmaps = self.bitmaps_info();
        let m = self.meta_read();
        let h = &m.h;
        let data = if h.version < 3 {
            serde_json::json!({
                "compat": "0.10",
                "compression-type": compress::type_name(h.compression_type),
                "refcount-bits": h.refcount_bits(),
            })
        } else {
            let mut d = serde_json::json!({
                "compat": "1.1",
                "compression-type": compress::type_name(h.compression_type),
                "lazy-refcounts": h.lazy_refcounts(),
                "refcount-bits": h.refcount_bits(),
            });
            if let Some(df) = &h.data_file {
                d["data-file"] = serde_json::json!(df);
                d["data-file-raw"] = serde_json::json!(h.data_file_raw());
            }
            if h.crypt_method != 0 {
                d["encrypt"] = crate::crypto::describe(&self.file, h)?;
            }
            if let Some(b) = bitmaps {
                d["bitmaps"] = b;
            }
            d["corrupt"] = serde_json::json!(
                h.is_corrupt() || self.corrupt.load(std::sync::atomic::Ordering::Acquire)
            );
            d["extended-l2"] = serde_json::json!(h.extended_l2());
            d
        };
        Ok(NodeInfo {
            format: "qcow2".into(),
            virtual_size: h.size,
            cluster_size: Some(h.cluster_size()),
            dirty_flag: h.is_dirty(),
            backing_filename: h.backing_file.clone(),
            backing_filename_format: h.backing_format.clone(),
            format_specific: Some(serde_json::json!({"type": "qcow2", "data": data})),
        })
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.discard_impl(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        self.write_zeroes_impl(offset, len, flags)
    }

    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        self.truncate_impl(size, prealloc)
    }

    /// The image file's allocation only: QEMU 10's disk size of a qcow2
    /// image leaves an external data file out.
    fn allocated_size(&self) -> Result<u64> {
        self.file.allocated_size()
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        if self.meta_read().h.crypt_method != 0 {
            return Err(self.ctx(crate::crypto::no_secret("block_status")));
        }
        self.block_status_impl(offset, len)
    }

    fn has_zero_init(&self) -> bool {
        !self.meta_read().h.data_file_raw()
    }

    fn limits(&self) -> IoLimits {
        let data = self.data_file.as_ref().map(|d| d.limits());
        let children = data.map_or(self.file.limits(), |d| d.merge(self.file.limits()));
        IoLimits::for_format(children, self.geo().cs())
    }

    fn capabilities(&self) -> NodeCapabilities {
        NodeCapabilities::for_format(!self.read_only)
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

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }

    fn backing_control(&self) -> Option<&dyn BackingControl> {
        Some(self)
    }

    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        Some(self)
    }
}
