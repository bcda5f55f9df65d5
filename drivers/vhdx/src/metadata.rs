//! The metadata region: a table (its first 64 KiB) of items by GUID, each
//! an offset and a length inside the region. The five items every image
//! has: file parameters (block size, leave blocks allocated, has parent),
//! virtual disk size, page 83 data, logical and physical sector size.
//! Differencing images (has parent) are refused, as QEMU refuses them.

use crate::guid::Guid;
use crate::header::{ENDIAN, MIB};
use crate::region::Region;
use block_core::engine::codec::FieldReader;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// "metadata".
pub const METADATA_SIGNATURE: &[u8; 8] = b"metadata";
/// Bytes of the metadata table at the start of the region.
pub const TABLE_SIZE: u64 = 64 << 10;
/// The spec's maximum number of metadata entries.
pub const MAX_ENTRIES: u16 = 2047;
/// Smallest block size.
pub const MIN_BLOCK_SIZE: u32 = 1 << 20;
/// Largest block size.
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Largest virtual disk (64 TiB).
pub const MAX_DISK_SIZE: u64 = 64 << 40;
/// The spec's 2^23 sectors a sector bitmap block covers.
pub const SECTORS_PER_BITMAP: u64 = 1 << 23;

/// Entry flag: the item is required.
const IS_REQUIRED: u32 = 4;
/// Entry flag: the item describes the virtual disk.
const IS_VIRTUAL_DISK: u32 = 2;
/// File parameter bit: blocks stay allocated (a fixed image).
pub const LEAVE_BLOCKS_ALLOCATED: u32 = 1;
/// File parameter bit: a differencing image.
pub const HAS_PARENT: u32 = 2;

/// The file parameters item.
pub const FILE_PARAMETERS: Guid = Guid::from_fields(
    0xcaa16737,
    0xfa36,
    0x4d43,
    [0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b],
);
/// The virtual disk size item.
pub const VIRTUAL_DISK_SIZE: Guid = Guid::from_fields(
    0x2fa54224,
    0xcd1b,
    0x4876,
    [0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8],
);
/// The page 83 data item (the disk's SCSI identifier).
pub const PAGE83: Guid = Guid::from_fields(
    0xbeca12ab,
    0xb2e6,
    0x4523,
    [0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46],
);
/// The logical sector size item.
pub const LOGICAL_SECTOR: Guid = Guid::from_fields(
    0x8141bf1d,
    0xa96f,
    0x4709,
    [0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f],
);
/// The physical sector size item.
pub const PHYSICAL_SECTOR: Guid = Guid::from_fields(
    0xcda348c7,
    0x445d,
    0x4471,
    [0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56],
);
/// The parent locator item (differencing images).
pub const PARENT_LOCATOR: Guid = Guid::from_fields(
    0xa8d35f2d,
    0xb30b,
    0x454d,
    [0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c],
);

/// The disk's parameters from the metadata region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskParams {
    /// Payload block size (a power of two, 1 MiB to 256 MiB).
    pub block_size: u32,
    /// Leave blocks allocated (fixed image).
    pub leave_blocks_allocated: bool,
    /// Guest-visible size in bytes.
    pub disk_size: u64,
    /// Logical sector size (512 or 4096).
    pub logical_sector: u32,
    /// Physical sector size (512 or 4096).
    pub physical_sector: u32,
    /// Page 83 data.
    pub page83: Guid,
}

impl DiskParams {
    /// Payload blocks per sector bitmap block.
    pub fn chunk_ratio(&self) -> u64 {
        SECTORS_PER_BITMAP * u64::from(self.logical_sector) / u64::from(self.block_size)
    }

    /// Payload blocks of the disk.
    pub fn data_blocks(&self) -> u64 {
        self.disk_size.div_ceil(u64::from(self.block_size))
    }

    /// BAT entries (payload entries with a sector bitmap entry after each
    /// chunk of them, none after the last chunk), as QEMU counts them.
    pub fn bat_entries(&self) -> u64 {
        let n = self.data_blocks();
        n + n.saturating_sub(1) / self.chunk_ratio()
    }

