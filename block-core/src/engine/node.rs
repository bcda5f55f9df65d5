//! [`FormatNode`]: the generic node every [`Format`] gets.

use super::format::{ChildRef, Format, HostRef, Mapping};
use super::rangelock::RangeLock;
use super::read::{checked_map, read_mapped};
use super::write::{read_lock, GuestIo};
use crate::control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
use crate::error::{BlockError, ErrorKind, Result};
use crate::info::NodeInfo;
use crate::limits::{IoLimits, NodeCapabilities};
use crate::node::{iov_len, iov_len_mut, BlockNode};
use crate::types::{Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most mappings one block status call merges (keeps the call cheap).
const STATUS_STEPS: u32 = 65536;

/// A [`BlockNode`] over a [`Format`]: the format says where data lives, the
/// node does the I/O (see the module documentation).
pub struct FormatNode<F: Format> {
    format: F,
    read_only: bool,
    inactive: AtomicBool,
    allocating: RangeLock,
}

impl<F: Format> FormatNode<F> {
    /// A node over `format`; `read_only` refuses every change, `inactive`
    /// (incoming migration) refuses changes until [`FormatNode::activate`].
    pub fn new(format: F, read_only: bool, inactive: bool) -> FormatNode<F> {
        FormatNode {
            format,
            read_only,
            inactive: AtomicBool::new(inactive),
            allocating: RangeLock::new(),
        }
    }

    /// A node over `format` opened by `req`: read-only and inactive as its
    /// flags say.
    pub fn for_request(format: F, req: &crate::driver::OpenRequest) -> FormatNode<F> {
        use crate::types::OpenFlags;
        let flag = |f: OpenFlags| req.flags.contains(f);
        FormatNode::new(
            format,
            flag(OpenFlags::READ_ONLY),
            flag(OpenFlags::INACTIVE),
        )
    }

    /// The format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// Accepts writes again after an inactive open or [`FormatNode::inactivate`]
    /// once the format took the image over ([`Format::activate`]: re-reads
    /// the metadata by default).
    pub fn activate(&self) -> Result<()> {
        self.format.activate()?;
        self.inactive.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes everything back ([`Format::inactivate`]) and refuses changes
    /// until activated.
    pub fn inactivate(&self) -> Result<()> {
        if self.inactive.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.read_only {
            self.format.inactivate()?;
        }
        self.inactive.store(true, Ordering::Release);
        Ok(())
    }

    /// True while changes are refused for a migration handoff.
    pub fn is_inactive(&self) -> bool {
        self.inactive.load(Ordering::Acquire)
    }

    /// The read-only and inactive gates for an operation that changes the
    /// image, then the format's own ([`Format::check_write`]).
    fn check_writable(&self, op: &str) -> Result<()> {
        if self.read_only {
            return Err(self
                .format
                .error_context(BlockError::read_only(op, "the image is open read-only")));
        }
        if self.inactive.load(Ordering::Acquire) {
            return Err(self.format.error_context(BlockError::read_only(
                op,
                "the image is inactive (migration handoff)",
            )));
        }
        self.format.check_write(op)
    }

    /// Checks that the request lies inside the disk.
    fn check_range(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        let size = self.format.size();
        if offset > size || len > size - offset {
            return Err(self.format.error_context(
                BlockError::new(
                    ErrorKind::OutOfRange,
                    op,
                    format!(
                        "request of {len} bytes at {offset} is past the end of the {size}-byte image"
                    ),
                )
                .at(offset),
            ));
        }
        Ok(())
    }

    /// The guest-data path over the format with the node's in-flight
    /// allocation table.
    fn io(&self) -> GuestIo<'_, F> {
        GuestIo::new(&self.format, &self.allocating)
    }

    /// The unit-aligned middle of a range (empty when there is none).
    fn aligned_middle(&self, offset: u64, len: u64) -> (u64, u64) {
        let unit = self.format.allocation_unit().max(1);
        let end = offset + len;
        let a = offset.div_ceil(unit) * unit;
        // The last partial unit of the disk counts as whole.
        let b = if end == self.format.size() {
            end
        } else {
            end - end % unit
        };
        if a >= b {
            (offset, offset)
        } else {
            (a, b)
        }
    }

    /// Block status flags of one mapping at `offset`, with the host
    /// location it reports, if any.
    fn status_of(
        &self,
        m: &Mapping,
        offset: u64,
        backing_len: Option<u64>,
    ) -> (ExtentFlags, Option<(ChildRef, u64)>) {
        let with_host = |f: ExtentFlags, h: &Option<HostRef>| match h {
            Some(h) => (f.with(ExtentFlags::OFFSET_VALID), Some((h.child, h.offset))),
            None => (f, None),
        };
        match m {
            Mapping::Data {
                child, host_offset, ..
            } => (
                ExtentFlags::DATA
                    .with(ExtentFlags::ALLOCATED)
                    .with(ExtentFlags::OFFSET_VALID),
                Some((*child, *host_offset)),
            ),
            Mapping::Zero {
                allocated, host, ..
            } => {
                let f = if *allocated {
                    ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED)
                } else {
                    ExtentFlags::ZERO
                };
                with_host(f, host)
            }
            Mapping::Special { .. } => (
                ExtentFlags::DATA
                    .with(ExtentFlags::ALLOCATED)
                    .with(ExtentFlags::COMPRESSED),
                None,
            ),
            // As QEMU: unallocated reads as zeros without a backing node
            // and past its end; else the caller walks the chain.
            Mapping::Unallocated { host, .. } => match backing_len {
                Some(blen) if offset < blen => with_host(ExtentFlags(0), host),
                _ => with_host(ExtentFlags::ZERO, host),
            },
        }
    }
}

