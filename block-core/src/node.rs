//! The open node: the I/O and management interface of one opened image or
//! protocol instance. Every method takes `&self`; implementations must be safe
//! to call from many threads at once.

use crate::error::{BlockError, Result};
use crate::info::{CheckReport, NodeInfo, SnapshotInfo};
use crate::types::{CheckMode, Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
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

    /// Checks (and with `mode`, repairs) the node's metadata.
    fn check(&self, _mode: CheckMode) -> Result<CheckReport> {
        Err(BlockError::unsupported("check"))
    }

    /// Lists internal snapshots.
    fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        Err(BlockError::unsupported("snapshot_list"))
    }

    /// Creates an internal snapshot named `name`.
    fn snapshot_create(&self, _name: &str) -> Result<()> {
        Err(BlockError::unsupported("snapshot_create"))
    }

    /// Reverts the disk to the snapshot with this ID or name.
    fn snapshot_apply(&self, _id_or_name: &str) -> Result<()> {
        Err(BlockError::unsupported("snapshot_apply"))
    }

    /// Deletes the snapshot with this ID or name.
    fn snapshot_delete(&self, _id_or_name: &str) -> Result<()> {
        Err(BlockError::unsupported("snapshot_delete"))
    }

    /// Rewrites the backing file name and format stored in the image
    /// (`None` removes the backing file). Does not reopen anything.
    fn change_backing_file(&self, _filename: Option<&str>, _format: Option<&str>) -> Result<()> {
        Err(BlockError::unsupported("change_backing_file"))
    }

    /// Drops every allocation of this image so that every range reads from
    /// the backing file (or as zeros without one), as after `commit`.
    fn make_empty(&self) -> Result<()> {
        Err(BlockError::unsupported("make_empty"))
    }

    /// Changes format options of an open image (`qemu-img amend`), given as
    /// `key=value` pairs that the driver checks against its amend schema.
    fn amend(&self, _options: &[(String, String)]) -> Result<()> {
        Err(BlockError::unsupported("amend"))
    }

    /// Persistent dirty bitmap control (`qemu-img bitmap` and queries): one
    /// operation described in JSON, answered in JSON. The request is an
    /// object with `"op"` (`add`, `remove`, `clear`, `enable`, `disable`,
    /// `merge`, `get`, `list`) and its operands; see the qcow2 driver's
    /// `bitmap/ops.rs` and docs/abi.md.
    fn bitmap(&self, _request: &str) -> Result<String> {
        Err(BlockError::unsupported("bitmap"))
    }

    /// Drops every piece of cached mutable metadata and re-reads it from the
    /// children, which another process may have changed. Fails cleanly (and
    /// keeps the node unusable for writes) if the image changed in a way the
    /// driver cannot take.
    fn invalidate_cache(&self) -> Result<()> {
        Err(BlockError::unsupported("invalidate_cache"))
    }

    /// Gives up ownership for a migration handoff: writes back every cache,
    /// clears dirty state, and refuses writes until [`BlockNode::activate`].
    fn inactivate(&self) -> Result<()> {
        self.flush()
    }

    /// Takes ownership after a handoff (or after an inactive open): re-reads
    /// metadata (see [`BlockNode::invalidate_cache`]) and accepts writes.
    fn activate(&self) -> Result<()> {
        self.invalidate_cache()
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
