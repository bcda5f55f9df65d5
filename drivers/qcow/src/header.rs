//! The qcow header: the first [`HEADER_LEN`] bytes of the file, every
//! field big-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `QFI\xfb` |
//! | 4..8 | version, u32 (1) |
//! | 8..16 | backing file name offset, u64 (0: no backing file) |
//! | 16..20 | backing file name length, u32 |
//! | 20..24 | modification time, u32 (QEMU writes 0) |
//! | 24..32 | virtual size in bytes, u64 |
//! | 32 | cluster bits, u8 (9..=16) |
//! | 33 | L2 bits (entries per L2 table), u8 (6..=13) |
//! | 34..36 | padding |
//! | 36..40 | encryption method, u32 (0 none, 1 AES) |
//! | 40..48 | L1 table offset, u64 |
//!
//! [`Header::decode`] checks every field with QEMU's rules and messages
//! before anything is sized by it.

use block_core::engine::codec::{Endian, FieldReader};
use block_core::{BlockError, ErrorKind, Result};

/// Bytes of the header.
pub const HEADER_LEN: usize = 48;
/// The first bytes of every image.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// The only version of the format.
pub const VERSION: u32 = 1;
/// Byte order of every field and table entry.
pub const ENDIAN: Endian = Endian::Big;
/// No encryption.
pub const CRYPT_NONE: u32 = 0;
/// QEMU's legacy AES-CBC encryption.
pub const CRYPT_AES: u32 = 1;
/// The longest backing file name QEMU reads.
pub const MAX_BACKING_NAME: u32 = 1023;
/// The most L1 entries QEMU accepts (its table must fit an `int` of bytes).
pub const MAX_L1_ENTRIES: u64 = i32::MAX as u64 / 8;
/// Cluster bits of a new image without a backing file (4 KiB clusters).
pub const DEFAULT_CLUSTER_BITS: u8 = 12;
/// L2 bits of a new image without a backing file (4 KiB tables).
pub const DEFAULT_L2_BITS: u8 = 9;
/// Cluster bits of a new image with a backing file (512-byte clusters, so
/// that no write needs copy-on-write from the backing file).
pub const BACKING_CLUSTER_BITS: u8 = 9;
/// L2 bits of a new image with a backing file (32 KiB tables).
pub const BACKING_L2_BITS: u8 = 12;

/// The decoded header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// The magic as a big-endian u32.
    pub magic: u32,
    /// The format version.
    pub version: u32,
    /// File offset of the backing file name (0: none).
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// Modification time (unused; QEMU writes 0).
    pub mtime: u32,
    /// Guest size in bytes.
    pub size: u64,
    /// log2 of the cluster size.
    pub cluster_bits: u8,
    /// log2 of the entries per L2 table.
    pub l2_bits: u8,
    /// Encryption method ([`CRYPT_NONE`] or [`CRYPT_AES`]).
    pub crypt_method: u32,
    /// File offset of the L1 table.
    pub l1_table_offset: u64,
}

block_core::fixed_fields! {
    /// The fixed-offset fields of [`Header`] (the table above).
    HeaderFields for Header {
        magic @ 0,
        version @ 4,
        backing_file_offset @ 8,
        backing_file_size @ 16,
        mtime @ 20,
        size @ 24,
        cluster_bits @ 32,
        l2_bits @ 33,
        crypt_method @ 36,
        l1_table_offset @ 40,
    }
}

fn invalid(msg: impl Into<String>) -> BlockError {
    BlockError::invalid("open", msg)
}

/// Entries of the L1 table of a `size`-byte disk with `shift` =
/// cluster bits + L2 bits, or QEMU's "Image too large" refusal.
pub fn l1_entries(op: &'static str, size: u64, shift: u32) -> Result<u64> {
    let span = 1u64 << shift;
    let too_large = || BlockError::invalid(op, "Image too large");
    let n = size.checked_add(span - 1).ok_or_else(too_large)? >> shift;
    if n > MAX_L1_ENTRIES {
        return Err(too_large());
    }
    Ok(n)
}

