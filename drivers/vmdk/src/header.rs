//! The sparse extent header ("KDMV", 512 bytes, little endian): sizes in
//! 512-byte sectors, where the descriptor, the grain directories and the
//! grains start. Decoding bounds every field before it sizes anything.

use block_core::engine::codec::{Endian, FieldReader};
use block_core::{BlockError, Result};

/// The magic at byte 0 of a sparse extent: "KDMV".
pub const MAGIC: [u8; 4] = *b"KDMV";
/// Bytes in a sector.
pub const SECTOR: u64 = 512;
/// Newline-detection flag: the check bytes are valid.
pub const FLAG_NL_DETECT: u32 = 1 << 0;
/// The redundant grain directory is present.
pub const FLAG_RGD: u32 = 1 << 1;
/// Grain table entries of 1 mean zeroed grains.
pub const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Grains are compressed (streamOptimized).
pub const FLAG_COMPRESS: u32 = 1 << 16;
/// Grains carry markers (streamOptimized).
pub const FLAG_MARKER: u32 = 1 << 17;
/// Grain size QEMU creates: 128 sectors (64 KiB).
pub const DEFAULT_GRANULARITY: u64 = 128;
/// Entries per grain table QEMU creates (and the only count it accepts).
pub const GTES_PER_GT: u32 = 512;
/// Largest grain accepted: 128 MiB (QEMU's limit is 2 GiB of sectors; a
/// grain is read and written whole, so it is bounded tighter here).
pub const MAX_GRAIN_SECTORS: u64 = 1 << 18;
/// Largest capacity accepted: 64 TiB in sectors (QEMU's VMDK limit).
pub const MAX_CAPACITY_SECTORS: u64 = (64u64 << 40) / SECTOR;
/// Byte order of every field.
pub const ENDIAN: Endian = Endian::Little;

/// The fields of a sparse header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version (1, 2 with zeroed grains, 3 for streamOptimized).
    pub version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Disk size in sectors.
    pub capacity: u64,
    /// Grain size in sectors.
    pub granularity: u64,
    /// Sector of the embedded descriptor (0: none).
    pub desc_offset: u64,
    /// Sectors of the embedded descriptor.
    pub desc_size: u64,
    /// Grain table entries per grain table.
    pub num_gtes_per_gt: u32,
    /// Sector of the redundant grain directory.
    pub rgd_offset: u64,
    /// Sector of the grain directory.
    pub gd_offset: u64,
    /// Sector where grains may start (the metadata overhead).
    pub grain_offset: u64,
    /// Compression algorithm (1: deflate).
    pub compress_algorithm: u16,
}

impl Header {
    /// The layout QEMU's `qemu-img create` makes for `capacity` sectors:
    /// descriptor at sector 1 (20 sectors), redundant GD and its grain
    /// tables, GD and its grain tables, grains from the next grain boundary.
    pub fn new(capacity: u64, zeroed_grain: bool) -> Header {
        let gran = DEFAULT_GRANULARITY;
        let gt_sectors = u64::from(GTES_PER_GT) * 4 / SECTOR;
        let gt_count = capacity.div_ceil(gran * u64::from(GTES_PER_GT));
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        let rgd_offset = 1 + 20;
        let gd_offset = rgd_offset + gd_sectors + gt_sectors * gt_count;
        let end = gd_offset + gd_sectors + gt_sectors * gt_count;
        let mut flags = FLAG_NL_DETECT | FLAG_RGD;
        if zeroed_grain {
            flags |= FLAG_ZERO_GRAIN;
        }
        Header {
            version: if zeroed_grain { 2 } else { 1 },
            flags,
            capacity,
            granularity: gran,
            desc_offset: 1,
            desc_size: 20,
            num_gtes_per_gt: GTES_PER_GT,
            rgd_offset,
            gd_offset,
            grain_offset: end.div_ceil(gran) * gran,
            compress_algorithm: 0,
        }
    }

