//! The block allocation table: one u64 per payload block, with a sector
//! bitmap entry after every `chunk ratio` payload entries (differencing
//! images use those; here they are skipped). An entry is a state (bits
//! 0-2) and a file offset in MiB (bits 20-63).

use crate::header::{ENDIAN, HEADER_SECTION_END, MIB};
use crate::metadata::DiskParams;
use crate::region::Region;
use block_core::engine::codec::{table_bytes, u64_entries};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// Payload block state: never written (reads as zeros, or the parent's).
pub const NOT_PRESENT: u64 = 0;
/// Payload block state: content undefined (reads as zeros here).
pub const UNDEFINED: u64 = 1;
/// Payload block state: reads as zeros.
pub const ZERO: u64 = 2;
/// Payload block state: unmapped by a trim (reads as zeros here).
pub const UNMAPPED: u64 = 3;
/// Payload block state: the data is at the entry's offset.
pub const FULLY_PRESENT: u64 = 6;
/// Payload block state: partly in this file (differencing images only).
pub const PARTIALLY_PRESENT: u64 = 7;
/// The state bits.
pub const STATE_MASK: u64 = 7;
/// The offset bits (the offset in bytes, a multiple of 1 MiB).
pub const OFFSET_MASK: u64 = !(MIB - 1);
/// The largest BAT this driver reads (64 TiB in 1 MiB blocks).
pub const MAX_BAT_BYTES: u64 = 600 << 20;

/// The state of entry `e`.
pub fn state(e: u64) -> u64 {
    e & STATE_MASK
}

/// The file offset entry `e` names.
pub fn offset(e: u64) -> u64 {
    e & OFFSET_MASK
}

/// A payload entry with data at `at`.
pub fn present(at: u64) -> u64 {
    (at & OFFSET_MASK) | FULLY_PRESENT
}

/// What a payload entry says about its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Reads as zeros (every state but the two present ones).
    Zero,
    /// The data is at this file offset.
    Data(u64),
}

/// The table in memory with its geometry.
#[derive(Debug, Clone)]
pub struct Bat {
    /// The entries, payload and sector bitmap interleaved.
    pub entries: Vec<u64>,
    /// Payload blocks per chunk.
    pub chunk_ratio: u64,
    /// Payload block size.
    pub block_size: u64,
    /// The BAT region.
    pub region: Region,
    /// Payload blocks of the disk.
    pub blocks: u64,
}

impl Bat {
    /// The entry index of payload block `block`.
    pub fn index(&self, block: u64) -> usize {
        (block + block / self.chunk_ratio) as usize
    }

    /// Reads the table of `p`'s disk from `region` of `file`, checking that
    /// the region holds it.
    pub fn load(file: &dyn BlockNode, region: Region, p: &DiskParams) -> Result<Bat> {
        let n = p.bat_entries();
        if n.saturating_mul(8) > region.length {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "VHDX BAT region ({} bytes) is too small for {n} entries",
                    region.length
                ),
            )
            .at(region.offset));
        }
        let bytes = table_bytes("open", "VHDX BAT", n, 8, MAX_BAT_BYTES)?;
        let mut raw = vec![0u8; bytes];
        file.read_at(region.offset, &mut raw)?;
        Ok(Bat {
            entries: u64_entries(&raw, ENDIAN),
            chunk_ratio: p.chunk_ratio(),
            block_size: u64::from(p.block_size),
            region,
            blocks: p.data_blocks(),
        })
    }

    /// Payload block `block` as its entry says. A present entry must name a
    /// place past the header section (guest I/O never lands on the
    /// header); a partially present one belongs to differencing images.
    pub fn block(&self, op: &'static str, block: u64) -> Result<Block> {
        let e = self.entries[self.index(block)];
        match state(e) {
            FULLY_PRESENT if offset(e) >= HEADER_SECTION_END => Ok(Block::Data(offset(e))),
            FULLY_PRESENT => Err(BlockError::corrupt(
                op,
                format!("VHDX BAT entry for block {block} points into the header section"),
            )
            .at(block * self.block_size)),
            PARTIALLY_PRESENT => Err(BlockError::corrupt(
                op,
                format!("VHDX block {block} is partially present in an image without parent"),
            )
            .at(block * self.block_size)),
            _ => Ok(Block::Zero),
        }
    }

    /// The payload block numbers and entries, sector bitmap entries skipped.
    pub fn payload(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.blocks).map(|b| (b, self.entries[self.index(b)]))
    }

    /// One past the last byte any present block uses.
    pub fn data_end(&self) -> u64 {
        self.payload()
            .filter(|&(_, e)| matches!(state(e), FULLY_PRESENT | PARTIALLY_PRESENT))
            .map(|(_, e)| offset(e).saturating_add(self.block_size))
            .max()
            .unwrap_or(0)
    }

    /// The file offset of entry `index`.
    pub fn entry_offset(&self, index: usize) -> u64 {
        self.region.offset + index as u64 * 8
    }
}
