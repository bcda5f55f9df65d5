//! The image header: the first [`HEADER_SIZE`] bytes of the file, and the
//! rules it imposes on the block allocation table (BAT) it names.
//!
//! | bytes | field (little-endian) |
//! |---|---|
//! | 0..8 | [`MAGIC`] |
//! | 8..12 | version, u32: [`VERSION`] |
//! | 12..16 | header size, u32: [`HEADER_SIZE`] |
//! | 16..24 | virtual size in bytes, u64 |
//! | 24..28 | block size in bytes, u32: a power of two, [`MIN_BLOCK_SIZE`]..=[`MAX_BLOCK_SIZE`] |
//! | 28..32 | BAT entries, u32: one per block of the virtual disk |
//! | 32..40 | BAT offset in the file, u64, sector-aligned |
//! | 40..512 | zero |
//!
//! A new format should change [`MAGIC`] so that its images are not
//! mistaken for this one's. [`Header::decode`] checks every field before it
//! is used, since the file may be damaged or hostile; the BAT's size and
//! place are checked by [`Header::check_bat`] before a byte of it is read.

use block_core::engine::codec::{Endian, FieldReader, TableRules};
use block_core::{BlockError, ErrorKind, Result};

/// The size of the header.
pub const HEADER_SIZE: u64 = 512;
/// The first bytes of every image.
pub const MAGIC: [u8; 8] = *b"BLKBAT\0\0";
/// The only header version there is.
pub const VERSION: u32 = 1;
/// The byte order of every field of the format.
pub const ENDIAN: Endian = Endian::Little;
/// Bytes per BAT entry (a u32 block number).
pub const BAT_ENTRY_SIZE: u64 = 4;
/// The smallest block size.
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// The largest block size.
pub const MAX_BLOCK_SIZE: u64 = 2 << 20;
/// The default block size (`cluster_size` create option).
pub const DEFAULT_BLOCK_SIZE: u64 = 64 << 10;
/// The largest BAT the driver holds in memory (64 MiB: 16 Mi entries, a
/// 1 TiB disk with 64 KiB blocks). The BAT's size comes from the header,
/// so it is bounded before anything is allocated for it.
pub const MAX_BAT_BYTES: u64 = 64 << 20;
/// File offsets must fit an `i64` (the file protocol's limit).
pub const MAX_FILE_OFFSET: u64 = i64::MAX as u64;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// [`MAGIC`] as a little-endian u64 (compared as bytes by decode).
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// The guest-visible size in bytes.
    pub size: u64,
    /// Bytes per block, the allocation unit.
    pub block_size: u32,
    /// BAT entries: `size / block_size` rounded up.
    pub bat_entries: u32,
    /// File offset of the BAT.
    pub bat_offset: u64,
}

block_core::fixed_fields! {
    /// The fixed-offset fields of [`Header`] (the table above).
    HeaderFields for Header {
        magic @ 0,
        version @ 8,
        header_size @ 12,
        size @ 16,
        block_size @ 24,
        bat_entries @ 28,
        bat_offset @ 32,
    }
}

/// The number of blocks of a disk of `size` bytes in blocks of
/// `block_size` bytes, if the BAT can hold them.
pub fn blocks_for(size: u64, block_size: u64) -> Option<u32> {
    u32::try_from(size.div_ceil(block_size)).ok()
}