    /// Decodes and checks a header: magic, version, grain size (a power of
    /// two, bounded), table size (QEMU's 512), capacity (bounded), and the
    /// grain directory inside a file of `file_len` bytes.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Header> {
        let r = FieldReader::new(b, ENDIAN, "open");
        if r.bytes(0, 4, "magic")? != MAGIC {
            return Err(BlockError::invalid("open", "not a VMDK sparse extent"));
        }
        let h = Header {
            version: r.u32(4, "version")?,
            flags: r.u32(8, "flags")?,
            capacity: r.u64(12, "capacity")?,
            granularity: r.u64(20, "granularity")?,
            desc_offset: r.u64(28, "descriptor offset")?,
            desc_size: r.u64(36, "descriptor size")?,
            num_gtes_per_gt: r.u32(44, "grain table entries")?,
            rgd_offset: r.u64(48, "redundant grain directory offset")?,
            gd_offset: r.u64(56, "grain directory offset")?,
            grain_offset: r.u64(64, "grain offset")?,
            compress_algorithm: r.u16(77, "compression algorithm")?,
        };
        h.check(file_len)?;
        Ok(h)
    }

    fn check(&self, file_len: u64) -> Result<()> {
        let bad = |m: String| Err(BlockError::corrupt("open", m));
        if self.version > 3 {
            return Err(BlockError::unsupported_feature(
                "open",
                format!("VMDK version {}", self.version),
            ));
        }
        let g = self.granularity;
        if g == 0 || !g.is_power_of_two() || g > MAX_GRAIN_SECTORS {
            return bad(format!("invalid grain size of {g} sectors"));
        }
        if self.num_gtes_per_gt != GTES_PER_GT {
            return bad(format!(
                "L2 table size {} is not the supported {GTES_PER_GT}",
                self.num_gtes_per_gt
            ));
        }
        if self.capacity > MAX_CAPACITY_SECTORS {
            return bad(format!(
                "capacity of {} sectors is too large",
                self.capacity
            ));
        }
        let gd_end = self
            .gd_offset
            .checked_add(self.gd_sectors())
            .and_then(|s| s.checked_mul(SECTOR));
        if self.gd_offset == 0 || gd_end.is_none_or(|e| e > file_len) {
            return bad(format!(
                "grain directory at sector {} lies outside the file",
                self.gd_offset
            ));
        }
        if self.flags & FLAG_COMPRESS != 0 {
            return Err(BlockError::unsupported_feature(
                "open",
                "compressed (streamOptimized) VMDK",
            ));
        }
        Ok(())
    }

    /// Grain size in bytes.
    pub fn grain(&self) -> u64 {
        self.granularity * SECTOR
    }

    /// Disk size in bytes.
    pub fn size(&self) -> u64 {
        self.capacity * SECTOR
    }

    /// Guest bytes one grain table covers.
    pub fn gt_coverage(&self) -> u64 {
        self.grain() * u64::from(self.num_gtes_per_gt)
    }

    /// Grain directory entries (grain tables of the disk).
    pub fn gd_entries(&self) -> u64 {
        self.size().div_ceil(self.gt_coverage())
    }

    /// Sectors of one grain directory.
    pub fn gd_sectors(&self) -> u64 {
        (self.gd_entries() * 4).div_ceil(SECTOR)
    }

    /// Bytes of one grain table.
    pub fn gt_bytes(&self) -> u64 {
        u64::from(self.num_gtes_per_gt) * 4
    }

    /// True when GTE 1 means a zeroed grain.
    pub fn zeroed_grain(&self) -> bool {
        self.flags & FLAG_ZERO_GRAIN != 0
    }

    /// The 512-byte encoding.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[..4].copy_from_slice(&MAGIC);
        let e = ENDIAN;
        e.put_u32(&mut b, 4, self.version);
        e.put_u32(&mut b, 8, self.flags);
        e.put_u64(&mut b, 12, self.capacity);
        e.put_u64(&mut b, 20, self.granularity);
        e.put_u64(&mut b, 28, self.desc_offset);
        e.put_u64(&mut b, 36, self.desc_size);
        e.put_u32(&mut b, 44, self.num_gtes_per_gt);
        e.put_u64(&mut b, 48, self.rgd_offset);
        e.put_u64(&mut b, 56, self.gd_offset);
        e.put_u64(&mut b, 64, self.grain_offset);
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }
}
