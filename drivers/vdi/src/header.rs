//! The VDI header: the first [`HEADER_SIZE`] bytes of the file (a text
//! pre-header, the signature, version 1.1's fields), and the rules it
//! imposes on the block map it names.
//!
//! | bytes | field (little-endian) |
//! |---|---|
//! | 0x000..0x040 | text, e.g. [`CREATOR_TEXT`] (not checked) |
//! | 0x040 | signature, u32: [`SIGNATURE`] |
//! | 0x044 | version, u32: [`VERSION_1_1`] |
//! | 0x048 | header size, u32 (bytes from 0x048 on; [`HEADER_SIZE_1_1`] when created) |
//! | 0x04c | image type, u32: [`TYPE_DYNAMIC`] or [`TYPE_STATIC`] |
//! | 0x050 | image flags, u32 |
//! | 0x054..0x154 | description |
//! | 0x154 | block map offset, u32, sector-aligned |
//! | 0x158 | data offset, u32, sector-aligned |
//! | 0x15c..0x168 | legacy geometry (cylinders, heads, sectors) |
//! | 0x168 | sector size, u32: [`SECTOR_SIZE`] |
//! | 0x170 | disk size in bytes, u64 |
//! | 0x178 | block size, u32: [`BLOCK_SIZE`] |
//! | 0x17c | extra data per block, u32: 0 |
//! | 0x180 | blocks in image, u32: block map entries |
//! | 0x184 | blocks allocated, u32 |
//! | 0x188..0x1c8 | UUIDs: image, last snapshot, link, parent |
//!
//! Block `n` of the data area lives at `data offset + n * block size`.
//! [`Header::decode`] checks every field before it is used, since the file
//! may be damaged or hostile; [`Header::check_map`] places and bounds the
//! block map before a byte of it is read.

use block_core::engine::codec::{Endian, FieldReader, TableRules};
use block_core::{BlockError, ErrorKind, Result};

/// The size of the header area (the block map starts at or after it).
pub const HEADER_SIZE: u64 = 512;
/// The signature at byte 0x40.
pub const SIGNATURE: u32 = 0xbeda_107f;
/// Version 1.1 (major in the high half), the version QEMU reads and writes.
pub const VERSION_1_1: u32 = 0x0001_0001;
/// The header size written by create (the version 1.1 fields).
pub const HEADER_SIZE_1_1: u32 = 0x180;
/// A dynamic image: blocks are appended as the guest writes them.
pub const TYPE_DYNAMIC: u32 = 1;
/// A static image: every block allocated at create.
pub const TYPE_STATIC: u32 = 2;
/// The only sector size.
pub const SECTOR_SIZE: u64 = 512;
/// The only block size supported (the VirtualBox and QEMU default).
pub const BLOCK_SIZE: u64 = 1 << 20;
/// The text at the start of images blk creates.
pub const CREATOR_TEXT: &[u8] = b"<<< QEMU VM Virtual Disk Image >>>\n";
/// Bytes per block map entry (a u32 block number).
pub const MAP_ENTRY_SIZE: u64 = 4;
/// A block map entry: the block is not allocated (reads as zeros).
pub const UNALLOCATED: u32 = 0xffff_ffff;
/// A block map entry: the block reads as zeros, no data stored.
pub const ZERO: u32 = 0xffff_fffe;
/// The largest block map held in memory (64 MiB: 16 Mi blocks, a 16 TiB
/// disk). The map's size comes from the header, so it is bounded before
/// anything is allocated for it.
pub const MAX_MAP_BYTES: u64 = 64 << 20;
/// The byte order of every field.
pub const ENDIAN: Endian = Endian::Little;

/// Whether block map entry `e` names a data block.
pub fn is_allocated(e: u32) -> bool {
    e < ZERO
}

