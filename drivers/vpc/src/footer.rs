//! The VHD footer: 512 bytes, big-endian, at the end of every image (and,
//! in dynamic images, copied at offset 0), with the disk's size, its CHS
//! geometry and its type. Also the rules that turn a requested size into
//! the size and geometry qemu-img writes.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | cookie [`MAGIC`] |
//! | 8..12 | features (2) |
//! | 12..16 | version (0x00010000) |
//! | 16..24 | data offset: the dynamic header's offset, all ones when fixed |
//! | 24..28 | timestamp, seconds since 2000-01-01 UTC |
//! | 28..32 | creator application (`qemu`, or `qem2` with `force_size`) |
//! | 32..36 | creator version |
//! | 36..40 | creator host OS (`Wi2k`) |
//! | 40..48 | original size in bytes |
//! | 48..56 | current size in bytes |
//! | 56..58, 58, 59 | cylinders (u16), heads (u8), sectors per track (u8) |
//! | 60..64 | disk type: [`TYPE_FIXED`], [`TYPE_DYNAMIC`], 4 differencing |
//! | 64..68 | checksum: one's complement of the sum of the other bytes |
//! | 68..84 | unique id |
//! | 84 | saved state |

use block_core::engine::codec::{Endian, FieldReader};
use block_core::{BlockError, ErrorKind, Result};

/// The footer's size (also the sector size).
pub const FOOTER_SIZE: u64 = 512;
/// The footer's cookie.
pub const MAGIC: [u8; 8] = *b"conectix";
/// Byte order of every field.
pub const ENDIAN: Endian = Endian::Big;
/// Disk type of a fixed image.
pub const TYPE_FIXED: u32 = 2;
/// Disk type of a dynamic image.
pub const TYPE_DYNAMIC: u32 = 3;
/// Disk type of a differencing image (not supported).
pub const TYPE_DIFFERENCING: u32 = 4;
/// The largest CHS geometry (65535 cylinders, 16 heads, 255 sectors), in
/// sectors: images this size use the footer's current size instead.
pub const MAX_GEOMETRY_SECTORS: u64 = 65535 * 16 * 255;
/// The largest disk, in sectors (2040 GiB), as QEMU allows.
pub const MAX_SECTORS: u64 = 0xff00_0000;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 UTC).
pub const VHD_EPOCH: u64 = 946_684_800;
/// Offset of the checksum field.
const CHECKSUM_AT: usize = 64;

/// The numeric fields of a footer (the byte fields stay in the raw copy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FooterFields {
    /// The dynamic header's offset (all ones in fixed images).
    pub data_offset: u64,
    /// Original size in bytes.
    pub orig_size: u64,
    /// Current size in bytes.
    pub current_size: u64,
    /// Cylinders.
    pub cyls: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub secs: u8,
    /// Disk type.
    pub disk_type: u32,
    /// Stored checksum.
    pub checksum: u32,
}

block_core::fixed_fields! {
    /// The numeric fields' offsets (the table above).
    Layout for FooterFields {
        data_offset @ 16,
        orig_size @ 40,
        current_size @ 48,
        cyls @ 56,
        heads @ 58,
        secs @ 59,
        disk_type @ 60,
        checksum @ 64,
    }
}

/// How the guest-visible size is read from a footer (the
/// `force_size_calc` open option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SizeCalc {
    /// By the creator application, as QEMU does by default.
    #[default]
    ByCreator,
    /// From the CHS geometry (`chs`).
    Chs,
    /// From the current size field (`current_size`).
    CurrentSize,
}

/// A footer: its raw bytes (written back unchanged as the trailer copy)
/// and its decoded fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The 512 bytes as stored.
    pub raw: [u8; FOOTER_SIZE as usize],
    /// The decoded numeric fields.
    pub fields: FooterFields,
}

/// One's complement of the byte sum of `b`, the checksum field counted as
/// zero.
pub fn checksum(b: &[u8], checksum_at: usize) -> u32 {
    let sum = b.iter().enumerate().fold(0u32, |s, (i, &x)| {
        let x = if (checksum_at..checksum_at + 4).contains(&i) {
            0
        } else {
            x
        };
        s.wrapping_add(u32::from(x))
    });
    !sum
}

/// The CHS geometry (cylinders, heads, sectors per track) the VHD
/// specification's algorithm gives `sectors` (capped at the largest).
pub fn geometry(sectors: u64) -> (u16, u8, u8) {
    let total = sectors.min(MAX_GEOMETRY_SECTORS);
    let (mut secs, mut heads, mut cyl_heads);
    if total >= 65535 * 16 * 63 {
        secs = 255;
        heads = 16;
        cyl_heads = total / secs;
    } else {
        secs = 17;
        cyl_heads = total / secs;
        heads = cyl_heads.div_ceil(1024).max(4);
        if cyl_heads >= heads * 1024 || heads > 16 {
            secs = 31;
            heads = 16;
            cyl_heads = total / secs;
        }
        if cyl_heads >= heads * 1024 {
            secs = 63;
            heads = 16;
            cyl_heads = total / secs;
        }
    }
    ((cyl_heads / heads) as u16, heads as u8, secs as u8)
}

/// The sectors a geometry addresses.
pub fn geometry_sectors((c, h, s): (u16, u8, u8)) -> u64 {
    u64::from(c) * u64::from(h) * u64::from(s)
}