    /// Checks the values: what the spec allows and QEMU reads.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BlockError::corrupt("open", m));
        let bs = self.block_size;
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) || !bs.is_power_of_two() {
            return bad(format!(
                "VHDX block size {bs} is not a power of two from 1 MiB to 256 MiB"
            ));
        }
        for (what, s) in [
            ("logical", self.logical_sector),
            ("physical", self.physical_sector),
        ] {
            if s != 512 && s != 4096 {
                return bad(format!(
                    "VHDX {what} sector size {s} is neither 512 nor 4096"
                ));
            }
        }
        if self.disk_size == 0 || self.disk_size > MAX_DISK_SIZE {
            return bad(format!(
                "VHDX virtual disk size {} is 0 or above 64 TiB",
                self.disk_size
            ));
        }
        if self.disk_size % u64::from(self.logical_sector) != 0 {
            return bad(format!(
                "VHDX virtual disk size {} is not a multiple of the sector size",
                self.disk_size
            ));
        }
        Ok(())
    }

    /// Reads the metadata region `region` of `file`.
    pub fn load(file: &dyn BlockNode, region: Region) -> Result<DiskParams> {
        let bad = |m: String| BlockError::corrupt("open", m).at(region.offset);
        if region.length < TABLE_SIZE {
            return Err(bad("VHDX metadata region is smaller than its table".into()));
        }
        let mut t = vec![0u8; TABLE_SIZE as usize];
        file.read_at(region.offset, &mut t)?;
        let r = FieldReader::new(&t, ENDIAN, "open");
        if r.bytes(0, 8, "signature")? != METADATA_SIGNATURE {
            return Err(bad("VHDX metadata table has a bad signature".into()));
        }
        let count = r.u16(10, "entry_count")?;
        if count > MAX_ENTRIES {
            return Err(bad(format!(
                "VHDX metadata table has {count} entries (at most 2047)"
            )));
        }
        let known = [
            (FILE_PARAMETERS, 8u32),
            (VIRTUAL_DISK_SIZE, 8),
            (PAGE83, 16),
            (LOGICAL_SECTOR, 4),
            (PHYSICAL_SECTOR, 4),
        ];
        let mut items: [Option<Vec<u8>>; 5] = Default::default();
        let mut has_locator = false;
        for i in 0..count as usize {
            let e = 32 + 32 * i;
            let guid = Guid::read(r.bytes(e, 16, "item guid")?, 0);
            let offset = r.u32(e + 16, "item offset")?;
            let length = r.u32(e + 20, "item length")?;
            let flags = r.u32(e + 24, "item flags")?;
            if guid == PARENT_LOCATOR {
                has_locator = true;
                continue;
            }
            let Some(k) = known.iter().position(|(g, _)| *g == guid) else {
                if flags & IS_REQUIRED != 0 {
                    return Err(BlockError::unsupported_feature(
                        "open",
                        format!("VHDX metadata item {i} is required but unknown to this driver"),
                    ));
                }
                continue;
            };
            let want = known[k].1;
            let end = u64::from(offset) + u64::from(want);
            if u64::from(offset) < TABLE_SIZE || length < want || end > region.length {
                return Err(bad(format!(
                    "VHDX metadata item {i} at {offset} ({length} bytes) lies outside the metadata region"
                )));
            }
            if items[k].is_some() {
                return Err(bad(format!("VHDX metadata item {i} appears twice")));
            }
            let mut v = vec![0u8; want as usize];
            file.read_at(region.offset + u64::from(offset), &mut v)?;
            items[k] = Some(v);
        }
        let [Some(fp), Some(size), Some(p83), Some(ls), Some(ps)] = items else {
            return Err(BlockError::unsupported_feature(
                "open",
                "VHDX metadata lacks a required item",
            ));
        };
        let bits = ENDIAN.u32(&fp, 4);
        if bits & HAS_PARENT != 0 {
            let what = if has_locator {
                "differencing VHDX images are not supported"
            } else {
                "VHDX image has a parent but no parent locator"
            };
            return Err(BlockError::unsupported_feature("open", what));
        }
        let p = DiskParams {
            block_size: ENDIAN.u32(&fp, 0),
            leave_blocks_allocated: bits & LEAVE_BLOCKS_ALLOCATED != 0,
            disk_size: ENDIAN.u64(&size, 0),
            logical_sector: ENDIAN.u32(&ls, 0),
            physical_sector: ENDIAN.u32(&ps, 0),
            page83: Guid::read(&p83, 0),
        };
        p.validate()?;
        Ok(p)
    }

    /// The metadata region's first bytes (table and items, as QEMU lays
    /// them out: items from 64 KiB on); the rest of the region is zeros.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; TABLE_SIZE as usize + 64];
        b[..8].copy_from_slice(METADATA_SIGNATURE);
        b[10..12].copy_from_slice(&5u16.to_le_bytes());
        let items = [
            (FILE_PARAMETERS, 8u32, IS_REQUIRED),
            (VIRTUAL_DISK_SIZE, 8, IS_REQUIRED | IS_VIRTUAL_DISK),
            (PAGE83, 16, IS_REQUIRED | IS_VIRTUAL_DISK),
            (LOGICAL_SECTOR, 4, IS_REQUIRED | IS_VIRTUAL_DISK),
            (PHYSICAL_SECTOR, 4, IS_REQUIRED | IS_VIRTUAL_DISK),
        ];
        let mut at = TABLE_SIZE as u32;
        for (i, (g, len, flags)) in items.into_iter().enumerate() {
            let e = 32 + 32 * i;
            g.write(&mut b, e);
            ENDIAN.put_u32(&mut b, e + 16, at);
            ENDIAN.put_u32(&mut b, e + 20, len);
            ENDIAN.put_u32(&mut b, e + 24, flags);
            at += len;
        }
        let v = TABLE_SIZE as usize;
        let bits = if self.leave_blocks_allocated {
            LEAVE_BLOCKS_ALLOCATED
        } else {
            0
        };
        ENDIAN.put_u32(&mut b, v, self.block_size);
        ENDIAN.put_u32(&mut b, v + 4, bits);
        ENDIAN.put_u64(&mut b, v + 8, self.disk_size);
        self.page83.write(&mut b, v + 16);
        ENDIAN.put_u32(&mut b, v + 32, self.logical_sector);
        ENDIAN.put_u32(&mut b, v + 36, self.physical_sector);
        b
    }
}

/// The metadata region's length for new images.
pub const METADATA_REGION_LENGTH: u64 = MIB;