/// The decoded header, with the raw bytes it came from: fields the driver
/// does not interpret (text, description, geometry, UUIDs) are written
/// back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The header area as read or created.
    pub raw: [u8; HEADER_SIZE as usize],
    /// [`SIGNATURE`].
    pub signature: u32,
    /// [`VERSION_1_1`].
    pub version: u32,
    /// Bytes of header from 0x48 on.
    pub header_size: u32,
    /// [`TYPE_DYNAMIC`] or [`TYPE_STATIC`].
    pub image_type: u32,
    /// File offset of the block map.
    pub offset_bmap: u32,
    /// File offset of block 0.
    pub offset_data: u32,
    /// [`SECTOR_SIZE`].
    pub sector_size: u32,
    /// The guest-visible size in bytes.
    pub disk_size: u64,
    /// [`BLOCK_SIZE`].
    pub block_size: u32,
    /// Extra bytes before each block's data (0).
    pub block_extra: u32,
    /// Block map entries.
    pub blocks_in_image: u32,
    /// Data blocks in the file.
    pub blocks_allocated: u32,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            raw: [0; HEADER_SIZE as usize],
            signature: 0,
            version: 0,
            header_size: 0,
            image_type: 0,
            offset_bmap: 0,
            offset_data: 0,
            sector_size: 0,
            disk_size: 0,
            block_size: 0,
            block_extra: 0,
            blocks_in_image: 0,
            blocks_allocated: 0,
        }
    }
}

block_core::fixed_fields! {
    /// The fixed-offset fields of [`Header`] (the table above).
    HeaderFields for Header {
        signature @ 0x40,
        version @ 0x44,
        header_size @ 0x48,
        image_type @ 0x4c,
        offset_bmap @ 0x154,
        offset_data @ 0x158,
        sector_size @ 0x168,
        disk_size @ 0x170,
        block_size @ 0x178,
        block_extra @ 0x17c,
        blocks_in_image @ 0x180,
        blocks_allocated @ 0x184,
    }
}

/// The byte offset of the blocks-allocated field (rewritten on allocation).
pub const BLOCKS_ALLOCATED_AT: u64 = 0x184;
/// The UUIDs: image, last snapshot, link, parent.
const UUID_AT: [usize; 4] = [0x188, 0x198, 0x1a8, 0x1b8];

/// A random (version 4) UUID for a new image, from the standard library's
/// randomly seeded hasher (no dependency needed for 16 unpredictable bytes).
fn random_uuid() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut b = [0u8; 16];
    for half in b.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

