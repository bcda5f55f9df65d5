//! Zero writes as QEMU's `qcow2_co_pwrite_zeroes` makes them.
//!
//! The request is split as QEMU's block layer splits it (its zero-write
//! alignment is the subcluster size): an unaligned head and tail piece,
//! each inside one subcluster, and an aligned middle.
//!
//! * A partial piece becomes a zero subcluster (a zero cluster without
//!   extended L2) when the rest of its subcluster already reads as zeros
//!   and the subcluster is unallocated or zero; otherwise real zeros are
//!   written (QEMU's `-ENOTSUP` fallback; an error with `NO_FALLBACK`).
//! * Whole clusters of the middle get the zero flag (all zero bits); an
//!   allocated cluster is unmapped only with `MAY_UNMAP`, a compressed one
//!   always. A shared (non-COPIED) cluster keeps its reference, as in QEMU.
//! * Partial clusters of the middle get zero bits for their subclusters;
//!   compressed clusters cannot be partially zeroed (fallback).
//! * Version 2 has no zero flag: without a backing file zeroing discards,
//!   with one it falls back to real zeros.

use crate::io::sc_mask;
use crate::mapping::{ClusterType, SubType, BITMAP_ALL_ZERO, OFLAG_ZERO};
use crate::node::Qcow2Node;
use block_core::{BlockError, ExtentFlags, Result, ZeroFlags};

/// What became of a piece.
enum Outcome {
    /// The metadata now makes it read as zeros.
    Done,
    /// Metadata cannot express it: write real zeros (or fail).
    Fallback,
}

