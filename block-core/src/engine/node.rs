//! [`FormatNode`]: the generic node every [`Format`] gets.

use super::format::{Allocation, ChildRef, Format, Mapping};
use super::iov;
use super::rangelock::RangeLock;
use super::read::{checked_map, read_backing, read_mapped, MappedSource};
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
use std::sync::Arc;

/// Largest zero buffer the engine writes at once when emulating zeroing.
const ZERO_CHUNK: u64 = 1 << 20;

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

    /// The format.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// Accepts writes again after an inactive open or [`FormatNode::inactivate`],
    /// re-reading the metadata first.
    pub fn activate(&self) -> Result<()> {
        self.format.invalidate()?;
        self.inactive.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes everything back and refuses writes until activated.
    pub fn inactivate(&self) -> Result<()> {
        self.flush()?;
        self.inactive.store(true, Ordering::Release);
        Ok(())
    }

    /// The read-only and inactive gates for an operation that changes the image.
    fn check_writable(&self, op: &str) -> Result<()> {
        if self.read_only {
            return Err(BlockError::read_only(op, "the image is open read-only"));
        }
        if self.inactive.load(Ordering::Acquire) {
            return Err(BlockError::new(
                ErrorKind::PermissionDenied,
                op,
                "the image is inactive (migration handoff)",
            ));
        }
        Ok(())
    }

    /// Checks that the request lies inside the disk.
    fn check_range(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        let size = self.format.size();
        if offset > size || len > size - offset {
            return Err(BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!(
                    "request of {len} bytes at {offset} is past the end of the {size}-byte image"
                ),
            )
            .at(offset));
        }
        Ok(())
    }

    fn child_of(&self, child: ChildRef) -> Result<Arc<dyn BlockNode>> {
        self.format.child(child).ok_or_else(|| {
            BlockError::corrupt(
                "map",
                format!(
                    "mapping names a missing {} child {}",
                    child.role.as_str(),
                    child.index
                ),
            )
        })
    }

    fn unit(&self) -> u64 {
        self.format.allocation_unit().max(1)
    }

    /// Writes guest data `bufs` (relative bytes `[0, len)`) at `offset`.
    fn write_data(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let total = iov_len(bufs);
        let mut pos = 0u64;
        while pos < total {
            let at = offset + pos;
            let m = checked_map(self, at, total - pos)?;
            if let Mapping::Data {
                child,
                host_offset,
                mut len,
                writable: true,
            } = m
            {
                // Extend over following in-place mappings contiguous on the host.
                while pos + len < total {
                    match checked_map(self, at + len, total - pos - len)? {
                        Mapping::Data {
                            child: c2,
                            host_offset: h2,
                            len: l2,
                            writable: true,
                        } if c2 == child && h2 == host_offset + len => len += l2,
                        _ => break,
                    }
                }
                let sub = iov::sub(bufs, pos, len);
                let fua = flags.without(ReqFlags::COMPRESSED);
                self.child_of(child)?
                    .write_vectored(host_offset, &sub, fua)?;
                pos += len;
            } else {
                // Extend over following mappings that need allocation too, so
                // one allocation (and one child write) covers the whole span.
                let mut len = m.len();
                while pos + len < total {
                    match checked_map(self, at + len, total - pos - len)? {
                        Mapping::Data { writable: true, .. } => break,
                        next => len += next.len(),
                    }
                }
                pos += self.write_allocating(at, len, bufs, pos)?;
            }
        }
        Ok(())
    }

    /// Allocates the units under `[at, at+len)` and writes the guest bytes
    /// there with copy-on-write fill; returns how many guest bytes it wrote.
    fn write_allocating(&self, at: u64, len: u64, bufs: &[IoSlice<'_>], rel: u64) -> Result<u64> {
        let unit = self.unit();
        let size = self.format.size();
        let astart = at - at % unit;
        let aend = (at + len).div_ceil(unit).saturating_mul(unit);
        let _guard = self.allocating.lock(astart, aend);
        // Another writer may have allocated the range while we waited.
        if let Mapping::Data {
            writable: true,
            len: l,
            ..
        } = checked_map(self, at, len)?
        {
            let n = l.min(len);
            self.write_data(at, &iov::sub(bufs, rel, n), ReqFlags::NONE)?;
            return Ok(n);
        }
        let alloc = self.format.allocate(astart, aend - astart)?;
        if alloc.guest_offset != astart || alloc.len == 0 || alloc.guest_offset + alloc.len <= at {
            return Err(BlockError::corrupt(
                "write",
                format!(
                    "format allocated {} bytes at {} for {astart}",
                    alloc.len, alloc.guest_offset
                ),
            ));
        }
        let aend = astart + alloc.len;
        let data_end = (at + len).min(aend);
        let res = self.fill_and_write(&alloc, at, data_end, size, bufs, rel);
        match res {
            Ok(()) => self.format.commit(&alloc)?,
            Err(e) => {
                self.format.abort(&alloc);
                return Err(e);
            }
        }
        Ok(data_end - at)
    }

    /// Writes one allocation: old content before `at` and after `data_end`
    /// (copy-on-write), guest data between, as one child write.
    fn fill_and_write(
        &self,
        alloc: &Allocation,
        at: u64,
        data_end: u64,
        size: u64,
        bufs: &[IoSlice<'_>],
        rel: u64,
    ) -> Result<()> {
        let astart = alloc.guest_offset;
        let aend = astart + alloc.len;
        let mut head = vec![0u8; (at - astart) as usize];
        if !head.is_empty() {
            read_mapped(self, astart, &mut [IoSliceMut::new(&mut head)])?;
        }
        let tail_end = aend.min(size.max(data_end));
        let mut tail = vec![0u8; (tail_end - data_end) as usize];
        if !tail.is_empty() {
            read_mapped(self, data_end, &mut [IoSliceMut::new(&mut tail)])?;
        }
        let mut out = Vec::with_capacity(bufs.len() + 2);
        out.push(IoSlice::new(&head));
        out.extend(iov::sub(bufs, rel, data_end - at));
        out.push(IoSlice::new(&tail));
        out.retain(|b| !b.is_empty());
        self.child_of(alloc.child)?
            .write_vectored(alloc.host_offset, &out, ReqFlags::NONE)
    }

    /// Writes zero buffers over `[offset, offset+len)` (zeroing emulation).
    fn write_zero_buffers(&self, offset: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK);
            self.write_data(
                offset + done,
                &[IoSlice::new(&zeros[..n as usize])],
                ReqFlags::NONE,
            )?;
            done += n;
        }
        Ok(())
    }

    /// The unit-aligned middle of a range (empty when there is none).
    fn aligned_middle(&self, offset: u64, len: u64) -> (u64, u64) {
        let unit = self.unit();
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
}

