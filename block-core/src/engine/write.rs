//! The write side of the engine over a [`Format`]: in-place writes merged
//! per host run, allocating writes with copy-on-write fill (whole granules)
//! serialised per unit, compressed writes, and zeroing (metadata where the
//! format can, zero buffers where it cannot).

use super::format::{Allocation, ChildRef, Format, Mapping};
use super::iov;
use super::rangelock::RangeLock;
use super::read::{checked_map, read_mapped, MappedSource};
use crate::error::{BlockError, Result};
use crate::node::{iov_len, BlockNode};
use crate::types::{ExtentFlags, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The in-flight guard of a request ([`Format::in_flight`]).
pub(crate) fn read_lock(l: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Largest zero buffer the engine writes at once when emulating zeroing.
const ZERO_CHUNK: u64 = 1 << 20;

/// The guest-data path over a format, without gates, bounds checks or
/// [`Format::will_change`] notifications (the node's entry points do
/// those). [`super::FormatNode`] uses it with its in-flight allocation
/// table; a format's own operation that must write guest data while guest
/// I/O is quiesced (qcow2 zeroing the new area of a grown disk) uses it
/// over itself with a lock of its own.
pub struct GuestIo<'a, F: Format + ?Sized> {
    format: &'a F,
    allocating: &'a RangeLock,
}

impl<'a, F: Format + ?Sized> GuestIo<'a, F> {
    /// The data path over `format`; allocating writes and metadata zeroing
    /// hold their units in `allocating`.
    pub fn new(format: &'a F, allocating: &'a RangeLock) -> GuestIo<'a, F> {
        GuestIo { format, allocating }
    }

    fn unit(&self) -> u64 {
        self.format.allocation_unit().max(1)
    }

    fn child_of(&self, child: ChildRef) -> Result<Arc<dyn BlockNode>> {
        self.format.child_node(child)
    }

    /// One data write to a child, checked by the format first.
    fn write_child(&self, child: ChildRef, host: u64, bufs: &[IoSlice<'_>]) -> Result<()> {
        self.format.check_data_write(child, host, iov_len(bufs))?;
        self.child_of(child)?
            .write_vectored(host, bufs, ReqFlags::NONE)
    }

    /// Writes guest data `bufs` at `offset`: in place where the mapping is
    /// writable (one child write per host run), allocating elsewhere.
    pub fn write(&self, offset: u64, bufs: &[IoSlice<'_>]) -> Result<()> {
        let total = iov_len(bufs);
        let mut pos = 0u64;
        while pos < total {
            let at = offset + pos;
            let m = checked_map(self.format, at, total - pos)?;
            if let Mapping::Data {
                child,
                host_offset,
                mut len,
                writable: true,
            } = m
            {
                // Extend over following in-place mappings contiguous on the host.
                while pos + len < total {
                    match checked_map(self.format, at + len, total - pos - len)? {
                        Mapping::Data {
                            child: c2,
                            host_offset: h2,
                            len: l2,
                            writable: true,
                        } if c2 == child && h2 == host_offset + len => len += l2,
                        _ => break,
                    }
                }
                let _in_flight = self.format.in_flight().map(read_lock);
                self.write_child(child, host_offset, &iov::sub(bufs, pos, len))?;
                pos += len;
            } else {
                // Extend over following mappings that need allocation too, so
                // one allocation (and one child write) may cover the span.
                let mut len = m.len();
                while pos + len < total {
                    match checked_map(self.format, at + len, total - pos - len)? {
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
        let astart = at - at % unit;
        let aend = (at + len).div_ceil(unit).saturating_mul(unit);
        let _guard = self.allocating.lock(astart, aend);
        // Another writer may have allocated the range while we waited.
        if let Mapping::Data {
            writable: true,
            len: l,
            ..
        } = checked_map(self.format, at, len)?
        {
            let n = l.min(len);
            self.write(at, &iov::sub(bufs, rel, n))?;
            return Ok(n);
        }
        let alloc = self.format.allocate(astart, aend - astart)?;
        let g = alloc.granule;
        if alloc.guest_offset != astart
            || alloc.len == 0
            || alloc.guest_offset + alloc.len <= at
            || !g.is_power_of_two() && g != alloc.len
        {
            return Err(BlockError::corrupt(
                "write",
                format!(
                    "format allocated {} bytes at {} (granule {g}) for {astart}",
                    alloc.len, alloc.guest_offset
                ),
            ));
        }
        let aend = astart + alloc.len;
        let data_end = (at + len).min(aend);
        // The granules the write touches.
        let wstart = astart + (at - astart) / g * g;
        let wend = (astart + (data_end - astart).div_ceil(g) * g).min(aend);
        let written = {
            let _in_flight = self.format.in_flight().map(read_lock);
            self.fill_and_write(&alloc, wstart, at, data_end, wend, bufs, rel)
        };
        match written {
            Ok(()) => self.format.commit(&alloc, wstart, wend - wstart)?,
            Err(e) => {
                self.format.abort(&alloc);
                return Err(e);
            }
        }
        Ok(data_end - at)
    }

    /// Writes `[wstart, wend)` of one allocation as one child write: old
    /// content before `at` and after `data_end` (copy-on-write; zeros past
    /// the end of the disk), guest data between.
    #[allow(clippy::too_many_arguments)]
    fn fill_and_write(
        &self,
        alloc: &Allocation,
        wstart: u64,
        at: u64,
        data_end: u64,
        wend: u64,
        bufs: &[IoSlice<'_>],
        rel: u64,
    ) -> Result<()> {
        let size = self.format.size();
        let mut head = vec![0u8; (at - wstart) as usize];
        if !head.is_empty() {
            read_mapped(self.format, wstart, &mut [IoSliceMut::new(&mut head)])?;
        }
        let mut tail = vec![0u8; (wend - data_end) as usize];
        let valid = (wend.min(size).max(data_end) - data_end) as usize;
        if valid > 0 {
            read_mapped(
                self.format,
                data_end,
                &mut [IoSliceMut::new(&mut tail[..valid])],
            )?;
        }
        let mut out = Vec::with_capacity(bufs.len() + 2);
        out.push(IoSlice::new(&head));
        out.extend(iov::sub(bufs, rel, data_end - at));
        out.push(IoSlice::new(&tail));
        out.retain(|b| !b.is_empty());
        self.write_child(
            alloc.child,
            alloc.host_offset + (wstart - alloc.guest_offset),
            &out,
        )
    }

    /// A compressed write: whole units (the last may end at the end of the
    /// disk), each offered to [`Format::write_compressed`] and written
    /// plainly when it does not compress.
    pub fn write_compressed(&self, offset: u64, bufs: &[IoSlice<'_>]) -> Result<()> {
        let unit = self.unit();
        let size = self.format.size();
        let end = offset + iov_len(bufs);
        if !offset.is_multiple_of(unit) || (!end.is_multiple_of(unit) && end != size) {
            return Err(self.format.error_context(
                BlockError::invalid("write", "compressed writes must be cluster aligned")
                    .at(offset),
            ));
        }
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        for (i, chunk) in data.chunks(unit as usize).enumerate() {
            let pos = offset + i as u64 * unit;
            let done = {
                let _guard = self.allocating.lock(pos, pos + unit);
                self.format.write_compressed(pos, chunk)?
            };
            if !done {
                self.write(pos, &[IoSlice::new(chunk)])?;
            }
        }
        Ok(())
    }

    /// Makes `[offset, offset+len)` read as zeros, as QEMU's block layer
    /// splits a zero write at the format's zero granularity: an unaligned
    /// head or tail piece (inside one granule) is zeroed in metadata as its
    /// whole granule when the rest of the granule already reads as zeros,
    /// aligned pieces (at most one unit each) are offered to
    /// [`Format::make_zero`], and what the metadata cannot express gets
    /// zero buffers (an `Unsupported` error with `NO_FALLBACK`).
    pub fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        let unit = self.unit();
        let gran = self.format.zero_granularity().clamp(1, unit);
        let size = self.format.size();
        let unmap = flags.contains(ZeroFlags::MAY_UNMAP);
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let gs = pos - pos % gran;
            let ge = (gs + gran).min(size);
            let (piece_end, done) = if pos != gs || end < ge {
                let pe = ge.min(end);
                let done = self.reads_zero(gs, pos - gs)? && self.reads_zero(pe, ge - pe)? && {
                    let _guard = self.allocating.lock(gs, ge);
                    // Written meanwhile? Check again under the lock.
                    self.reads_zero_here(gs, ge - gs)?
                        && self.format.make_zero(gs, ge - gs, unmap)?
                };
                (pe, done)
            } else {
                let aligned_end = if end == size { end } else { end - end % gran };
                let pe = (pos - pos % unit + unit).min(aligned_end);
                let _guard = self.allocating.lock(pos, pe);
                (pe, self.format.make_zero(pos, pe - pos, unmap)?)
            };
            if !done {
                if flags.contains(ZeroFlags::NO_FALLBACK) {
                    return Err(self
                        .format
                        .error_context(BlockError::unsupported("write_zeroes").at(pos)));
                }
                self.write_zero_buffers(pos, piece_end - pos)?;
            }
            pos = piece_end;
        }
        Ok(())
    }

    /// True when `[off, off+len)` reads as zeros by the metadata alone:
    /// zero mappings, and unallocated ones the backing node reports as
    /// zeros (or that have no backing node).
    fn reads_zero(&self, off: u64, len: u64) -> Result<bool> {
        let mut p = off;
        while p < off + len {
            let m = checked_map(self.format, p, off + len - p)?;
            let zero = match m {
                Mapping::Zero { .. } => true,
                Mapping::Unallocated { .. } => self.backing_reads_zero(p, m.len())?,
                _ => false,
            };
            if !zero {
                return Ok(false);
            }
            p += m.len();
        }
        Ok(true)
    }

    /// True when `[off, off+len)` is zero or unallocated in this node.
    fn reads_zero_here(&self, off: u64, len: u64) -> Result<bool> {
        let mut p = off;
        while p < off + len {
            let m = checked_map(self.format, p, off + len - p)?;
            if !matches!(m, Mapping::Zero { .. } | Mapping::Unallocated { .. }) {
                return Ok(false);
            }
            p += m.len();
        }
        Ok(true)
    }

    /// True when the backing node (if any) reports `[off, off+len)` as zeros.
    fn backing_reads_zero(&self, off: u64, len: u64) -> Result<bool> {
        let Some(b) = self.format.backing() else {
            return Ok(true);
        };
        let end = (off + len).min(b.length()?);
        let mut p = off;
        while p < end {
            let e = b.block_status(p, end - p)?;
            if !e.flags.contains(ExtentFlags::ZERO) {
                return Ok(false);
            }
            p += e.length.max(1);
        }
        Ok(true)
    }

    /// Writes zero buffers over `[offset, offset+len)` (zeroing emulation).
    fn write_zero_buffers(&self, offset: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZERO_CHUNK);
            self.write(offset + done, &[IoSlice::new(&zeros[..n as usize])])?;
            done += n;
        }
        Ok(())
    }
}
