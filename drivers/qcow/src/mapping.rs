//! qcow on the shared engine: [`QcowFormat`] answers the engine's
//! questions (where does a guest range live, where does a new cluster go,
//! link it in) and `block_core::engine::FormatNode` does the I/O around
//! them, including backing reads and copy-on-write fill.
//!
//! As QEMU's qcow driver: zero writes are written as data (the format has
//! no zero clusters), discard does nothing, the size is fixed.

use crate::format::QcowFormat;
use crate::tables::Cluster;
use crate::DRIVER_NAME;
use block_core::engine::luks::no_secret;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, NodeInfo, Preallocation, Result};
use std::sync::Arc;

/// An open image as the generic node the host gets.
pub type QcowNode = FormatNode<QcowFormat>;

impl Format for QcowFormat {
    fn size(&self) -> u64 {
        self.meta().header.virtual_size()
    }

    /// The cluster size: the engine allocates in clusters.
    fn allocation_unit(&self) -> u64 {
        self.meta().header.cluster()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        self.backing.clone()
    }

    /// One cluster at most; the engine merges clusters contiguous in the
    /// file into one request.
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let cs = m.header.cluster();
        let len = len.min(cs - offset % cs);
        let c = self
            .lookup(&m, "read", offset / cs)
            .map_err(|e| self.ctx(e))?;
        Ok(match c {
            Cluster::Unallocated => Mapping::Unallocated { len, host: None },
            Cluster::Compressed { .. } => Mapping::Special { len },
            Cluster::Data(at) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + offset % cs,
                len,
                writable: true,
            },
        })
    }

    /// Decompresses the cluster of a compressed range ([`crate::compress`]).
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_compressed(offset, buf).map_err(|e| self.ctx(e))
    }

    /// Appends space for the clusters from `offset` on that hold no plain
    /// data (as many in a row, inside one L2 table, as the write covers)
    /// at the end of the file, after creating their L2 table if needed.
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let cs = self.allocation_unit();
        let first = offset / cs;
        self.ensure_l2(first).map_err(|e| self.ctx(e))?;
        let m = self.meta();
        let per_table = m.header.l2_entries();
        let table_end = (first / per_table + 1) * per_table;
        let last = (offset + len).div_ceil(cs).min(table_end);
        let mut n = 0;
        for c in first..last {
            match self.lookup(&m, "write", c).map_err(|e| self.ctx(e))? {
                Cluster::Data(_) => break,
                _ => n += 1,
            }
        }
        if n == 0 {
            return Err(self.ctx(BlockError::corrupt(
                "write",
                format!("cluster {first} to allocate is allocated"),
            )));
        }
        let host_offset = m.alloc.allocate(n * cs, cs).map_err(|e| self.ctx(e))?;
        Ok(Allocation {
            guest_offset: offset,
            len: (n * cs).min(m.header.virtual_size() - offset),
            child: ChildRef::FILE,
            host_offset,
            granule: n * cs,
            reused: false,
        })
    }

    /// Links the clusters of `a`: their data is flushed first, then the L2
    /// entries are written.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        self.file.flush()?;
        let m = self.meta();
        let cs = m.header.cluster();
        let n = a.len.div_ceil(cs);
        let values: Vec<u64> = (0..n).map(|k| a.host_offset + k * cs).collect();
        self.link(&m, a.guest_offset / cs, &values)
            .map_err(|e| self.ctx(e))
    }

    /// The data write failed: give the space back if it is still last.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        let cs = m.header.cluster();
        m.alloc.undo(a.host_offset, a.len.div_ceil(cs) * cs);
    }

    /// Compresses the cluster at `offset` ([`crate::compress`]).
    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<bool> {
        QcowFormat::write_compressed(self, offset, data).map_err(|e| self.ctx(e))
    }

    /// Another process may have changed the image: read it again.
    fn invalidate(&self) -> Result<()> {
        self.reload()
    }

    /// QEMU's qcow cannot change its size; refused in qemu-img's words.
    fn resize(&self, _size: u64, _prealloc: Preallocation) -> Result<()> {
        Err(self.ctx(BlockError::unsupported_feature(
            "resize",
            "Image format driver does not support resize",
        )))
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }

    /// An encrypted image (blk has no AES) refuses reads and block status.
    fn check_read(&self, op: &str) -> Result<()> {
        if op != "length" && self.meta().header.encrypted() {
            return Err(self.ctx(no_secret(op)));
        }
        Ok(())
    }

    /// The fields qemu-img reports for qcow (it has no format-specific
    /// part).
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.header.virtual_size(),
            cluster_size: Some(m.header.cluster()),
            dirty_flag: false,
            backing_filename: m.backing_name.clone(),
            ..NodeInfo::default()
        })
    }

    /// Without a backing file a new image reads as zeros.
    fn has_zero_init(&self) -> bool {
        true
    }

    /// `blk commit` empties the image; the stored name cannot change.
    fn backing_control(&self) -> Option<&dyn block_core::control::BackingControl> {
        Some(self)
    }
}
