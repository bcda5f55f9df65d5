//! The QED header: the first [`HEADER_LEN`] bytes of the file (all fields
//! little-endian), and the rules it imposes on the tables it names.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `QED\0` |
//! | 4..8 | cluster size in bytes, u32 (a power of two, 4 KiB..64 MiB) |
//! | 8..12 | table size in clusters, u32 (a power of two, 1..16) |
//! | 12..16 | header size in clusters, u32 |
//! | 16..24 | features, u64 ([`F_BACKING_FILE`], [`F_NEED_CHECK`], [`F_BACKING_FORMAT_NO_PROBE`]) |
//! | 24..32 | compatible features, u64 |
//! | 32..40 | auto-clear features, u64 |
//! | 40..48 | L1 table offset, u64 (cluster-aligned) |
//! | 48..56 | virtual size in bytes, u64 |
//! | 56..60 | backing file name offset in the file, u32 |
//! | 60..64 | backing file name length, u32 |
//!
//! [`Header::decode`] checks every field before it is used (the file may
//! be damaged or hostile); [`Header::check_l1`] places the L1 table inside
//! the file before a byte of it is read.

use block_core::engine::codec::{Endian, FieldReader, TableRules};
use block_core::{BlockError, ErrorKind, Result};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// The first bytes of every image.
pub const MAGIC: [u8; 4] = *b"QED\0";
/// Byte order of every field and table entry.
pub const ENDIAN: Endian = Endian::Little;
/// The image has a backing file.
pub const F_BACKING_FILE: u64 = 1;
/// The image may be inconsistent (allocating writes were in flight):
/// check it before trusting its tables.
pub const F_NEED_CHECK: u64 = 2;
/// The backing file is raw: open it without probing.
pub const F_BACKING_FORMAT_NO_PROBE: u64 = 4;
/// Every feature this driver knows.
pub const KNOWN_FEATURES: u64 = F_BACKING_FILE | F_NEED_CHECK | F_BACKING_FORMAT_NO_PROBE;
/// The smallest cluster size.
pub const MIN_CLUSTER_SIZE: u64 = 4 << 10;
/// The largest cluster size.
pub const MAX_CLUSTER_SIZE: u64 = 64 << 20;
/// The default cluster size (`cluster_size` create option).
pub const DEFAULT_CLUSTER_SIZE: u64 = 64 << 10;
/// The largest table size in clusters.
pub const MAX_TABLE_SIZE: u64 = 16;
/// The default table size in clusters (`table_size` create option).
pub const DEFAULT_TABLE_SIZE: u64 = 4;
/// The largest L1 or L2 table this driver holds in memory (32 MiB): the
/// table size comes from the header, so it is bounded before anything is
/// allocated for it.
pub const MAX_TABLE_BYTES: u64 = 32 << 20;
/// The longest backing file name read from a header.
pub const MAX_BACKING_NAME: u64 = 4095;
/// An L2 entry of 1: the cluster reads as zeros (it hides the backing file).
pub const ZERO_CLUSTER: u64 = 1;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// The magic as a little-endian u32.
    pub magic: u32,
    /// Bytes per cluster.
    pub cluster_size: u32,
    /// Clusters per L1 or L2 table.
    pub table_size: u32,
    /// Clusters of the header area (the header and the backing name).
    pub header_size: u32,
    /// Incompatible features.
    pub features: u64,
    /// Compatible features.
    pub compat_features: u64,
    /// Features a writer that does not know them clears.
    pub autoclear_features: u64,
    /// File offset of the L1 table.
    pub l1_table_offset: u64,
    /// Guest-visible size in bytes.
    pub image_size: u64,
    /// File offset of the backing file name.
    pub backing_filename_offset: u32,
    /// Length of the backing file name.
    pub backing_filename_size: u32,
}

block_core::fixed_fields! {
    /// The fixed-offset fields of [`Header`] (the table above).
    HeaderFields for Header {
        magic @ 0,
        cluster_size @ 4,
        table_size @ 8,
        header_size @ 12,
        features @ 16,
        compat_features @ 24,
        autoclear_features @ 32,
        l1_table_offset @ 40,
        image_size @ 48,
        backing_filename_offset @ 56,
        backing_filename_size @ 60,
    }
}

fn corrupt(msg: String) -> BlockError {
    BlockError::corrupt("open", msg)
}

/// Refuses a cluster size that is not a power of two in the format's range.
pub fn check_cluster_size(op: &'static str, cs: u64) -> Result<()> {
    if cs.is_power_of_two() && (MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&cs) {
        return Ok(());
    }
    Err(BlockError::invalid(
        op,
        format!(
            "QED cluster size must be within range [{MIN_CLUSTER_SIZE}, {MAX_CLUSTER_SIZE}] \
             and power of 2 (got {cs})"
        ),
    ))
}

/// Refuses a table size that is not a power of two in 1..=16 clusters.
pub fn check_table_size(op: &'static str, ts: u64) -> Result<()> {
    if ts.is_power_of_two() && ts <= MAX_TABLE_SIZE {
        return Ok(());
    }
    Err(BlockError::invalid(
        op,
        format!(
            "QED table size must be within range [1, {MAX_TABLE_SIZE}] and power of 2 (got {ts})"
        ),
    ))
}