impl Qcow2Node {
    /// Makes `[offset, offset+len)` read as zeros.
    pub(crate) fn write_zeroes_impl(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        self.begin_write("write_zeroes", offset, len)?;
        let g = self.geo();
        let unmap = flags.contains(ZeroFlags::MAY_UNMAP);
        let (size, raw) = {
            let m = self.meta_read();
            (m.h.size, m.h.data_file_raw())
        };
        let scs = g.sc_size();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let sc_start = pos - pos % scs;
            let sc_end = (sc_start + scs).min(size);
            let (piece_end, outcome) = if raw {
                (end, Outcome::Fallback)
            } else if pos != sc_start || end < sc_end {
                let pe = sc_end.min(end);
                (pe, self.zero_partial_subcluster(pos, pe, size, unmap)?)
            } else {
                // The aligned middle, one cluster at a time.
                let aligned_end = if end == size { end } else { end - end % scs };
                let pe = (g.cluster_start(pos) + g.cs()).min(aligned_end);
                (pe, self.zero_aligned(pos, pe, size, unmap)?)
            };
            if let Outcome::Fallback = outcome {
                if flags.contains(ZeroFlags::NO_FALLBACK) {
                    return Err(self.ctx(BlockError::unsupported("write_zeroes").at(pos)));
                }
                self.write_zero_buffers(pos, piece_end - pos)?;
            }
            pos = piece_end;
        }
        if flags.contains(ZeroFlags::FUA) {
            self.flush_all()?;
        }
        Ok(())
    }

    /// True when guest bytes `[off, off+len)`, inside one subcluster, read
    /// as zeros according to the metadata (QEMU's `is_zero`: the block
    /// status of this image and, where unallocated, of the backing chain).
    fn range_reads_zero(&self, off: u64, len: u64) -> Result<bool> {
        if len == 0 {
            return Ok(true);
        }
        let g = self.geo();
        let lk = self.lookup_now(off)?;
        let sc = (g.in_cluster(off) / g.sc_size()) as u32;
        match g.subcluster_type(lk.entry, lk.bitmap, sc) {
            SubType::ZeroPlain | SubType::ZeroAlloc => Ok(true),
            SubType::UnallocPlain | SubType::UnallocAlloc => self.backing_reads_zero(off, len),
            _ => Ok(false),
        }
    }

    /// True when the backing file (if any) reports `[off, off+len)` as zeros.
    fn backing_reads_zero(&self, off: u64, len: u64) -> Result<bool> {
        let Some(b) = self.backing() else {
            return Ok(true);
        };
        let blen = b.length()?;
        let end = (off + len).min(blen);
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

    /// A piece `[pos, piece_end)` that does not cover its whole subcluster.
    fn zero_partial_subcluster(
        &self,
        pos: u64,
        piece_end: u64,
        size: u64,
        unmap: bool,
    ) -> Result<Outcome> {
        let g = self.geo();
        let scs = g.sc_size();
        let sc_start = pos - pos % scs;
        let sc_end = (sc_start + scs).min(size);
        if !(self.range_reads_zero(sc_start, pos - sc_start)?
            && self.range_reads_zero(piece_end, sc_end - piece_end)?)
        {
            return Ok(Outcome::Fallback);
        }
        {
            // The subcluster may have been written since: check it again
            // under the allocation mutex (as QEMU does under its lock).
            let _ws = self.wlock();
            let lk = self.lookup_now(sc_start)?;
            let sc = (g.in_cluster(sc_start) / scs) as u32;
            let t = g.subcluster_type(lk.entry, lk.bitmap, sc);
            if !(t.is_unallocated() || t.is_zero()) {
                return Ok(Outcome::Fallback);
            }
        }
        self.zero_aligned(sc_start, sc_end, size, unmap)
    }

    /// Zeroes `[pos, piece_end)`: subcluster-aligned (or ending at the
    /// image end) and inside one cluster.
    fn zero_aligned(&self, pos: u64, piece_end: u64, size: u64, unmap: bool) -> Result<Outcome> {
        let g = self.geo();
        let cstart = g.cluster_start(pos);
        let full = pos == cstart && (piece_end == cstart + g.cs() || piece_end == size);
        if g.version < 3 {
            if self.backing().is_some() {
                return Ok(Outcome::Fallback);
            }
            // Without a backing file a discarded cluster reads as zeros.
            self.discard_cluster(cstart)?;
            return Ok(Outcome::Done);
        }
        if full {
            self.zero_cluster(cstart, unmap)?;
            return Ok(Outcome::Done);
        }
        let scs = g.sc_size();
        let a = (g.in_cluster(pos) / scs) as u32;
        let b = (g.in_cluster(piece_end - 1) / scs) as u32;
        self.zero_subclusters(cstart, a, b)
    }

    /// QEMU's `zero_in_l2_slice` for one cluster.
    fn zero_cluster(&self, cstart: u64, unmap: bool) -> Result<()> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(cstart)?;
        let ct = g.cluster_type(lk.entry);
        let allocated = matches!(
            ct,
            ClusterType::Normal | ClusterType::ZeroAlloc | ClusterType::Compressed
        );
        let free = ct == ClusterType::Compressed || (unmap && allocated);
        let mut entry = if free { 0 } else { lk.entry };
        let bitmap = if g.extended_l2 {
            BITMAP_ALL_ZERO
        } else {
            entry |= OFLAG_ZERO;
            0
        };
        if (entry, bitmap) == (lk.entry, lk.bitmap) {
            return Ok(());
        }
        self.set_l2_entry(&mut ws, cstart, entry, bitmap)?;
        if free {
            self.defer_free_entry(&mut ws, lk.entry, true);
        }
        Ok(())
    }

    /// QEMU's `zero_l2_subclusters`: subclusters `a..=b` (not all of the
    /// cluster) get their zero bits; compressed clusters cannot.
    fn zero_subclusters(&self, cstart: u64, a: u32, b: u32) -> Result<Outcome> {
        let g = self.geo();
        let mut ws = self.wlock();
        self.maybe_writeback(&mut ws)?;
        let lk = self.lookup_now(cstart)?;
        match g.cluster_type(lk.entry) {
            ClusterType::Normal | ClusterType::Unallocated => {}
            _ => return Ok(Outcome::Fallback),
        }
        let mask = sc_mask(a, b);
        let bitmap = (lk.bitmap | (mask << 32)) & !mask;
        if bitmap != lk.bitmap {
            self.set_l2_entry(&mut ws, cstart, lk.entry, bitmap)?;
        }
        Ok(Outcome::Done)
    }

    /// Writes real zeros (the fallback).
    fn write_zero_buffers(&self, offset: u64, len: u64) -> Result<()> {
        let chunk = (1u64 << 20).min(len.max(1)) as usize;
        let zeros = vec![0u8; chunk];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(chunk as u64) as usize;
            self.write_plain(offset + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}
