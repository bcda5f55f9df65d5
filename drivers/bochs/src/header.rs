//! The Bochs header: the first [`HEADER_LEN`] bytes, fields little-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 0..32 | magic `Bochs Virtual HD Image`, NUL-terminated |
//! | 32..48 | type `Redolog` |
//! | 48..64 | subtype `Growing` (QEMU reads only growing images) |
//! | 64..68 | version (0x00010000 or 0x00020000) |
//! | 68..72 | header size: the catalog starts there |
//! | 72..76 | catalog entries |
//! | 76..80 | bitmap size in bytes |
//! | 80..84 | extent size in bytes |
//! | 84..92 | disk size in bytes (version 1) |
//! | 88..96 | disk size in bytes (version 2; 84..88 reserved) |
//!
//! [`Header::decode`] checks every field with QEMU's rules before the
//! catalog is sized by it.

use block_core::engine::codec::{get_le32, get_le64};
use block_core::{BlockError, Result};

/// Bytes of the header.
pub const HEADER_LEN: usize = 512;
/// The magic string.
pub const MAGIC: &[u8] = b"Bochs Virtual HD Image";
/// The type of the images QEMU reads.
pub const REDOLOG_TYPE: &[u8] = b"Redolog";
/// The subtype of the images QEMU reads.
pub const GROWING_TYPE: &[u8] = b"Growing";
/// Header version 2 (the disk size at byte 88).
pub const VERSION: u32 = 0x0002_0000;
/// Header version 1 (the disk size at byte 84).
pub const VERSION_1: u32 = 0x0001_0000;
/// The most catalog entries QEMU accepts (the largest image bximage
/// makes), which bounds the catalog's memory.
pub const MAX_CATALOG: u32 = 0x10_0000;
/// The largest extent size QEMU accepts.
pub const MAX_EXTENT: u32 = 0x80_0000;
/// A catalog entry of an extent that is not allocated.
pub const UNALLOCATED: u32 = 0xffff_ffff;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// The header version.
    pub version: u32,
    /// Offset of the catalog.
    pub header_size: u32,
    /// Entries of the catalog.
    pub catalog: u32,
    /// Bytes of an extent's sector bitmap.
    pub bitmap: u32,
    /// Bytes of an extent.
    pub extent: u32,
    /// Disk size in bytes.
    pub disk: u64,
}

/// True when the NUL-terminated string field `f` is `want`.
fn is_str(f: &[u8], want: &[u8]) -> bool {
    f.len() > want.len() && &f[..want.len()] == want && f[want.len()] == 0
}

/// True when `b` starts with a header QEMU probes as Bochs.
pub fn probe(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN
        && is_str(&b[0..32], MAGIC)
        && is_str(&b[32..48], REDOLOG_TYPE)
        && is_str(&b[48..64], GROWING_TYPE)
        && matches!(get_le32(b, 64), VERSION | VERSION_1)
}

fn invalid(msg: impl Into<String>) -> BlockError {
    BlockError::invalid("open", msg)
}

impl Header {
    /// Decodes and validates the header in `b` (at least [`HEADER_LEN`]
    /// bytes), in QEMU's order and words.
    pub fn decode(b: &[u8]) -> Result<Header> {
        if !probe(b) {
            return Err(invalid("Image not in Bochs format"));
        }
        let version = get_le32(b, 64);
        let h = Header {
            version,
            header_size: get_le32(b, 68),
            catalog: get_le32(b, 72),
            bitmap: get_le32(b, 76),
            extent: get_le32(b, 80),
            disk: get_le64(b, if version == VERSION_1 { 84 } else { 88 }),
        };
        if h.catalog > MAX_CATALOG {
            return Err(invalid("Catalog size is too large"));
        }
        if h.extent < 512 {
            return Err(invalid("Extent size must be at least 512"));
        }
        if !h.extent.is_power_of_two() {
            return Err(invalid(format!(
                "Extent size {} is not a power of two",
                h.extent
            )));
        }
        if h.extent > MAX_EXTENT {
            return Err(invalid(format!("Extent size {} is too large", h.extent)));
        }
        if u64::from(h.catalog) < h.sectors().div_ceil(u64::from(h.extent) / 512) {
            return Err(invalid("Catalog size is too small for this disk size"));
        }
        if u64::from(h.bitmap) * 8 < u64::from(h.extent) / 512 {
            return Err(invalid(format!(
                "Bitmap size {} is too small for extents of {} bytes",
                h.bitmap, h.extent
            )));
        }
        Ok(h)
    }

    /// Sectors of the disk (QEMU's size, whole sectors).
    pub fn sectors(&self) -> u64 {
        self.disk / 512
    }

    /// Where the first allocated extent starts: after the catalog.
    pub fn data_offset(&self) -> u64 {
        u64::from(self.header_size) + u64::from(self.catalog) * 4
    }

    /// Sectors of an extent's bitmap.
    pub fn bitmap_sectors(&self) -> u64 {
        u64::from(self.bitmap).div_ceil(512)
    }

    /// Sectors of an extent's data.
    pub fn extent_sectors(&self) -> u64 {
        u64::from(self.extent) / 512
    }
}