/// The largest virtual size two levels of `table_size`-cluster tables of
/// `cluster_size`-byte clusters address.
pub fn max_image_size(cluster_size: u64, table_size: u64) -> u64 {
    let entries = cluster_size * table_size / 8;
    entries.saturating_mul(entries).saturating_mul(cluster_size)
}

/// Refuses a virtual size that is not sector-aligned or too large.
pub fn check_image_size(op: &'static str, size: u64, cs: u64, ts: u64) -> Result<()> {
    let max = max_image_size(cs, ts);
    if !size.is_multiple_of(512) || size > max {
        return Err(BlockError::invalid(
            op,
            format!(
                "QED image size must be a multiple of 512 and at most {max} bytes (got {size})"
            ),
        ));
    }
    Ok(())
}

impl Header {
    /// A new image's header: one header cluster, the L1 table right after
    /// it, the backing name (if any) after the fixed fields.
    pub fn new(size: u64, cs: u64, ts: u64, backing: Option<(&str, bool)>) -> Result<Header> {
        check_cluster_size("create", cs)?;
        check_table_size("create", ts)?;
        check_image_size("create", size, cs, ts)?;
        let mut h = Header {
            magic: u32::from_le_bytes(MAGIC),
            cluster_size: cs as u32,
            table_size: ts as u32,
            header_size: 1,
            l1_table_offset: cs,
            image_size: size,
            ..Header::default()
        };
        if let Some((name, raw)) = backing {
            if name.len() as u64 > cs - HEADER_LEN as u64 {
                return Err(BlockError::invalid("create", "backing file name too long"));
            }
            h.features = F_BACKING_FILE | if raw { F_BACKING_FORMAT_NO_PROBE } else { 0 };
            h.backing_filename_offset = HEADER_LEN as u32;
            h.backing_filename_size = name.len() as u32;
        }
        Ok(h)
    }

    /// Bytes per cluster.
    pub fn cluster(&self) -> u64 {
        u64::from(self.cluster_size)
    }

    /// Bytes per L1 or L2 table.
    pub fn table_bytes(&self) -> u64 {
        self.cluster() * u64::from(self.table_size)
    }

    /// Entries per table.
    pub fn entries(&self) -> u64 {
        self.table_bytes() / 8
    }

    /// The end of the header area, where clusters may start.
    pub fn data_start(&self) -> u64 {
        u64::from(self.header_size) * self.cluster()
    }

    /// Guest clusters of the disk.
    pub fn clusters(&self) -> u64 {
        self.image_size.div_ceil(self.cluster())
    }

    /// True when the image says it may be inconsistent.
    pub fn need_check(&self) -> bool {
        self.features & F_NEED_CHECK != 0
    }

    /// The fixed fields' bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        HeaderFields::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and validates a header read from an image; the error says
    /// which field is wrong.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let mut h = Header::default();
        HeaderFields::decode(&mut h, &FieldReader::new(b, ENDIAN, "open"))?;
        if h.magic.to_le_bytes() != MAGIC {
            return Err(corrupt("not a QED image (bad magic)".into()));
        }
        let unknown = h.features & !KNOWN_FEATURES;
        if unknown != 0 {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "open",
                format!("Unsupported QED features: {unknown:#x}"),
            ));
        }
        let (cs, ts) = (h.cluster(), u64::from(h.table_size));
        check_cluster_size("open", cs).map_err(|e| corrupt(e.message))?;
        check_table_size("open", ts).map_err(|e| corrupt(e.message))?;
        if h.table_bytes() > MAX_TABLE_BYTES {
            return Err(corrupt(format!(
                "QED tables of {} bytes are larger than this driver's limit of {MAX_TABLE_BYTES}",
                h.table_bytes()
            )));
        }
        if h.header_size == 0 || h.data_start() > i32::MAX as u64 {
            return Err(corrupt(format!(
                "invalid QED header size {}",
                h.header_size
            )));
        }
        check_image_size("open", h.image_size, cs, ts).map_err(|e| corrupt(e.message))?;
        if h.features & F_BACKING_FILE != 0 {
            let end = u64::from(h.backing_filename_offset) + u64::from(h.backing_filename_size);
            if u64::from(h.backing_filename_size) > MAX_BACKING_NAME || end > h.data_start() {
                return Err(corrupt(
                    "backing file name outside the QED header area".into(),
                ));
            }
        }
        Ok(h)
    }

    /// Checks that the L1 table lies after the header area, cluster-aligned
    /// and inside a file of `file_len` bytes: call it before reading it.
    pub fn check_l1(&self, file_len: u64) -> Result<()> {
        let rules = TableRules {
            op: "open",
            alignment: self.cluster(),
            unit: "cluster",
            max_end: file_len.div_ceil(self.cluster()) * self.cluster(),
        };
        rules.check(
            "L1 table",
            self.l1_table_offset,
            self.table_bytes(),
            MAX_TABLE_BYTES,
        )?;
        if self.l1_table_offset < self.data_start() {
            return Err(corrupt("L1 table overlaps the QED header".into()));
        }
        Ok(())
    }
}