/// What a create request of `size` bytes becomes: the disk's size in bytes
/// and its geometry, as qemu-img computes them. The size is first rounded
/// up to whole sectors; without `force_size` it then grows to the first
/// geometry covering it; with it (or when the geometry is the largest) it
/// is kept.
pub fn create_size(size: u64, force_size: bool) -> Result<(u64, (u16, u8, u8))> {
    let max = (65535, 16, 255);
    let requested = size.div_ceil(FOOTER_SIZE);
    let geo = if force_size {
        max
    } else {
        let want = requested.min(MAX_GEOMETRY_SECTORS);
        let mut geo = (0, 0, 0);
        let mut i = 0;
        while want > geometry_sectors(geo) {
            geo = geometry(want + i);
            i += 1;
        }
        geo
    };
    let sectors = if geometry_sectors(geo) == MAX_GEOMETRY_SECTORS {
        let s = requested;
        if s > MAX_SECTORS {
            return Err(BlockError::new(
                ErrorKind::OutOfRange,
                "create",
                "Disk size is too large, max size is 2040 GiB",
            ));
        }
        s
    } else {
        geometry_sectors(geo)
    };
    Ok((sectors * FOOTER_SIZE, geo))
}

impl Footer {
    /// A new image's footer, as qemu-img writes it.
    pub fn new(size: u64, geo: (u16, u8, u8), force_size: bool, dynamic: bool) -> Footer {
        let mut raw = [0u8; FOOTER_SIZE as usize];
        raw[0..8].copy_from_slice(&MAGIC);
        ENDIAN.put_u32(&mut raw, 8, 2);
        ENDIAN.put_u32(&mut raw, 12, 0x0001_0000);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ENDIAN.put_u32(&mut raw, 24, now.saturating_sub(VHD_EPOCH) as u32);
        raw[28..32].copy_from_slice(if force_size { b"qem2" } else { b"qemu" });
        // Virtual PC 2007's version, as QEMU writes.
        ENDIAN.put_u32(&mut raw, 32, 0x0005_0003);
        raw[36..40].copy_from_slice(b"Wi2k");
        raw[68..84].copy_from_slice(&unique_id());
        let mut fields = FooterFields {
            data_offset: if dynamic { FOOTER_SIZE } else { u64::MAX },
            orig_size: size,
            current_size: size,
            cyls: geo.0,
            heads: geo.1,
            secs: geo.2,
            disk_type: if dynamic { TYPE_DYNAMIC } else { TYPE_FIXED },
            checksum: 0,
        };
        Layout::encode(&fields, &mut raw, ENDIAN);
        fields.checksum = checksum(&raw, CHECKSUM_AT);
        Layout::encode(&fields, &mut raw, ENDIAN);
        Footer { raw, fields }
    }

    /// True when `b` starts with the footer's cookie.
    pub fn has_magic(b: &[u8]) -> bool {
        b.len() >= MAGIC.len() && b[..MAGIC.len()] == MAGIC
    }

    /// Decodes and checks a footer read from an image.
    pub fn decode(b: &[u8]) -> Result<Footer> {
        let raw: [u8; FOOTER_SIZE as usize] = b
            .get(..FOOTER_SIZE as usize)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| BlockError::corrupt("open", "the footer is shorter than 512 bytes"))?;
        if !Self::has_magic(&raw) {
            return Err(BlockError::corrupt("open", "invalid VPC image (no footer)"));
        }
        let mut fields = FooterFields::default();
        Layout::decode(&mut fields, &FieldReader::new(&raw, ENDIAN, "open"))?;
        if checksum(&raw, CHECKSUM_AT) != fields.checksum {
            return Err(BlockError::corrupt("open", "Incorrect header checksum"));
        }
        match fields.disk_type {
            TYPE_FIXED | TYPE_DYNAMIC => {}
            TYPE_DIFFERENCING => {
                return Err(BlockError::new(
                    ErrorKind::Unsupported,
                    "open",
                    "differencing VHD images are not supported",
                ))
            }
            t => {
                return Err(BlockError::corrupt(
                    "open",
                    format!("unknown VHD disk type {t}"),
                ))
            }
        }
        Ok(Footer { raw, fields })
    }

    /// The creator application (`qemu`, `win `, …).
    pub fn creator_app(&self) -> [u8; 4] {
        [self.raw[28], self.raw[29], self.raw[30], self.raw[31]]
    }

    /// True for a dynamic image.
    pub fn is_dynamic(&self) -> bool {
        self.fields.disk_type == TYPE_DYNAMIC
    }

    /// The guest-visible size in bytes, as QEMU reads it: the CHS geometry
    /// for images of Virtual PC and QEMU (`vpc `, `qemu`), the current size
    /// for every other creator, unless `calc` says which; the current size
    /// always for images of the largest geometry.
    pub fn disk_size(&self, calc: SizeCalc) -> Result<u64> {
        let f = &self.fields;
        let chs = geometry_sectors((f.cyls, f.heads, f.secs));
        let app = self.creator_app();
        let use_chs = match calc {
            SizeCalc::ByCreator => &app == b"vpc " || &app == b"qemu",
            SizeCalc::Chs => true,
            SizeCalc::CurrentSize => false,
        };
        let sectors = if !use_chs || chs == MAX_GEOMETRY_SECTORS {
            f.current_size / FOOTER_SIZE
        } else {
            chs
        };
        if sectors > MAX_SECTORS {
            return Err(BlockError::new(
                ErrorKind::OutOfRange,
                "open",
                format!("disk of {sectors} sectors is larger than 2040 GiB"),
            ));
        }
        Ok(sectors * FOOTER_SIZE)
    }
}

/// A unique id for a new image (random per process and call: no id is
/// ever read back by the driver, they only tell images apart).
fn unique_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (k, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(k);
        chunk.copy_from_slice(&h.finish().to_be_bytes());
    }
    // Version 4 (random), variant 1.
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}
