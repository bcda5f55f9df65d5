//! The image header: the first [`HEADER_SIZE`] bytes of the file, and the
//! rules it imposes on the block allocation table (BAT) that follows it.
//!
//! | bytes | field (little-endian) |
//! |---|---|
//! | 0..16 | magic: [`MAGIC_SECTORS`] or [`MAGIC_CLUSTERS`] |
//! | 16..20 | version, u32: [`VERSION`] |
//! | 20..24 | heads, u32 (geometry only) |
//! | 24..28 | cylinders, u32 (geometry only) |
//! | 28..32 | tracks, u32: sectors per cluster |
//! | 32..36 | BAT entries, u32 |
//! | 36..44 | virtual size in 512-byte sectors, u64 (low 32 bits only with [`MAGIC_SECTORS`]) |
//! | 44..48 | in use, u32: [`INUSE_MAGIC`] while a writer has the image open |
//! | 48..52 | data offset in sectors, u32: where the data area starts (0: right after the BAT) |
//! | 52..56 | flags, u32 |
//! | 56..64 | format extension offset in sectors, u64 (0: none) |
//!
//! The BAT starts at byte [`HEADER_SIZE`]. [`Header::decode`] checks every
//! field before it is used, since the file may be damaged or hostile; the
//! BAT's size and place and the data offset are checked by
//! [`Header::check_layout`] before a byte of the BAT is read.

use block_core::engine::codec::{Endian, FieldReader, TableRules};
use block_core::{BlockError, ErrorKind, Result};

/// The size of the header; the BAT follows it.
pub const HEADER_SIZE: u64 = 64;
/// The magic of images whose BAT entries count sectors.
pub const MAGIC_SECTORS: [u8; 16] = *b"WithoutFreeSpace";
/// The magic of images whose BAT entries count clusters (what QEMU and blk create).
pub const MAGIC_CLUSTERS: [u8; 16] = *b"WithouFreSpacExt";
/// The only header version there is.
pub const VERSION: u32 = 2;
/// The value of the in-use field while the image is open for writing.
pub const INUSE_MAGIC: u32 = 0x746F_6E59;
/// The byte order of every field of the format.
pub const ENDIAN: Endian = Endian::Little;
/// Bytes per sector, the unit of the header's offsets and sizes.
pub const SECTOR: u64 = 512;
/// Bytes per BAT entry.
pub const BAT_ENTRY_SIZE: u64 = 4;
/// The default cluster size (`cluster_size` create option), as qemu-img's.
pub const DEFAULT_CLUSTER_SIZE: u64 = 1 << 20;
/// The largest cluster size: larger ones are refused, as by qemu-img.
pub const MAX_CLUSTER_SIZE: u64 = 1 << 30;
/// The largest BAT the driver holds in memory (256 MiB: 64 Mi entries, a
/// 64 TiB disk with 1 MiB clusters). The BAT's size comes from the
/// header, so it is bounded before anything is allocated for it.
pub const MAX_BAT_BYTES: u64 = 256 << 20;
/// Geometry written into new headers: heads.
const HEADS: u32 = 16;
/// Geometry written into new headers: sectors per track of the geometry.
const GEOMETRY_SECTORS: u64 = 32;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// True for [`MAGIC_CLUSTERS`] (entries count clusters), false for
    /// [`MAGIC_SECTORS`] (entries count sectors).
    pub ext_magic: bool,
    /// [`VERSION`].
    pub version: u32,
    /// Geometry: heads.
    pub heads: u32,
    /// Geometry: cylinders.
    pub cylinders: u32,
    /// Sectors per cluster.
    pub tracks: u32,
    /// BAT entries: at least enough to cover the virtual size.
    pub bat_entries: u32,
    /// The guest-visible size in sectors, as stored.
    pub nb_sectors: u64,
    /// [`INUSE_MAGIC`] while open for writing, else 0.
    pub inuse: u32,
    /// The start of the data area in sectors (0: right after the BAT).
    pub data_off: u32,
    /// Flags (none is interpreted).
    pub flags: u32,
    /// The format extension's offset in sectors, 0 when there is none.
    pub ext_off: u64,
}

block_core::fixed_fields! {
    /// The fixed-offset numeric fields of [`Header`] (the table above).
    HeaderFields for Header {
        version @ 16,
        heads @ 20,
        cylinders @ 24,
        tracks @ 28,
        bat_entries @ 32,
        nb_sectors @ 36,
        inuse @ 44,
        data_off @ 48,
        flags @ 52,
        ext_off @ 56,
    }
}

/// Rounds `v` up to a multiple of `unit`.
fn round_up(v: u64, unit: u64) -> u64 {
    v.div_ceil(unit) * unit
}

