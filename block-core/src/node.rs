//! The open node: the I/O and info interface of one opened image or
//! protocol instance, with accessors for the management capabilities it
//! offers ([`crate::control`]). Every method takes `&self`; implementations must be safe
//! to call from many threads at once.

use crate::control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
use crate::error::{BlockError, Result};
use crate::info::NodeInfo;
use crate::limits::{IoLimits, NodeCapabilities};
use crate::types::{Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};

/// One open node of a block graph (a format over its children, or a protocol).
///
/// Transfers are all-or-error: a read fills every buffer or fails, a write
/// stores every byte or fails. Operations a driver does not implement keep
/// their default body, which returns an [`crate::ErrorKind::Unsupported`]
/// error; hosts emulate those where they can (write_zeroes by writing zeros,
/// FUA by flush).
pub trait BlockNode: Send + Sync {
    /// Reads `bufs` in order starting at byte `offset`.
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        flags: ReqFlags,
    ) -> Result<()>;

    /// Writes `bufs` in order starting at byte `offset`. With
    /// [`ReqFlags::FUA`] the data is durable on return; with
    /// [`ReqFlags::COMPRESSED`] it is stored compressed where the format can.
    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()>;

    /// Makes every completed write durable (metadata included).
    fn flush(&self) -> Result<()>;

    /// The guest-visible length in bytes.
    fn length(&self) -> Result<u64>;

    /// Format-level description of the node.
    fn info(&self) -> Result<NodeInfo>;

    /// Deallocates a range; its content afterwards is unspecified but stable
    /// (reads as zeros or as the backing file, depending on the format).
    fn discard(&self, _offset: u64, _len: u64) -> Result<()> {
        Err(BlockError::unsupported("discard"))
    }

    /// Makes a range read as zeros, deallocating it with [`ZeroFlags::MAY_UNMAP`].
    fn write_zeroes(&self, _offset: u64, _len: u64, _flags: ZeroFlags) -> Result<()> {
        Err(BlockError::unsupported("write_zeroes"))
    }

    /// Changes the guest-visible length.
    fn truncate(&self, _size: u64, _prealloc: Preallocation) -> Result<()> {
        Err(BlockError::unsupported("truncate"))
    }

    /// Bytes of storage the node and its children use (qemu-img's actual-size).
    fn allocated_size(&self) -> Result<u64> {
        Err(BlockError::unsupported("allocated_size"))
    }

    /// The status of the range starting at `offset`, at most `len` bytes
    /// long; the returned extent's length says how far the status holds.
    /// The default reports the whole range as allocated data.
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let _ = offset;
        Ok(Extent {
            length: len,
            flags: ExtentFlags::DATA.with(ExtentFlags::ALLOCATED),
            ..Extent::default()
        })
    }

    /// True when a freshly created node of this kind reads as zeros.
    fn has_zero_init(&self) -> bool {
        false
    }

    /// Request shape constraints (alignment, transfer sizes).
    fn limits(&self) -> IoLimits {
        IoLimits::default()
    }

    /// What the node does natively. The default claims nothing.
    fn capabilities(&self) -> NodeCapabilities {
        NodeCapabilities::default()
    }

    /// Internal snapshots, if the node has them.
    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        None
    }

    /// Metadata check and repair, if the node has it.
    fn check_control(&self) -> Option<&dyn CheckControl> {
        None
    }

    /// Changing format options of the open image, if the node can.
    fn amend_control(&self) -> Option<&dyn AmendControl> {
        None
    }

    /// The migration handoff (invalidate, inactivate, activate), if the node
    /// takes part in it.
    fn migration(&self) -> Option<&dyn MigrationControl> {
        None
    }

    /// The stored backing-file reference and make_empty, if the format has
    /// backing files.
    fn backing_control(&self) -> Option<&dyn BackingControl> {
        None
    }

    /// Persistent dirty bitmaps, if the format stores them.
    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        None
    }
}

/// Convenience helpers over [`BlockNode`] for single-buffer I/O.
pub trait BlockNodeExt: BlockNode {
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_vectored(offset, &mut [IoSliceMut::new(buf)], ReqFlags::NONE)
    }
    /// Writes `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_vectored(offset, &[IoSlice::new(buf)], ReqFlags::NONE)
    }
}

impl<T: BlockNode + ?Sized> BlockNodeExt for T {}

/// Total length of a set of buffers.
pub fn iov_len(bufs: &[IoSlice<'_>]) -> u64 {
    bufs.iter().map(|b| b.len() as u64).sum()
}

/// Total length of a set of mutable buffers.
pub fn iov_len_mut(bufs: &[IoSliceMut<'_>]) -> u64 {
    bufs.iter().map(|b| b.len() as u64).sum()
}
