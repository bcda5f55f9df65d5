//! An open raw image: offset translation and bounds over the file child.

use block_core::{
    iov_len, iov_len_mut, BlockError, BlockNode, ErrorKind, Extent, IoLimits, MigrationControl,
    NodeCapabilities, NodeInfo, Operation, Preallocation, ReqFlags, Result, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A raw image over a child node, optionally restricted to a window.
pub struct RawNode {
    child: Arc<dyn BlockNode>,
    filename: String,
    offset: u64,
    /// A fixed window size, or `None` to follow the child's length.
    fixed_size: Option<u64>,
    /// The current size (the window, or the child length minus offset).
    size: AtomicU64,
}

impl RawNode {
    /// A raw node over `child` starting at `offset`, `size` bytes long (or to
    /// the end of the child).
    pub fn new(
        child: Arc<dyn BlockNode>,
        filename: String,
        offset: u64,
        size: Option<u64>,
    ) -> Result<RawNode> {
        let node = RawNode {
            child,
            filename,
            offset,
            fixed_size: size,
            size: AtomicU64::new(0),
        };
        node.refresh_size()?;
        Ok(node)
    }

    fn refresh_size(&self) -> Result<()> {
        let child_len = self.child.length()?;
        let size = match self.fixed_size {
            Some(s) => {
                if self.offset.checked_add(s).is_none_or(|end| end > child_len) {
                    return Err(BlockError::invalid(
                        "open",
                        format!(
                            "The sum of offset ({}) and size ({s}) has to be smaller or equal to the actual size of the containing file ({child_len})",
                            self.offset
                        ),
                    )
                    .in_file(&self.filename));
                }
                s
            }
            None => {
                if self.offset > child_len {
                    return Err(BlockError::invalid(
                        "open",
                        format!(
                            "offset {} is past the end of the file ({child_len})",
                            self.offset
                        ),
                    )
                    .in_file(&self.filename));
                }
                child_len - self.offset
            }
        };
        self.size.store(size, Ordering::Release);
        Ok(())
    }

    fn check_range(&self, op: &str, offset: u64, len: u64) -> Result<u64> {
        let size = self.size.load(Ordering::Acquire);
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(self.offset + offset),
            _ => Err(BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!("request of {len} bytes exceeds the image size {size}"),
            )
            .at(offset)
            .in_file(&self.filename)),
        }
    }
}

impl BlockNode for RawNode {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        flags: ReqFlags,
    ) -> Result<()> {
        let off = self.check_range("read", offset, iov_len_mut(bufs))?;
        self.child.read_vectored(off, bufs, flags)
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let off = self.check_range("write", offset, iov_len(bufs))?;
        self.child
            .write_vectored(off, bufs, flags.without(ReqFlags::COMPRESSED))
    }

    fn flush(&self) -> Result<()> {
        self.child.flush()
    }

    fn length(&self) -> Result<u64> {
        if self.fixed_size.is_none() {
            self.refresh_size()?;
        }
        Ok(self.size.load(Ordering::Acquire))
    }

    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "raw".to_string(),
            virtual_size: self.length()?,
            ..NodeInfo::default()
        })
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let off = self.check_range("discard", offset, len)?;
        self.child.discard(off, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        let off = self.check_range("write_zeroes", offset, len)?;
        self.child.write_zeroes(off, len, flags)
    }

    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        if self.fixed_size.is_some() || self.offset != 0 {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                Operation::Truncate,
                "cannot resize a raw image with an offset or size window",
            )
            .in_file(&self.filename));
        }
        self.child.truncate(size, prealloc)?;
        self.refresh_size()
    }

    fn allocated_size(&self) -> Result<u64> {
        self.child.allocated_size()
    }

    /// The child's: every request goes to it unchanged but for the window
    /// offset. An offset that is not a multiple of the child's alignment
    /// cannot be made up for by any alignment here (each request lands
    /// `offset % alignment` off), so the child's alignment stands and the
    /// child refuses or bounces such requests itself.
    fn limits(&self) -> IoLimits {
        self.child.limits()
    }

    /// The child's: zeroing, discard and FUA are passed through as they are.
    fn capabilities(&self) -> NodeCapabilities {
        self.child.capabilities()
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let off = self.check_range("block_status", offset, len)?;
        let mut e = self.child.block_status(off, len)?;
        e.length = e.length.min(len);
        Ok(e)
    }

    fn has_zero_init(&self) -> bool {
        self.offset == 0 && self.fixed_size.is_none() && self.child.has_zero_init()
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}

impl MigrationControl for RawNode {
    fn invalidate_cache(&self) -> Result<()> {
        // The host has already invalidated the child; only the size is cached here.
        self.refresh_size()
    }
}