impl Header {
    /// A new image's header: `size` bytes (rounded up to sectors) in
    /// clusters of `cluster_size` (rounded up to sectors), the data area
    /// starting at the first cluster boundary after the BAT. Errors (for
    /// `op`) when the values are out of the format's range.
    pub fn new(op: &'static str, size: u64, cluster_size: u64) -> Result<Header> {
        let cluster = round_up(cluster_size.max(1), SECTOR);
        if cluster_size == 0 || cluster > MAX_CLUSTER_SIZE {
            return Err(BlockError::invalid(
                op,
                format!("cluster size {cluster_size} must be between 1 and {MAX_CLUSTER_SIZE}"),
            ));
        }
        let too_large = || {
            BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!(
                    "size {size} is too large for {cluster}-byte clusters (at most {} bytes): \
                     use a larger cluster_size",
                    MAX_BAT_BYTES / BAT_ENTRY_SIZE * cluster
                ),
            )
        };
        let nb_sectors = size.checked_add(SECTOR - 1).ok_or_else(too_large)? / SECTOR;
        let entries = (nb_sectors * SECTOR).div_ceil(cluster);
        if entries * BAT_ENTRY_SIZE > MAX_BAT_BYTES {
            return Err(too_large());
        }
        let data_start = round_up(HEADER_SIZE + entries * BAT_ENTRY_SIZE, cluster);
        Ok(Header {
            ext_magic: true,
            version: VERSION,
            heads: HEADS,
            cylinders: (nb_sectors / (u64::from(HEADS) * GEOMETRY_SECTORS)) as u32,
            tracks: (cluster / SECTOR) as u32,
            bat_entries: entries as u32,
            nb_sectors,
            inuse: 0,
            data_off: (data_start / SECTOR) as u32,
            flags: 0,
            ext_off: 0,
        })
    }

    /// The cluster size in bytes.
    pub fn cluster(&self) -> u64 {
        u64::from(self.tracks) * SECTOR
    }

    /// The guest-visible size in bytes.
    pub fn size(&self) -> u64 {
        self.nb_sectors * SECTOR
    }

    /// Bytes per unit of a BAT entry: a cluster or a sector.
    pub fn entry_unit(&self) -> u64 {
        if self.ext_magic {
            self.cluster()
        } else {
            SECTOR
        }
    }

    /// The BAT's length in bytes.
    pub fn bat_bytes(&self) -> u64 {
        u64::from(self.bat_entries) * BAT_ENTRY_SIZE
    }

    /// The end of the BAT in the file.
    pub fn bat_end(&self) -> u64 {
        HEADER_SIZE + self.bat_bytes()
    }

    /// The start of the data area in bytes: the data offset, or the first
    /// sector after the BAT when the header gives none.
    pub fn data_start(&self) -> u64 {
        match self.data_off {
            0 => round_up(self.bat_end(), SECTOR),
            d => u64::from(d) * SECTOR,
        }
    }

    /// Whether a writer did not close the image (the in-use field is set).
    pub fn in_use(&self) -> bool {
        self.inuse == INUSE_MAGIC
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        b[..16].copy_from_slice(if self.ext_magic {
            &MAGIC_CLUSTERS
        } else {
            &MAGIC_SECTORS
        });
        HeaderFields::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and validates a header read from an image; the error says
    /// which field is wrong.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let r = FieldReader::new(b, ENDIAN, "open");
        let magic = r.bytes(0, 16, "magic")?;
        let mut h = Header {
            ext_magic: magic == MAGIC_CLUSTERS,
            ..Header::default()
        };
        if !h.ext_magic && magic != MAGIC_SECTORS {
            return Err(BlockError::corrupt(
                "open",
                "not a parallels image (bad magic)",
            ));
        }
        HeaderFields::decode(&mut h, &r)?;
        if !h.ext_magic {
            // Only the low 32 bits count in images of the older magic.
            h.nb_sectors &= u64::from(u32::MAX);
        }
        if h.version != VERSION {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "open",
                format!(
                    "unsupported parallels version {} (this driver reads {VERSION})",
                    h.version
                ),
            ));
        }
        if h.tracks == 0 {
            return Err(BlockError::corrupt(
                "open",
                "invalid image: zero sectors per cluster (tracks)",
            ));
        }
        if h.cluster() > MAX_CLUSTER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "invalid image: {} sectors per cluster is too big a cluster",
                    h.tracks
                ),
            ));
        }
        if h.nb_sectors > i64::MAX as u64 / SECTOR {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "invalid image: {} sectors is too large a disk",
                    h.nb_sectors
                ),
            ));
        }
        if u64::from(h.bat_entries) < h.size().div_ceil(h.cluster()) {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "{} BAT entries do not cover a virtual size of {} bytes in {}-byte clusters",
                    h.bat_entries,
                    h.size(),
                    h.cluster()
                ),
            ));
        }
        Ok(h)
    }

    /// Checks that the BAT is at most [`MAX_BAT_BYTES`] long and lies in a
    /// file of `file_len` bytes, and that the data area starts after the
    /// BAT and inside the file: call it before allocating or reading the
    /// BAT.
    pub fn check_layout(&self, file_len: u64) -> Result<()> {
        let rules = TableRules {
            op: "open",
            alignment: 1,
            unit: "byte",
            max_end: file_len,
        };
        rules.check("BAT", HEADER_SIZE, self.bat_bytes(), MAX_BAT_BYTES)?;
        let data = self.data_start();
        if data < self.bat_end() {
            return Err(BlockError::corrupt(
                "open",
                format!(
                    "data offset {data} overlaps the BAT (which ends at {})",
                    self.bat_end()
                ),
            ));
        }
        if data > file_len {
            return Err(BlockError::corrupt(
                "open",
                format!("data offset {data} lies outside the file ({file_len} bytes)"),
            ));
        }
        Ok(())
    }
}
