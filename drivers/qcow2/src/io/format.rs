//! qcow2 as an engine [`Format`]: the answers about its layout, each
//! delegating to the file that implements it; `FormatNode` does the I/O,
//! the gates and the bounds.

use crate::layout::compress;
use crate::node::Qcow2Node;
use block_core::engine::{Allocation, ChildRef, Format, Mapping};
use block_core::{
    AmendControl, BackingControl, BitmapControl, BlockError, BlockNode, CheckControl, NodeInfo,
    Preallocation, Result, SnapshotControl,
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

    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        self.map_range(offset, len)
    }

    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_special_range(offset, buf)
    }

    fn allocate(&self, offset: u64, _len: u64) -> Result<Allocation> {
        self.allocate_cluster(offset)
    }

    fn commit(&self, alloc: &Allocation, written: u64, len: u64) -> Result<()> {
        self.commit_cluster(alloc, written, len)
    }

    fn abort(&self, alloc: &Allocation) {
        self.abort_cluster(alloc)
    }

    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<bool> {
        self.write_compressed_cluster(offset, data)
    }

    fn zero_granularity(&self) -> u64 {
        self.geo().sc_size()
    }

    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        self.make_zero_range(offset, offset + len, unmap)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        self.discard_clusters(offset, len)
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
                d["encrypt"] = crate::layout::crypto::describe(&self.file, h)?;
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

    fn will_change(&self, offset: u64, len: u64) -> Result<()> {
        self.prepare_change(offset, len)
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
