//! The region table (64 KiB at 192 KiB, a copy at 256 KiB; CRC-32C over
//! the 64 KiB): where the BAT and the metadata region are. A region this
//! driver does not know that is marked required refuses the open, as the
//! spec asks; regions must not overlap each other or the log.

use crate::guid::Guid;
use crate::header::{checksum, seal, ENDIAN, HEADER_SECTION_END, MIB};
use block_core::engine::codec::FieldReader;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// Offsets of the two copies of the region table.
pub const REGION_TABLE_OFFSETS: [u64; 2] = [192 << 10, 256 << 10];
/// Bytes of a region table (its checksum covers them all).
pub const REGION_TABLE_SIZE: usize = 64 << 10;
/// "regi".
pub const REGION_SIGNATURE: u32 = u32::from_le_bytes(*b"regi");
/// The spec's maximum number of entries.
pub const MAX_REGION_ENTRIES: u32 = 2047;
/// Flag of an entry the reader must understand.
pub const REGION_REQUIRED: u32 = 1;
/// The BAT region's GUID.
pub const BAT_GUID: Guid = Guid::from_fields(
    0x2dc27766,
    0xf623,
    0x4200,
    [0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08],
);
/// The metadata region's GUID.
pub const METADATA_GUID: Guid = Guid::from_fields(
    0x8b7ca206,
    0x4790,
    0x4b9a,
    [0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e],
);

/// A region: its file offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// File offset (1 MiB aligned).
    pub offset: u64,
    /// Length in bytes (a multiple of 1 MiB).
    pub length: u64,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }

    fn overlaps(&self, o: &Region) -> bool {
        self.offset < o.end() && o.offset < self.end()
    }
}

/// The two regions the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    /// The block allocation table.
    pub bat: Region,
    /// The metadata region.
    pub metadata: Region,
}

impl Regions {
    /// Decodes a region table copy; `log` is the log's region (regions
    /// must not overlap it) and `file_len` bounds every region.
    pub fn decode(b: &[u8], log: Region, file_len: u64) -> Result<Regions> {
        let bad = |m: String| BlockError::corrupt("open", m).at(REGION_TABLE_OFFSETS[0]);
        let r = FieldReader::new(b, ENDIAN, "open");
        if b.len() < REGION_TABLE_SIZE
            || r.u32(0, "signature")? != REGION_SIGNATURE
            || r.u32(4, "checksum")? != checksum(&b[..REGION_TABLE_SIZE], 4)
        {
            return Err(bad(
                "VHDX region table has a bad signature or checksum".into()
            ));
        }
        let count = r.u32(8, "entry_count")?;
        if count > MAX_REGION_ENTRIES {
            return Err(bad(format!(
                "VHDX region table has {count} entries (at most 2047)"
            )));
        }
        let mut seen: Vec<Region> = vec![log];
        let (mut bat, mut metadata) = (None, None);
        for i in 0..count as usize {
            let e = 16 + 32 * i;
            let guid = Guid::read(r.bytes(e, 16, "region guid")?, 0);
            let region = Region {
                offset: r.u64(e + 16, "region offset")?,
                length: u64::from(r.u32(e + 24, "region length")?),
            };
            let flags = r.u32(e + 28, "region flags")?;
            if region.offset < HEADER_SECTION_END
                || region.offset % MIB != 0
                || region.length % MIB != 0
                || region
                    .offset
                    .checked_add(region.length)
                    .is_none_or(|e| e > file_len)
            {
                return Err(bad(format!(
                    "VHDX region {i} at {} ({} bytes) is misaligned or past the end of the file ({file_len} bytes)",
                    region.offset, region.length
                )));
            }
            if seen.iter().any(|s| s.length > 0 && s.overlaps(&region)) {
                return Err(bad(format!(
                    "VHDX region {i} overlaps another region or the log"
                )));
            }
            seen.push(region);
            let slot = if guid == BAT_GUID {
                &mut bat
            } else if guid == METADATA_GUID {
                &mut metadata
            } else if flags & REGION_REQUIRED != 0 {
                return Err(BlockError::unsupported_feature(
                    "open",
                    format!("VHDX region {i} is required but unknown to this driver"),
                ));
            } else {
                continue;
            };
            if slot.replace(region).is_some() {
                return Err(bad("VHDX region table names a region twice".into()));
            }
        }
        match (bat, metadata) {
            (Some(bat), Some(metadata)) => Ok(Regions { bat, metadata }),
            _ => Err(bad(
                "VHDX region table lacks the BAT or the metadata region".into(),
            )),
        }
    }

    /// Reads the first region table of `file`.
    pub fn load(file: &dyn BlockNode, log: Region, file_len: u64) -> Result<Regions> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        file.read_at(REGION_TABLE_OFFSETS[0], &mut b)?;
        Regions::decode(&b, log, file_len)
    }

    /// A region table holding the two regions (flags as QEMU writes them).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; REGION_TABLE_SIZE];
        ENDIAN.put_u32(&mut b, 0, REGION_SIGNATURE);
        ENDIAN.put_u32(&mut b, 8, 2);
        for (i, (g, r)) in [(BAT_GUID, self.bat), (METADATA_GUID, self.metadata)]
            .into_iter()
            .enumerate()
        {
            let e = 16 + 32 * i;
            g.write(&mut b, e);
            ENDIAN.put_u64(&mut b, e + 16, r.offset);
            ENDIAN.put_u32(&mut b, e + 24, r.length as u32);
            ENDIAN.put_u32(&mut b, e + 28, 0);
        }
        seal(&mut b, 4);
        b
    }
}