impl<F: Format> MappedSource for FormatNode<F> {
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        self.format.map(offset, len)
    }
    fn child_node(&self, child: ChildRef) -> Result<Arc<dyn BlockNode>> {
        self.child_of(child)
    }
    fn read_unallocated(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()> {
        read_backing(self.format.backing().as_deref(), offset, bufs)
    }
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.format.read_special(offset, buf)
    }
}

impl<F: Format> BlockNode for FormatNode<F> {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        _flags: ReqFlags,
    ) -> Result<()> {
        self.check_range("read", offset, iov_len_mut(bufs))?;
        read_mapped(self, offset, bufs)
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        self.check_writable("write")?;
        self.check_range("write", offset, iov_len(bufs))?;
        if flags.contains(ReqFlags::COMPRESSED) {
            return Err(BlockError::unsupported("compressed write"));
        }
        self.write_data(offset, bufs, flags.without(ReqFlags::FUA))?;
        if flags.contains(ReqFlags::FUA) {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
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
        Ok(self.format.size())
    }

    fn info(&self) -> Result<NodeInfo> {
        self.format.info()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable("discard")?;
        self.check_range("discard", offset, len)?;
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
        let (a, b) = self.aligned_middle(offset, len);
        let unmap = flags.contains(ZeroFlags::MAY_UNMAP);
        let done_in_metadata = a < b && {
            let _guard = self.allocating.lock(a, b);
            self.format.make_zero(a, b - a, unmap)?
        };
        let fallback = |o: u64, l: u64| -> Result<()> {
            if l == 0 {
                return Ok(());
            }
            if flags.contains(ZeroFlags::NO_FALLBACK) {
                return Err(BlockError::unsupported("write_zeroes"));
            }
            self.write_zero_buffers(o, l)
        };
        if done_in_metadata {
            fallback(offset, a - offset)?;
            fallback(b, offset + len - b)?;
        } else {
            fallback(offset, len)?;
        }
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

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.check_range("block_status", offset, len)?;
        if len == 0 {
            return Ok(Extent::default());
        }
        let m = checked_map(self, offset, len)?;
        Ok(match m {
            Mapping::Data {
                child,
                host_offset,
                len,
                ..
            } => Extent {
                length: len,
                flags: ExtentFlags::DATA
                    .with(ExtentFlags::ALLOCATED)
                    .with(ExtentFlags::OFFSET_VALID),
                mapped_offset: host_offset,
                mapped_child: child.role,
            },
            Mapping::Zero { len, allocated } => Extent {
                length: len,
                flags: if allocated {
                    ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED)
                } else {
                    ExtentFlags::ZERO
                },
                ..Extent::default()
            },
            Mapping::Special { len } => Extent {
                length: len,
                flags: ExtentFlags::DATA
                    .with(ExtentFlags::ALLOCATED)
                    .with(ExtentFlags::COMPRESSED),
                ..Extent::default()
            },
            Mapping::Unallocated { len } => match self.format.backing() {
                None => Extent {
                    length: len,
                    flags: ExtentFlags::ZERO,
                    ..Extent::default()
                },
                Some(b) => {
                    let blen = b.length()?;
                    if offset >= blen {
                        Extent {
                            length: len,
                            flags: ExtentFlags::ZERO,
                            ..Extent::default()
                        }
                    } else {
                        let e = b.block_status(offset, len.min(blen - offset))?;
                        Extent {
                            length: e.length.clamp(1, len),
                            flags: e
                                .flags
                                .without(ExtentFlags::ALLOCATED)
                                .without(ExtentFlags::OFFSET_VALID)
                                .without(ExtentFlags::RECURSE),
                            ..Extent::default()
                        }
                    }
                }
            },
        })
    }

    fn has_zero_init(&self) -> bool {
        self.format.has_zero_init()
    }

    fn limits(&self) -> IoLimits {
        let children = (self.format.flushed_children().into_iter())
            .filter_map(|c| self.format.child(c))
            .fold(IoLimits::default(), |l, n| l.merge(n.limits()));
        IoLimits::for_format(children, self.format.allocation_unit())
    }

    fn capabilities(&self) -> NodeCapabilities {
        NodeCapabilities::for_format(!self.read_only)
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
        match self.format.migration() {
            Some(m) => Some(m),
            None => Some(self),
        }
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
