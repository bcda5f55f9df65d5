//! # blk-null
//!
//! The `null` protocol driver (`null-co://`): reads return zeros and writes
//! are dropped. A baseline for benchmarks. Depends on block-core only.
#![warn(missing_docs)]

use block_core::{
    BlockDriver, BlockError, BlockNode, DriverCaps, DriverKind, ErrorKind, Extent, ExtentFlags,
    HostServices, IoLimits, MigrationControl, NodeCapabilities, NodeInfo, OpenRequest, OptDesc,
    OptKind, Preallocation, ReqFlags, Result, ThreadModel, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The default size of a null node (1 GiB, as QEMU's null-co).
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// The `null` protocol driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullDriver;

impl NullDriver {
    /// A new driver instance.
    pub const fn new() -> NullDriver {
        NullDriver
    }
}

impl BlockDriver for NullDriver {
    fn name(&self) -> &str {
        "null-co"
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Protocol
    }

    fn caps(&self) -> DriverCaps {
        DriverCaps::RESIZE.with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "reads zeros, drops writes (benchmark baseline)"
    }

    fn protocol_prefixes(&self) -> Vec<String> {
        vec!["null-co".to_string(), "null".to_string()]
    }

    /// The options `open` reads: the size, and QEMU's `read-zeroes`
    /// (accepted; blk's null node always reads zeros).
    fn open_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::new("size", OptKind::Size, Some("1G"), "Size of the null block"),
            OptDesc::new(
                "read-zeroes",
                OptKind::Bool,
                Some("on"),
                "Return zeros on reads (blk always does)",
            ),
        ]
    }

    fn open(&self, req: &OpenRequest, _host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let o = block_core::read_open_options(self, req)?;
        let size = o.get_size("size")?.unwrap_or(DEFAULT_SIZE);
        Ok(Box::new(NullNode {
            size: AtomicU64::new(size),
        }))
    }
}

/// An open null node.
#[derive(Debug)]
pub struct NullNode {
    size: AtomicU64,
}

impl NullNode {
    fn check(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        let size = self.size.load(Ordering::Relaxed);
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(BlockError::new(ErrorKind::OutOfRange, op, "request past the end").at(offset)),
        }
    }
}

impl BlockNode for NullNode {
    fn read_vectored(&self, offset: u64, bufs: &mut [IoSliceMut<'_>], _f: ReqFlags) -> Result<()> {
        self.check("read", offset, block_core::iov_len_mut(bufs))?;
        for b in bufs.iter_mut() {
            b.fill(0);
        }
        Ok(())
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], _f: ReqFlags) -> Result<()> {
        self.check("write", offset, block_core::iov_len(bufs))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn length(&self) -> Result<u64> {
        Ok(self.size.load(Ordering::Relaxed))
    }

    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "null-co".to_string(),
            virtual_size: self.length()?,
            ..NodeInfo::default()
        })
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check("discard", offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, _flags: ZeroFlags) -> Result<()> {
        self.check("write_zeroes", offset, len)
    }

    fn truncate(&self, size: u64, _prealloc: Preallocation) -> Result<()> {
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }

    fn allocated_size(&self) -> Result<u64> {
        Ok(0)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        Ok(Extent {
            length: len,
            flags: ExtentFlags::ZERO
                .with(ExtentFlags::ALLOCATED)
                .with(ExtentFlags::OFFSET_VALID),
            mapped_offset: offset,
            ..Extent::default()
        })
    }

    fn has_zero_init(&self) -> bool {
        true
    }

    /// Byte-granular, no limits (the default [`IoLimits`]).
    fn limits(&self) -> IoLimits {
        IoLimits::default()
    }

    /// Everything, at once and for free: nothing is stored, so zeroing,
    /// discard and FUA are no-ops and every handle sees the same zeros.
    fn capabilities(&self) -> NodeCapabilities {
        NodeCapabilities {
            can_zero: true,
            can_fast_zero: true,
            can_fua: true,
            can_discard: true,
            multi_conn_safe: true,
            thread_model: ThreadModel::Parallel,
        }
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}

impl MigrationControl for NullNode {
    fn invalidate_cache(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;

block_core::register_driver!(NullDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("null", [NullDriver::new()]);
