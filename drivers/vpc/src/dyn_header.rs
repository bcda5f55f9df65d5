//! The dynamic-disk header: 1024 bytes, big-endian, at the footer's data
//! offset (512 in images QEMU makes), naming the block allocation table.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | cookie [`MAGIC`] |
//! | 8..16 | data offset (all ones: unused) |
//! | 16..24 | BAT offset |
//! | 24..28 | version (0x00010000) |
//! | 28..32 | BAT entries (`max_table_entries`) |
//! | 32..36 | block size in bytes (2 MiB) |
//! | 36..40 | checksum, as the footer's |
//! | 40..1024 | parent fields (differencing images only), zero |

use crate::footer::{checksum, ENDIAN};
use block_core::engine::codec::{FieldReader, TableRules};
use block_core::{BlockError, Result};

/// The header's size.
pub const DYN_HEADER_SIZE: u64 = 1024;
/// The header's cookie.
pub const MAGIC: [u8; 8] = *b"cxsparse";
/// The block size QEMU creates.
pub const DEFAULT_BLOCK_SIZE: u64 = 2 << 20;
/// The BAT offset in images QEMU creates (after footer and header).
pub const CREATE_BAT_OFFSET: u64 = 3 * 512;
/// An unallocated BAT entry.
pub const UNALLOCATED: u32 = u32::MAX;
/// The largest BAT the driver reads (64 MiB, 16 Mi entries; a 2040 GiB
/// disk in 2 MiB blocks needs 4 MiB). The BAT's size comes from the
/// header, so it is bounded before anything is allocated for it.
pub const MAX_BAT_BYTES: u64 = 64 << 20;
/// The largest block size accepted (32 MiB; images use 512 KiB or 2 MiB).
/// A new block is written whole, so the size bounds that buffer.
pub const MAX_BLOCK_SIZE: u64 = 32 << 20;
/// Offset of the checksum field.
const CHECKSUM_AT: usize = 36;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynHeader {
    /// The cookie as a big-endian u64.
    pub magic: u64,
    /// Unused data offset (all ones).
    pub data_offset: u64,
    /// File offset of the BAT.
    pub table_offset: u64,
    /// Header version.
    pub version: u32,
    /// BAT entries.
    pub max_table_entries: u32,
    /// Bytes per block.
    pub block_size: u32,
    /// Stored checksum.
    pub checksum: u32,
}

block_core::fixed_fields! {
    /// The header's field offsets (the table above).
    Layout for DynHeader {
        magic @ 0,
        data_offset @ 8,
        table_offset @ 16,
        version @ 24,
        max_table_entries @ 28,
        block_size @ 32,
        checksum @ 36,
    }
}

impl DynHeader {
    /// A new image's header: `entries` blocks of [`DEFAULT_BLOCK_SIZE`],
    /// the BAT at [`CREATE_BAT_OFFSET`].
    pub fn new(entries: u32) -> DynHeader {
        let mut h = DynHeader {
            magic: u64::from_be_bytes(MAGIC),
            data_offset: u64::MAX,
            table_offset: CREATE_BAT_OFFSET,
            version: 0x0001_0000,
            max_table_entries: entries,
            block_size: DEFAULT_BLOCK_SIZE as u32,
            checksum: 0,
        };
        h.checksum = checksum(&h.encode(), CHECKSUM_AT);
        h
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; DYN_HEADER_SIZE as usize] {
        let mut b = [0u8; DYN_HEADER_SIZE as usize];
        Layout::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and checks a header read from an image: cookie, checksum and
    /// a block size that is a power of two from 512 bytes to
    /// [`MAX_BLOCK_SIZE`].
    pub fn decode(b: &[u8]) -> Result<DynHeader> {
        let mut h = DynHeader::default();
        Layout::decode(&mut h, &FieldReader::new(b, ENDIAN, "open"))?;
        if h.magic.to_be_bytes() != MAGIC {
            return Err(BlockError::corrupt(
                "open",
                "invalid dynamic VHD header (bad cookie)",
            ));
        }
        let whole = &b[..(DYN_HEADER_SIZE as usize).min(b.len())];
        if checksum(whole, CHECKSUM_AT) != h.checksum {
            return Err(BlockError::corrupt(
                "open",
                "Incorrect dynamic header checksum",
            ));
        }
        let bs = u64::from(h.block_size);
        if !bs.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(BlockError::corrupt(
                "open",
                format!("Invalid block size {bs}"),
            ));
        }
        Ok(h)
    }

    /// The block size in bytes.
    pub fn block(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// The bytes of a block's sector bitmap: one bit per sector, rounded
    /// up to whole sectors.
    pub fn bitmap_size(&self) -> u64 {
        (self.block() / (8 * 512)).div_ceil(512) * 512
    }

    /// The BAT's length in bytes.
    pub fn bat_bytes(&self) -> u64 {
        u64::from(self.max_table_entries) * 4
    }

    /// Checks that the BAT covers a disk of `size` bytes, is at most
    /// [`MAX_BAT_BYTES`] long and lies inside a file of `file_len` bytes:
    /// call it before allocating or reading the BAT.
    pub fn check_bat(&self, size: u64, file_len: u64) -> Result<()> {
        if u64::from(self.max_table_entries) * self.block() < size {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "Page table too small: {} entries of {} bytes for a {size}-byte disk",
                    self.max_table_entries, self.block_size
                ),
            ));
        }
        let rules = TableRules {
            op: "open",
            alignment: 512,
            unit: "sector",
            max_end: file_len,
        };
        rules.check("BAT", self.table_offset, self.bat_bytes(), MAX_BAT_BYTES)
    }
}
