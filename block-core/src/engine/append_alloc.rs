//! An append (BAT-style) allocator: new blocks go at the end of the file,
//! aligned, as qed, vdi, vpc, vhdx, vmdk and parallels allocate.
//!
//! These formats keep no free-space map: a block, once allocated, stays
//! (they free nothing, or only by truncating the last block). The
//! allocator therefore only tracks where the allocated area ends. Formats
//! with a structure that must stay last in the file (vpc's footer copy)
//! give its size as the trailer: a new block takes the trailer's place
//! and the caller rewrites the trailer after the block
//! ([`AppendAllocation::trailer_offset`]).
//!
//! [`AppendAllocator`] has its own lock. Crash consistency is the
//! caller's ordering (docs/engine-metadata.md): the block's data is
//! written and flushed before the table entry (BAT, L2, grain table)
//! naming it, so a crash leaves an unreferenced block past the old end,
//! never an entry pointing at garbage.

use crate::error::{BlockError, ErrorKind, Result};
use std::sync::{Mutex, MutexGuard};

/// One allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAllocation {
    /// Offset of the new block.
    pub offset: u64,
    /// Its length (rounded up to the alignment).
    pub len: u64,
    /// Its index among the blocks allocated from the base
    /// (`(offset - base) / unit` when every block is one unit long: the
    /// vdi block number).
    pub index: u64,
    /// Where the trailer goes now (just past the block).
    pub trailer_offset: u64,
}

#[derive(Debug)]
struct State {
    /// End of the allocated area (where the next block goes).
    next: u64,
}

/// Allocation at the end of the file.
#[derive(Debug)]
pub struct AppendAllocator {
    state: Mutex<State>,
    base: u64,
    alignment: u64,
    limit: u64,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    v.checked_add(a - 1).map(|x| x / a * a)
}

impl AppendAllocator {
    /// An allocator for a file whose allocated area (metadata and blocks,
    /// without the trailer) ends at `end`; blocks start at or after `base`,
    /// aligned to `alignment` (a power of two, or any nonzero unit) from
    /// offset 0, and must end at or below `limit`.
    pub fn new(end: u64, base: u64, alignment: u64, limit: u64) -> Result<AppendAllocator> {
        if alignment == 0 {
            return Err(BlockError::invalid("open", "allocation alignment of 0"));
        }
        let next = align_up(end.max(base), alignment)
            .filter(|&n| n <= limit)
            .ok_or_else(|| {
                BlockError::corrupt(
                    "open",
                    format!("allocated area end {end} is past the limit"),
                )
            })?;
        Ok(AppendAllocator {
            state: Mutex::new(State { next }),
            base,
            alignment,
            limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the next block goes.
    pub fn end(&self) -> u64 {
        self.lock().next
    }

    /// Allocates `len` bytes (rounded up to the alignment) at the end.
    pub fn allocate(&self, len: u64) -> Result<AppendAllocation> {
        let len = align_up(len.max(1), self.alignment)
            .ok_or_else(|| BlockError::invalid("allocate", "allocation length overflows"))?;
        let mut g = self.lock();
        let end = g
            .next
            .checked_add(len)
            .filter(|&e| e <= self.limit)
            .ok_or_else(|| {
                BlockError::new(
                    ErrorKind::NoSpace,
                    "allocate",
                    "the image file would grow past the format's size limit",
                )
            })?;
        let a = AppendAllocation {
            offset: g.next,
            len,
            index: (g.next - self.base) / len,
            trailer_offset: end,
        };
        g.next = end;
        Ok(a)
    }

    /// Takes back `a` if it is still the last allocation (its write failed
    /// before anything referenced it). Returns whether it was.
    pub fn undo(&self, a: &AppendAllocation) -> bool {
        let mut g = self.lock();
        if g.next == a.trailer_offset {
            g.next = a.offset;
            true
        } else {
            false
        }
    }

    /// Moves the end past `end` (metadata placed at the end by other
    /// means, a table that grew).
    pub fn reserve_to(&self, end: u64) -> Result<()> {
        let next = align_up(end, self.alignment)
            .filter(|&n| n <= self.limit)
            .ok_or_else(|| BlockError::new(ErrorKind::NoSpace, "allocate", "past the limit"))?;
        let mut g = self.lock();
        g.next = g.next.max(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_aligned_at_the_end() {
        // vhdx-like: 1 MiB alignment, area ending mid-megabyte.
        let a = AppendAllocator::new(3 << 19, 0, 1 << 20, 1 << 40).unwrap();
        assert_eq!(a.end(), 2 << 20);
        let x = a.allocate(1 << 20).unwrap();
        assert_eq!((x.offset, x.len), (2 << 20, 1 << 20));
        let y = a.allocate(100).unwrap();
        assert_eq!(
            (y.offset, y.len, y.trailer_offset),
            (3 << 20, 1 << 20, 4 << 20)
        );
    }

    #[test]
    fn vdi_style_indices_from_a_base() {
        let a = AppendAllocator::new(0x200, 0x200, 1 << 20, 1 << 40).unwrap();
        // Alignment is from offset 0: the first block is at 1 MiB.
        let b = AppendAllocator::new(1 << 20, 1 << 20, 1 << 20, 1 << 40).unwrap();
        assert_eq!(a.allocate(1 << 20).unwrap().offset, 1 << 20);
        assert_eq!(b.allocate(1 << 20).unwrap().index, 0);
        assert_eq!(b.allocate(1 << 20).unwrap().index, 1);
    }

    #[test]
    fn limits_undo_and_reserve() {
        let a = AppendAllocator::new(0, 0, 512, 2048).unwrap();
        let x = a.allocate(1024).unwrap();
        let y = a.allocate(1024).unwrap();
        assert_eq!(a.allocate(1).unwrap_err().kind, ErrorKind::NoSpace);
        assert!(!a.undo(&x), "not the last");
        assert!(a.undo(&y));
        assert_eq!(a.end(), 1024);
        a.reserve_to(1500).unwrap();
        assert_eq!(a.end(), 1536);
        a.reserve_to(10).unwrap();
        assert_eq!(a.end(), 1536, "never moves back");
        assert!(a.reserve_to(4096).is_err());
        assert!(AppendAllocator::new(4096, 0, 512, 2048).is_err());
        assert!(AppendAllocator::new(0, 0, 0, 2048).is_err());
        assert!(a.allocate(u64::MAX).is_err());
    }
}
