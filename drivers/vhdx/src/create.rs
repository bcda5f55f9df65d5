//! A new image, laid out as qemu-img lays it out: the header section
//! (file identifier, two headers, two region table copies) in the first
//! MiB, the log after it, then the BAT, the metadata region, and the data
//! area 5 MiB past the BAT's end. A fixed image has every block in place
//! in the data area; with `block_state_zero` (the default) its entries and
//! those of a dynamic image say ZERO, as QEMU writes them.

use crate::bat::{present, ZERO};
use crate::guid::Guid;
use crate::header::{file_identifier, Header, ENDIAN, HEADER_OFFSETS, HEADER_SECTION_END, MIB};
use crate::metadata::{DiskParams, MAX_BLOCK_SIZE, MAX_DISK_SIZE, METADATA_REGION_LENGTH};
use crate::region::{Region, Regions, REGION_TABLE_OFFSETS};
use block_core::{BlockError, BlockNode, BlockNodeExt, Preallocation, Result};

/// Bytes between the end of the BAT and the first payload block (QEMU
/// leaves room for the metadata region and growth).
pub const DATA_GAP: u64 = 5 * MIB;

/// What to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateParams {
    /// Virtual disk size (rounded up to 512 bytes).
    pub size: u64,
    /// Log size (rounded up to 1 MiB).
    pub log_size: u64,
    /// Block size, 0 for QEMU's choice by disk size.
    pub block_size: u64,
    /// BAT entries say ZERO instead of NOT_PRESENT / FULLY_PRESENT.
    pub block_state_zero: bool,
    /// Every block allocated at create.
    pub fixed: bool,
}

/// QEMU's block size for a disk of `size` bytes.
pub fn auto_block_size(size: u64) -> u64 {
    if size > 32 << 40 {
        64 * MIB
    } else if size > 100 << 30 {
        32 * MIB
    } else if size > 1 << 30 {
        16 * MIB
    } else {
        8 * MIB
    }
}

/// The layout of a new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The disk parameters.
    pub params: DiskParams,
    /// Log region.
    pub log: Region,
    /// BAT and metadata regions.
    pub regions: Regions,
    /// The first payload block's offset.
    pub data_offset: u64,
}

impl CreateParams {
    /// Checks the values as qemu-img does and lays the image out.
    pub fn layout(&self) -> Result<Layout> {
        let bad = |m: &str| BlockError::invalid("create", m);
        let size = self.size.div_ceil(512) * 512;
        if size > MAX_DISK_SIZE {
            return Err(bad("Image size too large; max of 64TB"));
        }
        if size == 0 {
            return Err(bad("the image size must be given and not 0"));
        }
        let log_size = self.log_size.max(1).div_ceil(MIB) * MIB;
        if log_size > u64::from(u32::MAX) / MIB * MIB {
            return Err(bad("Log size too large"));
        }
        let bs = match self.block_size {
            0 => auto_block_size(size),
            b => b.div_ceil(MIB) * MIB,
        };
        if !bs.is_power_of_two() {
            return Err(bad("Block size must be a power of two"));
        }
        let bs = bs.min(u64::from(MAX_BLOCK_SIZE));
        let params = DiskParams {
            block_size: bs as u32,
            leave_blocks_allocated: self.fixed,
            disk_size: size,
            logical_sector: 512,
            physical_sector: 512,
            page83: Guid::random(),
        };
        let log = Region {
            offset: HEADER_SECTION_END,
            length: log_size,
        };
        let bat = Region {
            offset: log.end(),
            length: (params.bat_entries() * 8).div_ceil(MIB).max(1) * MIB,
        };
        let metadata = Region {
            offset: bat.end(),
            length: METADATA_REGION_LENGTH,
        };
        Ok(Layout {
            params,
            log,
            regions: Regions { bat, metadata },
            data_offset: bat.end() + DATA_GAP,
        })
    }
}

impl Layout {
    /// The BAT of the new image (`None`: all zeros, NOT_PRESENT).
    fn bat(&self, fixed: bool, zero: bool) -> Option<Vec<u8>> {
        if !fixed && !zero {
            return None;
        }
        let p = &self.params;
        let bs = u64::from(p.block_size);
        let mut b = vec![0u8; self.regions.bat.length as usize];
        let chunk = p.chunk_ratio();
        for i in 0..p.data_blocks() {
            let e = if zero {
                ZERO
            } else {
                present((self.data_offset + i * bs).div_ceil(MIB) * MIB)
            };
            let idx = (i + i / chunk) as usize;
            ENDIAN.put_u64(&mut b, idx * 8, e);
        }
        Some(b)
    }

    /// Writes the image into `file` (empty, just created).
    pub fn write(&self, file: &dyn BlockNode, fixed: bool, zero: bool) -> Result<()> {
        let len = if fixed {
            self.data_offset + self.params.disk_size
        } else {
            self.data_offset
        };
        file.truncate(len, Preallocation::Off)?;
        let creator = format!("blk v{}", env!("CARGO_PKG_VERSION"));
        file.write_at(0, &file_identifier(&creator))?;
        let mut h = Header {
            sequence: u64::from(Guid::random().0[0]) << 8 | u64::from(Guid::random().0[1]),
            file_write_guid: Guid::random(),
            data_write_guid: Guid::random(),
            log_guid: Guid::ZERO,
            log_version: 0,
            version: 1,
            log_length: self.log.length as u32,
            log_offset: self.log.offset,
        };
        file.write_at(HEADER_OFFSETS[0], &h.encode())?;
        h.sequence += 1;
        file.write_at(HEADER_OFFSETS[1], &h.encode())?;
        if let Some(b) = self.bat(fixed, zero) {
            file.write_at(self.regions.bat.offset, &b)?;
        }
        file.write_at(self.regions.metadata.offset, &self.params.encode())?;
        let rt = self.regions.encode();
        for at in REGION_TABLE_OFFSETS {
            file.write_at(at, &rt)?;
        }
        file.flush()
    }
}