impl<F: Format + std::fmt::Debug> std::fmt::Debug for FormatNode<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatNode")
            .field("format", &self.format)
            .field("read_only", &self.read_only)
            .field("inactive", &self.is_inactive())
            .finish()
    }
}

/// A node derefs to its format, so that a driver's own tests and tools
/// reach the format's state and capability methods through the node.
impl<F: Format> std::ops::Deref for FormatNode<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.format
    }
}

impl<F: Format> BlockNode for FormatNode<F> {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        _flags: ReqFlags,
    ) -> Result<()> {
        self.format.check_read("read")?;
        self.check_range("read", offset, iov_len_mut(bufs))?;
        let _in_flight = self.format.in_flight().map(read_lock);
        read_mapped(&self.format, offset, bufs)
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let len = iov_len(bufs);
        self.check_writable("write")?;
        self.check_range("write", offset, len)?;
        self.format.will_change(offset, len)?;
        if flags.contains(ReqFlags::COMPRESSED) {
            self.io().write_compressed(offset, bufs)?;
        } else {
            self.io().write(offset, bufs)?;
        }
        if flags.contains(ReqFlags::FUA) {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.read_only || self.inactive.load(Ordering::Acquire) {
            return Ok(());
        }
        self.format.flush_metadata()?;
        for c in self.format.flushed_children() {
            if let Some(n) = self.format.child(c) {
                n.flush()?;
            }
        }
        Ok(())
    }

    fn length(&self) -> Result<u64> {
        self.format.check_read("length")?;
        Ok(self.format.size())
    }

    fn info(&self) -> Result<NodeInfo> {
        self.format.info()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable("discard")?;
        self.check_range("discard", offset, len)?;
        self.format.will_change(offset, len)?;
        let (a, b) = self.aligned_middle(offset, len);
        if a < b {
            let _guard = self.allocating.lock(a, b);
            self.format.discard(a, b - a)?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        self.check_writable("write_zeroes")?;
        self.check_range("write_zeroes", offset, len)?;
        self.format.will_change(offset, len)?;
        self.io().write_zeroes(offset, len, flags)?;
        if flags.contains(ZeroFlags::FUA) {
            self.flush()?;
        }
        Ok(())
    }

    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        self.check_writable("truncate")?;
        let _guard = self.allocating.lock(0, u64::MAX);
        self.format.resize(size, prealloc)
    }

    fn allocated_size(&self) -> Result<u64> {
        self.format.allocated_size()
    }

    /// The status of the mappings at `offset`, merged while flags stay the
    /// same and reported host offsets stay contiguous (at most
    /// `STATUS_STEPS` mappings per call).
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.format.check_read("block_status")?;
        self.check_range("block_status", offset, len)?;
        if len == 0 {
            return Ok(Extent::default());
        }
        let backing_len = match self.format.backing() {
            Some(b) => Some(b.length()?),
            None => None,
        };
        let first = checked_map(&self.format, offset, len)?;
        let (flags, host) = self.status_of(&first, offset, backing_len);
        let mut pos = offset + first.len();
        let mut steps = 1;
        while pos < offset + len && steps < STATUS_STEPS {
            let m = checked_map(&self.format, pos, offset + len - pos)?;
            let (f, h) = self.status_of(&m, pos, backing_len);
            let contiguous = match (host, h) {
                (Some((c0, h0)), Some((c, h))) => c == c0 && h == h0 + (pos - offset),
                _ => true,
            };
            if f != flags || !contiguous {
                break;
            }
            pos += m.len();
            steps += 1;
        }
        let recurse = flags.contains(ExtentFlags::DATA)
            && flags.contains(ExtentFlags::OFFSET_VALID)
            && self.format.sparse_data();
        Ok(Extent {
            length: pos - offset,
            flags: if recurse {
                flags.with(ExtentFlags::RECURSE)
            } else {
                flags
            },
            mapped_offset: host.map_or(0, |(_, h)| h),
            mapped_child: host.map_or(ChildRef::FILE.role, |(c, _)| c.role),
        })
    }

    fn has_zero_init(&self) -> bool {
        self.format.has_zero_init()
    }

    fn limits(&self) -> IoLimits {
        self.format.limits()
    }

    fn capabilities(&self) -> NodeCapabilities {
        let caps = self.format.capabilities();
        if self.read_only {
            let off = NodeCapabilities::for_format(false);
            return NodeCapabilities {
                can_zero: off.can_zero,
                can_fast_zero: off.can_fast_zero,
                can_fua: off.can_fua,
                can_discard: off.can_discard,
                ..caps
            };
        }
        caps
    }

    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        self.format.snapshots()
    }
    fn check_control(&self) -> Option<&dyn CheckControl> {
        self.format.check_control()
    }
    fn amend_control(&self) -> Option<&dyn AmendControl> {
        self.format.amend_control()
    }
    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
    fn backing_control(&self) -> Option<&dyn BackingControl> {
        self.format.backing_control()
    }
    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        self.format.bitmap_control()
    }
}

impl<F: Format> MigrationControl for FormatNode<F> {
    fn invalidate_cache(&self) -> Result<()> {
        self.format.invalidate()
    }
    fn inactivate(&self) -> Result<()> {
        FormatNode::inactivate(self)
    }
    fn activate(&self) -> Result<()> {
        FormatNode::activate(self)
    }
}