impl Header {
    /// A new image's header: `size` bytes in blocks of `block_size`, the
    /// BAT right after the header. Errors (for `op`) when the values are
    /// out of the format's range.
    pub fn new(op: &'static str, size: u64, block_size: u64) -> Result<Header> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(BlockError::invalid(
                op,
                format!(
                    "cluster size {block_size} must be a power of two between \
                     {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
                ),
            ));
        }
        let too_large = || {
            BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!(
                    "size {size} is larger than the format allows with {block_size}-byte \
                     clusters (at most {} bytes): use a larger cluster_size",
                    MAX_BAT_BYTES / BAT_ENTRY_SIZE * block_size
                ),
            )
        };
        let bat_entries = blocks_for(size, block_size)
            .filter(|&n| u64::from(n) * BAT_ENTRY_SIZE <= MAX_BAT_BYTES)
            .ok_or_else(too_large)?;
        Ok(Header {
            magic: u64::from_le_bytes(MAGIC),
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            size,
            block_size: block_size as u32,
            bat_entries,
            bat_offset: HEADER_SIZE,
        })
    }

    /// The block size as a u64.
    pub fn block(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// The BAT's length in bytes.
    pub fn bat_bytes(&self) -> u64 {
        u64::from(self.bat_entries) * BAT_ENTRY_SIZE
    }

    /// The end of the space reserved for the BAT: the next block boundary
    /// after it. Nothing else is placed there, so a grown BAT may use it.
    pub fn bat_reserved_end(&self) -> u64 {
        (self.bat_offset + self.bat_bytes()).div_ceil(self.block()) * self.block()
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        HeaderFields::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and validates a header read from an image; the error says
    /// which field is wrong.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let mut h = Header::default();
        HeaderFields::decode(&mut h, &FieldReader::new(b, ENDIAN, "open"))?;
        if h.magic.to_le_bytes() != MAGIC {
            return Err(BlockError::corrupt(
                "open",
                "not an image of this format (bad magic)",
            ));
        }
        if h.version != VERSION {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "open",
                format!(
                    "unsupported header version {} (this driver reads {VERSION})",
                    h.version
                ),
            ));
        }
        if u64::from(h.header_size) != HEADER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("header size {}, expected {HEADER_SIZE}", h.header_size),
            ));
        }
        let bs = h.block();
        if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
            return Err(BlockError::corrupt(
                "open",
                format!("block size {bs} is not a power of two in the format's range"),
            ));
        }
        if blocks_for(h.size, bs) != Some(h.bat_entries) {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "{} BAT entries do not cover a virtual size of {} bytes in {bs}-byte blocks",
                    h.bat_entries, h.size
                ),
            ));
        }
        Ok(h)
    }

    /// Checks that the BAT lies after the header and inside a file of
    /// `file_len` bytes, sector-aligned, and is at most [`MAX_BAT_BYTES`]
    /// long: call it before allocating or reading the BAT.
    pub fn check_bat(&self, file_len: u64) -> Result<()> {
        let rules = TableRules {
            op: "open",
            alignment: 512,
            unit: "sector",
            max_end: file_len,
        };
        rules.check("BAT", self.bat_offset, self.bat_bytes(), MAX_BAT_BYTES)?;
        if self.bat_offset < HEADER_SIZE {
            return Err(BlockError::corrupt("open", "BAT overlaps the header").at(self.bat_offset));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_the_same_header() {
        let h = Header::new("create", 0x0123_4567_89ab, 1 << 20).unwrap();
        let b = h.encode();
        assert_eq!(&b[0..8], b"BLKBAT\0\0");
        assert_eq!(b[16..24], 0x0123_4567_89abu64.to_le_bytes());
        assert_eq!(b[28..32], 0x12_3457u32.to_le_bytes());
        assert_eq!(b[32..40], 512u64.to_le_bytes());
        assert!(b[40..].iter().all(|&x| x == 0));
        assert_eq!(Header::decode(&b).unwrap(), h);
        // 512 + 0x123457 * 4 bytes, rounded up to the 1 MiB block.
        assert_eq!(h.bat_reserved_end(), 5 << 20);
    }

    #[test]
    fn every_bad_field_is_named() {
        let good = Header::new("create", 1 << 20, 65536).unwrap().encode();
        let cases: [(usize, u8, ErrorKind, &str); 5] = [
            (0, b'x', ErrorKind::Corrupt, "bad magic"),
            (8, 2, ErrorKind::Unsupported, "header version 2"),
            (13, 1, ErrorKind::Corrupt, "header size 256"),
            (25, 0x30, ErrorKind::Corrupt, "block size"),
            (28, 17, ErrorKind::Corrupt, "17 BAT entries"),
        ];
        for (at, value, kind, words) in cases {
            let mut b = good;
            b[at] = value;
            let e = Header::decode(&b).unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
        // A short buffer is an error naming the field, not a panic.
        let e = Header::decode(&good[..30]).unwrap_err();
        assert!(e.message.contains("bat_entries"), "{e}");
    }

    #[test]
    fn the_bat_is_bounded_and_placed_before_it_is_read() {
        let mut h = Header::new("create", 1 << 30, 65536).unwrap();
        h.check_bat(HEADER_SIZE + h.bat_bytes()).unwrap();
        let e = h.check_bat(HEADER_SIZE + 4).unwrap_err();
        assert!(e.message.contains("BAT offset invalid"), "{e}");
        h.bat_offset = 0;
        assert!(h.check_bat(1 << 30).unwrap_err().message.contains("header"));
        h.bat_offset = 513;
        assert!(h
            .check_bat(1 << 30)
            .unwrap_err()
            .message
            .contains("aligned"));
        // 2^32 - 1 entries: 16 GiB of BAT, refused by size alone.
        h.bat_offset = 512;
        h.bat_entries = u32::MAX;
        let e = h.check_bat(u64::MAX).unwrap_err();
        assert!(e.message.contains("BAT too large"), "{e}");
    }

    #[test]
    fn new_headers_refuse_what_the_format_cannot_hold() {
        for (size, bs, words) in [
            (1 << 20, 3000, "power of two"),
            (1 << 20, 1024, "between"),
            (1 << 20, 4 << 20, "between"),
            (2 << 40, 65536, "use a larger cluster_size"),
            (u64::MAX, 2 << 20, "larger than the format allows"),
        ] {
            let e = Header::new("create", size, bs).unwrap_err();
            assert!(e.message.contains(words), "{size} {bs}: {e}");
        }
        assert_eq!(Header::new("create", 0, 4096).unwrap().bat_entries, 0);
    }
}