impl Header {
    /// The header of a new image of `size` bytes (a multiple of 512) with
    /// an optional backing file name, laid out as QEMU's create: the name
    /// after the fixed fields, the L1 table after it at an 8-byte boundary.
    pub fn new(size: u64, backing: Option<&str>) -> Result<Header> {
        let mut h = Header {
            magic: u32::from_be_bytes(MAGIC),
            version: VERSION,
            size,
            cluster_bits: DEFAULT_CLUSTER_BITS,
            l2_bits: DEFAULT_L2_BITS,
            ..Header::default()
        };
        let mut end = HEADER_LEN as u64;
        if let Some(name) = backing {
            if name.len() > MAX_BACKING_NAME as usize {
                return Err(BlockError::invalid("create", "Backing file name too long"));
            }
            h.backing_file_offset = end;
            h.backing_file_size = name.len() as u32;
            end += name.len() as u64;
            h.cluster_bits = BACKING_CLUSTER_BITS;
            h.l2_bits = BACKING_L2_BITS;
        }
        h.l1_table_offset = end.div_ceil(8) * 8;
        l1_entries("create", size, h.shift())?;
        Ok(h)
    }

    /// log2 of the guest bytes one L1 entry covers.
    pub fn shift(&self) -> u32 {
        u32::from(self.cluster_bits) + u32::from(self.l2_bits)
    }

    /// Bytes per cluster.
    pub fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        1 << self.l2_bits
    }

    /// Bytes per L2 table.
    pub fn l2_bytes(&self) -> u64 {
        8 << self.l2_bits
    }

    /// Entries of the L1 table (validated by [`Header::decode`]).
    pub fn l1_entries(&self) -> u64 {
        (self.size + ((1u64 << self.shift()) - 1)) >> self.shift()
    }

    /// The guest-visible size: whole sectors, as QEMU counts it.
    pub fn virtual_size(&self) -> u64 {
        self.size / 512 * 512
    }

    /// True for an AES-encrypted image.
    pub fn encrypted(&self) -> bool {
        self.crypt_method != CRYPT_NONE
    }

    /// The mask of a compressed cluster's file offset in its L2 entry.
    pub fn compressed_offset_mask(&self) -> u64 {
        (1u64 << (63 - self.cluster_bits)) - 1
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        HeaderFields::encode(self, &mut b, ENDIAN);
        b
    }

    /// Decodes and validates a header read from an image, in QEMU's order
    /// and words.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let mut h = Header::default();
        HeaderFields::decode(&mut h, &FieldReader::new(b, ENDIAN, "open"))?;
        if h.magic.to_be_bytes() != MAGIC {
            return Err(invalid("Image not in qcow format"));
        }
        if h.version != VERSION {
            let mut msg = format!(
                "qcow (v{VERSION}) does not support qcow version {}",
                h.version
            );
            if h.version == 2 || h.version == 3 {
                msg.push_str(" (try the 'qcow2' driver instead)");
            }
            return Err(BlockError::new(ErrorKind::Unsupported, "open", msg));
        }
        if h.size <= 1 {
            return Err(invalid(
                "Image size is too small (must be at least 2 bytes)",
            ));
        }
        if !(9..=16).contains(&h.cluster_bits) {
            return Err(invalid("Cluster size must be between 512 and 64k"));
        }
        if !(6..=13).contains(&h.l2_bits) {
            return Err(invalid("L2 table size must be between 512 and 64k"));
        }
        if h.crypt_method > CRYPT_AES {
            return Err(invalid("invalid encryption method in qcow header"));
        }
        l1_entries("open", h.size, h.shift())?;
        if h.backing_file_offset != 0 && h.backing_file_size > MAX_BACKING_NAME {
            return Err(invalid("Backing file name too long"));
        }
        Ok(h)
    }
}