impl Header {
    /// A new image's header: `size` bytes (rounded up to a sector), the
    /// block map right after the header, the data after the map (each
    /// rounded up to a sector), as qemu-img lays it out. Errors (for `op`)
    /// when the size is out of the driver's range.
    pub fn new(op: &'static str, size: u64, image_type: u32) -> Result<Header> {
        let too_large = || {
            BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!(
                    "size {size} is larger than a vdi image can be (at most {} bytes)",
                    MAX_MAP_BYTES / MAP_ENTRY_SIZE * BLOCK_SIZE
                ),
            )
        };
        let disk_size = size
            .checked_next_multiple_of(SECTOR_SIZE)
            .ok_or_else(too_large)?;
        let blocks = disk_size.div_ceil(BLOCK_SIZE);
        if blocks * MAP_ENTRY_SIZE > MAX_MAP_BYTES {
            return Err(too_large());
        }
        let map_len = (blocks * MAP_ENTRY_SIZE).next_multiple_of(SECTOR_SIZE);
        let mut h = Header {
            signature: SIGNATURE,
            version: VERSION_1_1,
            header_size: HEADER_SIZE_1_1,
            image_type,
            offset_bmap: HEADER_SIZE as u32,
            offset_data: (HEADER_SIZE + map_len) as u32,
            sector_size: SECTOR_SIZE as u32,
            disk_size,
            block_size: BLOCK_SIZE as u32,
            blocks_in_image: blocks as u32,
            blocks_allocated: if image_type == TYPE_STATIC {
                blocks as u32
            } else {
                0
            },
            ..Header::default()
        };
        h.raw[..CREATOR_TEXT.len()].copy_from_slice(CREATOR_TEXT);
        h.raw[UUID_AT[0]..UUID_AT[0] + 16].copy_from_slice(&random_uuid());
        h.raw[UUID_AT[1]..UUID_AT[1] + 16].copy_from_slice(&random_uuid());
        h.raw = h.encode();
        Ok(h)
    }

    /// The block size as a u64.
    pub fn block(&self) -> u64 {
        u64::from(self.block_size)
    }

    /// The block map's length in bytes.
    pub fn map_bytes(&self) -> u64 {
        u64::from(self.blocks_in_image) * MAP_ENTRY_SIZE
    }

    /// The file offset of data block `n`.
    pub fn block_at(&self, n: u32) -> u64 {
        u64::from(self.offset_data) + u64::from(n) * self.block()
    }

    /// The header's bytes: the raw area with the fields written over it.
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = self.raw;
        HeaderFields::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and validates a header read from an image; the error says
    /// which field is wrong. The disk size is rounded up to a sector (some
    /// tools write odd sizes), as QEMU does.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let mut h = Header::default();
        HeaderFields::decode(&mut h, &FieldReader::new(b, ENDIAN, "open"))?;
        h.raw.copy_from_slice(&b[..HEADER_SIZE as usize]);
        let unsupported = |what: String| {
            Err(BlockError::new(
                ErrorKind::Unsupported,
                "open",
                format!("unsupported VDI image ({what})"),
            ))
        };
        if h.signature != SIGNATURE {
            return Err(BlockError::corrupt(
                "open",
                format!("not a VDI image (bad signature {:#010x})", h.signature),
            ));
        }
        if h.version != VERSION_1_1 {
            return unsupported(format!(
                "version {}.{}",
                h.version >> 16,
                h.version & 0xffff
            ));
        }
        if !(u64::from(HEADER_SIZE_1_1)..=HEADER_SIZE - 0x48).contains(&u64::from(h.header_size)) {
            return unsupported(format!("header size {:#x}", h.header_size));
        }
        if h.image_type != TYPE_DYNAMIC && h.image_type != TYPE_STATIC {
            return unsupported(format!("image type {}", h.image_type));
        }
        if u64::from(h.offset_bmap) % SECTOR_SIZE != 0 {
            return unsupported(format!("unaligned block map offset {:#x}", h.offset_bmap));
        }
        if u64::from(h.offset_data) % SECTOR_SIZE != 0 {
            return unsupported(format!("unaligned data offset {:#x}", h.offset_data));
        }
        if u64::from(h.sector_size) != SECTOR_SIZE {
            return unsupported(format!(
                "sector size {} is not {SECTOR_SIZE}",
                h.sector_size
            ));
        }
        if h.block() != BLOCK_SIZE {
            return unsupported(format!("block size {} is not {BLOCK_SIZE}", h.block_size));
        }
        if h.block_extra != 0 {
            return unsupported(format!("{} extra bytes per block", h.block_extra));
        }
        h.disk_size = h
            .disk_size
            .checked_next_multiple_of(SECTOR_SIZE)
            .ok_or_else(|| BlockError::corrupt("open", "disk size overflows"))?;
        let room = u64::from(h.blocks_in_image) * h.block();
        if h.disk_size > room {
            return unsupported(format!(
                "disk size {}, block map has room for {room}",
                h.disk_size
            ));
        }
        for (at, what) in [(UUID_AT[2], "link"), (UUID_AT[3], "parent")] {
            if h.raw[at..at + 16].iter().any(|&x| x != 0) {
                return unsupported(format!(
                    "differencing images (a {what} UUID) are not supported"
                ));
            }
        }
        Ok(h)
    }

    /// Checks that the block map lies after the header, before the data
    /// and inside a file of `file_len` bytes, and is at most
    /// [`MAX_MAP_BYTES`] long: call it before allocating or reading the map.
    pub fn check_map(&self, file_len: u64) -> Result<()> {
        let rules = TableRules {
            op: "open",
            alignment: SECTOR_SIZE,
            unit: "sector",
            max_end: file_len,
        };
        let at = u64::from(self.offset_bmap);
        rules.check("block map", at, self.map_bytes(), MAX_MAP_BYTES)?;
        if at < HEADER_SIZE {
            return Err(BlockError::corrupt("open", "the block map overlaps the header").at(at));
        }
        if u64::from(self.offset_data) < at + self.map_bytes() {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "the data offset {:#x} lies inside the block map",
                    self.offset_data
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_header_is_laid_out_as_qemu_img_lays_it_out() {
        let h = Header::new("create", 3_000_000, TYPE_STATIC).unwrap();
        let b = h.encode();
        assert_eq!(&b[..CREATOR_TEXT.len()], CREATOR_TEXT);
        assert_eq!(b[0x40..0x44], SIGNATURE.to_le_bytes());
        assert_eq!(b[0x4c..0x50], 2u32.to_le_bytes());
        assert_eq!(b[0x154..0x15c], [0, 2, 0, 0, 0, 4, 0, 0]);
        assert_eq!(b[0x170..0x178], 3_000_320u64.to_le_bytes());
        assert_eq!(b[0x180..0x188], [3, 0, 0, 0, 3, 0, 0, 0]);
        assert_ne!(b[0x188..0x198], [0; 16], "an image UUID");
        assert_eq!(b[0x1a8..0x1c8], [0; 32], "no link or parent");
        assert_eq!(Header::decode(&b).unwrap(), h);
        assert_ne!(
            Header::new("create", 0, TYPE_DYNAMIC).unwrap().raw[0x188..0x198],
            b[0x188..0x198],
            "UUIDs differ"
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let good = Header::new("create", 4 << 20, TYPE_DYNAMIC)
            .unwrap()
            .encode();
        let cases: [(usize, u8, ErrorKind, &str); 10] = [
            (0x40, b'x', ErrorKind::Corrupt, "bad signature"),
            (0x44, 0, ErrorKind::Unsupported, "version 1.0"),
            (0x49, 0, ErrorKind::Unsupported, "header size"),
            (0x4c, 3, ErrorKind::Unsupported, "image type 3"),
            (0x154, 1, ErrorKind::Unsupported, "unaligned block map"),
            (0x158, 1, ErrorKind::Unsupported, "unaligned data"),
            (0x169, 4, ErrorKind::Unsupported, "sector size"),
            (0x17a, 0, ErrorKind::Unsupported, "block size 0 is not"),
            (0x180, 3, ErrorKind::Unsupported, "block map has room"),
            (0x1b8, 1, ErrorKind::Unsupported, "parent UUID"),
        ];
        for (at, value, kind, words) in cases {
            let mut b = good;
            b[at] = value;
            let e = Header::decode(&b).unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert!(e.message.contains(words), "{at:#x}: {e}");
        }
        let e = Header::decode(&good[..0x100]).unwrap_err();
        assert!(e.message.contains("offset_bmap"), "{e}");
    }

    #[test]
    fn the_map_is_bounded_and_placed_before_it_is_read() {
        let mut h = Header::new("create", 1 << 30, TYPE_DYNAMIC).unwrap();
        h.check_map(u64::from(h.offset_data)).unwrap();
        let e = h.check_map(600).unwrap_err();
        assert!(e.message.contains("block map"), "{e}");
        h.offset_bmap = 0;
        assert!(h.check_map(1 << 30).unwrap_err().message.contains("header"));
        h.offset_bmap = 512;
        h.offset_data = 1024;
        assert!(h.check_map(1 << 30).unwrap_err().message.contains("inside"));
        h.blocks_in_image = u32::MAX;
        let e = h.check_map(u64::MAX).unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn new_headers_refuse_sizes_the_map_cannot_hold() {
        for size in [u64::MAX, 17 << 40] {
            let e = Header::new("create", size, TYPE_DYNAMIC).unwrap_err();
            assert!(e.message.contains("larger than"), "{e}");
        }
        assert_eq!(
            Header::new("create", 0, TYPE_DYNAMIC)
                .unwrap()
                .blocks_in_image,
            0
        );
    }
}
