//! The grain directory (u32 sector offsets of grain tables) and its
//! redundant copy, held in memory; grain tables (u32 sector offsets of
//! grains; 0 unallocated, 1 zeroed with the zeroed-grain flag) read
//! through the engine's table cache.

use crate::descriptor::{Descriptor, MAX_DESCRIPTOR_BYTES};
use crate::header::{Header, ENDIAN, SECTOR};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::codec::table_bytes;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// Largest grain directory read: 16 MiB (4 Mi grain tables).
pub const MAX_GD_BYTES: u64 = 16 << 20;

/// What one grain table entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Not allocated here.
    Unallocated,
    /// Reads as zeros.
    Zero,
    /// Data at this byte offset.
    Data(u64),
}

/// The metadata of one open sparse extent.
#[derive(Debug)]
pub struct Metadata {
    /// The header.
    pub header: Header,
    /// The embedded descriptor.
    pub descriptor: Descriptor,
    /// Grain directory entries.
    pub gd: Vec<u32>,
    /// Redundant grain directory entries (empty without one).
    pub rgd: Vec<u32>,
    /// Where new grains go.
    pub alloc: AppendAllocator,
    /// File length at open.
    pub file_len: u64,
}

fn read_gd(file: &dyn BlockNode, h: &Header, sector: u64) -> Result<Vec<u32>> {
    let n = table_bytes("open", "grain directory", h.gd_entries(), 4, MAX_GD_BYTES)?;
    let mut b = vec![0u8; n];
    file.read_at(sector * SECTOR, &mut b)?;
    Ok(b.chunks_exact(4).map(|c| ENDIAN.u32(c, 0)).collect())
}

impl Metadata {
    /// Reads the header, the embedded descriptor and both grain
    /// directories of `file`, each bounded before it is read.
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < SECTOR {
            return Err(BlockError::corrupt(
                "open",
                "file shorter than a VMDK header",
            ));
        }
        let mut b = [0u8; 512];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b, file_len)?;
        let dbytes = header.desc_size.saturating_mul(SECTOR);
        if header.desc_offset == 0 || dbytes == 0 || dbytes > MAX_DESCRIPTOR_BYTES {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "embedded descriptor of {} sectors is missing or too big",
                    header.desc_size
                ),
            ));
        }
        let dend = header
            .desc_offset
            .checked_add(header.desc_size)
            .map(|s| s * SECTOR);
        if dend.is_none_or(|e| e > file_len) {
            return Err(BlockError::corrupt(
                "open",
                "descriptor lies outside the file",
            ));
        }
        let mut text = vec![0u8; dbytes as usize];
        file.read_at(header.desc_offset * SECTOR, &mut text)?;
        let descriptor = Descriptor::parse(&String::from_utf8_lossy(&text))?;
        if descriptor.create_type != "monolithicSparse" {
            return Err(BlockError::unsupported_feature(
                "open",
                format!("VMDK subformat {}", descriptor.create_type),
            ));
        }
        let gd = read_gd(file, &header, header.gd_offset)?;
        let rgd_end = (header.rgd_offset + header.gd_sectors()).saturating_mul(SECTOR);
        let rgd = if header.flags & crate::header::FLAG_RGD != 0
            && header.rgd_offset != 0
            && rgd_end <= file_len
        {
            read_gd(file, &header, header.rgd_offset)?
        } else {
            Vec::new()
        };
        let base = header.grain_offset.saturating_mul(SECTOR);
        let alloc = AppendAllocator::new(file_len, base, SECTOR, u64::from(u32::MAX) * SECTOR)?;
        Ok(Metadata {
            header,
            descriptor,
            gd,
            rgd,
            alloc,
            file_len,
        })
    }

    /// Byte offset of the grain table of directory entry `sector`, checked
    /// to lie inside the file.
    pub fn gt_offset(&self, op: &'static str, i: usize, sector: u32) -> Result<Option<u64>> {
        if sector == 0 {
            return Ok(None);
        }
        let off = u64::from(sector) * SECTOR;
        if off + self.header.gt_bytes() > self.alloc.end().max(self.file_len) {
            return Err(BlockError::corrupt(
                op,
                format!("grain directory entry {i} names a grain table past the end"),
            ));
        }
        Ok(Some(off))
    }

    /// Decodes grain table entry `e` of grain `g`.
    pub fn grain(&self, op: &'static str, g: u64, e: u32) -> Result<Grain> {
        match e {
            0 => Ok(Grain::Unallocated),
            1 if self.header.zeroed_grain() => Ok(Grain::Zero),
            s => {
                let off = u64::from(s) * SECTOR;
                if off < SECTOR
                    || off + self.header.grain()
                        > self.alloc.end().max(self.file_len) + self.header.grain()
                {
                    return Err(BlockError::corrupt(
                        op,
                        format!(
                            "grain table entry of grain {g} names offset {off:#x} past the end"
                        ),
                    )
                    .at(g * self.header.grain()));
                }
                Ok(Grain::Data(off))
            }
        }
    }
}
