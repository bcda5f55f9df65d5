//! The bitmaps header extension and the bitmap directory: parsing with
//! every hostile-image bound (QEMU's limits), validation of the entries and
//! serialization.
//!
//! Layout (docs/interop/qcow2.rst, "Bitmaps extension", "Bitmap
//! directory"): the extension holds `nb_bitmaps` (u32), a reserved u32,
//! `bitmap_directory_size` (u64) and `bitmap_directory_offset` (u64); each
//! directory entry holds the bitmap table offset (u64) and size (u32), the
//! flags (u32), type (u8), granularity bits (u8), name size (u16), extra
//! data size (u32), then extra data and name, padded to 8 bytes.

use crate::layout::header::{get_u32, get_u64, put_u32, put_u64, Header, EXT_BITMAPS};
use block_core::{BlockError, Result};

/// Most bitmaps an image may have (QEMU's `QCOW2_MAX_BITMAPS`).
pub const MAX_BITMAPS: u32 = 65535;
/// Largest bitmap directory (QEMU's `QCOW2_MAX_BITMAP_DIRECTORY_SIZE`).
pub const MAX_DIRECTORY_BYTES: u64 = 1024 * MAX_BITMAPS as u64;
/// Most entries of one bitmap table.
pub const MAX_TABLE_ENTRIES: u32 = 0x800_0000;
/// Largest bitmap data (bytes) of one bitmap.
pub const MAX_PHYS_BYTES: u64 = 0x2000_0000;
/// Smallest granularity (log2 bytes) QEMU supports.
pub const MIN_GRANULARITY_BITS: u8 = 9;
/// Largest granularity (log2 bytes) QEMU supports.
pub const MAX_GRANULARITY_BITS: u8 = 31;
/// Longest bitmap name.
pub const MAX_NAME_BYTES: usize = 1023;
/// Length of the extension data.
pub const EXT_LEN: usize = 24;

/// Entry flag: the bitmap was not saved correctly (in use by a writer).
pub const FLAG_IN_USE: u32 = 1 << 0;
/// Entry flag: the bitmap is enabled (tracks every write).
pub const FLAG_AUTO: u32 = 1 << 1;
/// Entry flag: unknown extra data may be ignored.
pub const FLAG_EXTRA_DATA_COMPATIBLE: u32 = 1 << 2;
/// Flags that must be zero.
pub const FLAGS_RESERVED: u32 = !(FLAG_IN_USE | FLAG_AUTO);
/// Type of a dirty tracking bitmap.
pub const TYPE_DIRTY_TRACKING: u8 = 1;

/// Bitmap table entry: the offset bits.
pub const TABLE_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bitmap table entry: reserved bits.
pub const TABLE_RESERVED_MASK: u64 = 0xff00_0000_0000_01fe;
/// Bitmap table entry without offset: the cluster reads as all ones.
pub const TABLE_ALL_ONES: u64 = 1;

fn bad(msg: impl Into<String>) -> BlockError {
    BlockError::corrupt("open", msg)
}

/// The bitmaps header extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapsExt {
    /// Number of bitmaps in the directory.
    pub nb_bitmaps: u32,
    /// Bytes of the directory.
    pub dir_size: u64,
    /// Offset of the directory.
    pub dir_offset: u64,
}

impl BitmapsExt {
    /// Parses and bounds the extension data (`cs`: the cluster size).
    pub fn parse(data: &[u8], cs: u64) -> Result<BitmapsExt> {
        if data.len() != EXT_LEN {
            return Err(bad("bitmaps_ext: Invalid extension length"));
        }
        let ext = BitmapsExt {
            nb_bitmaps: get_u32(data, 0),
            dir_size: get_u64(data, 8),
            dir_offset: get_u64(data, 16),
        };
        if get_u32(data, 4) != 0 {
            return Err(bad("bitmaps_ext: Reserved field is not zero"));
        }
        if ext.nb_bitmaps > MAX_BITMAPS {
            return Err(bad(format!(
                "bitmaps_ext: Image has {} bitmaps, exceeding the QEMU supported maximum of {MAX_BITMAPS}",
                ext.nb_bitmaps
            )));
        }
        if ext.nb_bitmaps == 0 {
            return Err(bad("found bitmaps extension with zero bitmaps"));
        }
        if ext.dir_offset % cs != 0 {
            return Err(bad("bitmaps_ext: invalid bitmap directory offset"));
        }
        if ext.dir_size > MAX_DIRECTORY_BYTES {
            return Err(bad(format!(
                "bitmaps_ext: bitmap directory size ({}) exceeds the maximum supported size ({MAX_DIRECTORY_BYTES})",
                ext.dir_size
            )));
        }
        Ok(ext)
    }

    /// The extension data.
    pub fn serialize(&self) -> Vec<u8> {
        let mut b = vec![0u8; EXT_LEN];
        put_u32(&mut b, 0, self.nb_bitmaps);
        put_u64(&mut b, 8, self.dir_size);
        put_u64(&mut b, 16, self.dir_offset);
        b
    }
}

/// One bitmap directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Offset of the bitmap table.
    pub table_offset: u64,
    /// Entries of the bitmap table.
    pub table_size: u32,
    /// Flags (`FLAG_*`).
    pub flags: u32,
    /// Bitmap type (1: dirty tracking).
    pub ty: u8,
    /// log2 of the granularity in bytes.
    pub granularity_bits: u8,
    /// Extra data (kept verbatim).
    pub extra: Vec<u8>,
    /// The name.
    pub name: String,
}

/// Bytes a directory entry with these name and extra data lengths takes.
pub fn entry_size(name_len: usize, extra_len: usize) -> u64 {
    (24 + name_len as u64 + extra_len as u64).div_ceil(8) * 8
}

impl DirEntry {
    /// Bytes this entry takes in the directory.
    pub fn size(&self) -> u64 {
        entry_size(self.name.len(), self.extra.len())
    }

    /// True when the bitmap was in use (not saved) when the image was read.
    pub fn in_use(&self) -> bool {
        self.flags & FLAG_IN_USE != 0
    }

    /// Checks the entry as QEMU's `check_dir_entry` does, against the
    /// cluster size and the virtual size. Where the table lies is not
    /// checked (QEMU reads past the end of the file as zeros, and check
    /// reports such references; reads past its largest offset fail).
    pub fn check(&self, cs: u64, virtual_size: u64) -> Result<()> {
        let fail = self.table_size == 0
            || self.table_offset == 0
            || self.table_offset % cs != 0
            || self.table_size > MAX_TABLE_ENTRIES
            || self.granularity_bits > MAX_GRANULARITY_BITS
            || self.granularity_bits < MIN_GRANULARITY_BITS
            || self.flags & FLAGS_RESERVED != 0
            || self.name.len() > MAX_NAME_BYTES
            || self.ty != TYPE_DIRTY_TRACKING;
        let phys = u64::from(self.table_size) * cs;
        let covers = (phys as u128 * 8) << self.granularity_bits.min(63);
        if fail || phys > MAX_PHYS_BYTES || (!self.in_use() && u128::from(virtual_size) > covers) {
            return Err(bad(format!(
                "Bitmap '{}' doesn't satisfy the constraints",
                self.name
            )));
        }
        Ok(())
    }
}

/// Zero bytes a directory read may add after the part inside the file:
/// enough for the longest entry QEMU accepts (no extra data, a name of at
/// most 65535 bytes), so that an entry that starts inside the file is
/// whole; an entry that starts past the end is all zeros and fails
/// [`DirEntry::check`].
pub const DIR_ZERO_TAIL: u64 = 24 + 65536;

/// Parses and checks the directory of `ext` in QEMU's order
/// (`bitmap_list_load`), entry by entry: the entry fits, no more entries
/// than the extension says, no extra data, the constraints; then the
/// count, and no bytes left over; and no name twice (QEMU refuses to load
/// a second bitmap of the same name). `buf` holds the directory's first
/// bytes (at most `ext.dir_size`): the bytes after it read as zeros, as
/// QEMU reads past the end of the file.
pub fn parse_directory(
    buf: &[u8],
    ext: &BitmapsExt,
    cs: u64,
    virtual_size: u64,
) -> Result<Vec<DirEntry>> {
    let out = parse_entries(buf, ext, cs, virtual_size)?;
    let mut names = std::collections::HashSet::with_capacity(out.len());
    for e in &out {
        if !names.insert(e.name.as_str()) {
            return Err(bad(format!("Bitmap already exists: {}", e.name)));
        }
    }
    Ok(out)
}

/// The bytes `[at, at + n)` of a directory whose first bytes are `buf`
/// (zeros after it); `n` is at most [`DIR_ZERO_TAIL`].
fn dir_bytes(buf: &[u8], at: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    if at < buf.len() as u64 {
        let a = at as usize;
        let k = n.min(buf.len() - a);
        v[..k].copy_from_slice(&buf[a..a + k]);
    }
    v
}

/// Parses the entries of the directory of `ext` (first bytes in `buf`,
/// zeros after it), checking each against the cluster size and the
/// virtual size ([`DirEntry::check`]), in QEMU's order; names may repeat
/// (see [`parse_directory`]).
pub fn parse_entries(
    buf: &[u8],
    ext: &BitmapsExt,
    cs: u64,
    virtual_size: u64,
) -> Result<Vec<DirEntry>> {
    let broken = || bad("Broken bitmap directory");
    let end = ext.dir_size;
    let mut out: Vec<DirEntry> = Vec::new();
    let mut p = 0u64;
    // Each entry is at least 24 bytes, and an entry past `buf` is all
    // zeros and fails its check: the walk is bounded by `buf`.
    while p < end {
        if p + 24 > end {
            return Err(broken());
        }
        if out.len() as u32 >= ext.nb_bitmaps {
            return Err(bad("More bitmaps found than specified in header extension"));
        }
        let hd = dir_bytes(buf, p, 24);
        let name_len = usize::from(u16::from_be_bytes([hd[18], hd[19]]));
        let extra_len = get_u32(&hd, 20);
        let size = entry_size(name_len, extra_len as usize);
        if p + size > end {
            return Err(broken());
        }
        if extra_len != 0 {
            return Err(bad("Bitmap extra data is not supported"));
        }
        let name = String::from_utf8_lossy(&dir_bytes(buf, p + 24, name_len)).into_owned();
        let e = DirEntry {
            table_offset: get_u64(&hd, 0),
            table_size: get_u32(&hd, 8),
            flags: get_u32(&hd, 12),
            ty: hd[16],
            granularity_bits: hd[17],
            extra: Vec::new(),
            name,
        };
        e.check(cs, virtual_size)?;
        if e.name.is_empty() {
            return Err(bad("Bitmap with an empty name in the bitmap directory"));
        }
        out.push(e);
        p += size;
    }
    if out.len() as u32 != ext.nb_bitmaps {
        return Err(bad("Less bitmaps found than specified in header extension"));
    }
    Ok(out)
}

/// Serializes a directory.
pub fn serialize_directory(entries: &[DirEntry]) -> Vec<u8> {
    let total: u64 = entries.iter().map(DirEntry::size).sum();
    let mut b = vec![0u8; total as usize];
    let mut p = 0usize;
    for e in entries {
        put_u64(&mut b, p, e.table_offset);
        put_u32(&mut b, p + 8, e.table_size);
        put_u32(&mut b, p + 12, e.flags);
        b[p + 16] = e.ty;
        b[p + 17] = e.granularity_bits;
        b[p + 18..p + 20].copy_from_slice(&(e.name.len() as u16).to_be_bytes());
        put_u32(&mut b, p + 20, e.extra.len() as u32);
        b[p + 24..p + 24 + e.extra.len()].copy_from_slice(&e.extra);
        let n0 = p + 24 + e.extra.len();
        b[n0..n0 + e.name.len()].copy_from_slice(e.name.as_bytes());
        p += e.size() as usize;
    }
    b
}

/// The bitmaps extension of a header, parsed (`None`: no extension).
pub(crate) fn ext_of(h: &Header) -> Option<Result<BitmapsExt>> {
    h.other_extensions
        .iter()
        .find(|(t, _)| *t == EXT_BITMAPS)
        .map(|(_, d)| BitmapsExt::parse(d, h.cluster_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> DirEntry {
        DirEntry {
            table_offset: 0x30000,
            table_size: 1,
            flags: FLAG_AUTO,
            ty: TYPE_DIRTY_TRACKING,
            granularity_bits: 16,
            extra: Vec::new(),
            name: name.into(),
        }
    }

    #[test]
    fn directory_round_trip() {
        let dir = vec![entry("b0"), entry("a-longer-name")];
        let buf = serialize_directory(&dir);
        assert_eq!(buf.len(), 32 + 40);
        let ext = BitmapsExt {
            nb_bitmaps: 2,
            dir_size: buf.len() as u64,
            dir_offset: 0x40000,
        };
        let back = parse_directory(&buf, &ext, 65536, 1 << 30).unwrap();
        assert_eq!(back, dir);
        let e2 = BitmapsExt::parse(&ext.serialize(), 65536).unwrap();
        assert_eq!(e2, ext);
    }

    #[test]
    fn hostile_entries_refused() {
        let ext = BitmapsExt {
            nb_bitmaps: 1,
            dir_size: 32,
            dir_offset: 0x40000,
        };
        type Mutation = fn(&mut DirEntry);
        let cases: [Mutation; 9] = [
            |e| e.table_size = 0,
            |e| e.table_offset = 0x30001,
            |e| e.table_offset = 0,
            |e| e.table_size = MAX_TABLE_ENTRIES + 1,
            |e| e.granularity_bits = 8,
            |e| e.granularity_bits = 40,
            |e| e.flags = 1 << 5,
            |e| e.ty = 2,
            // Too small for the virtual size.
            |e| e.granularity_bits = 9,
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut e = entry("x");
            f(&mut e);
            let buf = serialize_directory(&[e]);
            assert!(
                parse_directory(&buf, &ext, 65536, 1 << 30).is_err(),
                "case {i} accepted"
            );
        }
        // Count mismatch and truncation.
        let buf = serialize_directory(&[entry("x")]);
        let two = BitmapsExt {
            nb_bitmaps: 2,
            ..ext
        };
        assert!(parse_directory(&buf, &two, 65536, 1 << 30).is_err());
        let short = BitmapsExt {
            dir_size: 20,
            ..ext
        };
        assert!(parse_directory(&buf[..20], &short, 65536, 1 << 30).is_err());
        // Past the bytes read, the directory is zeros: an entry there fails.
        let long = BitmapsExt {
            nb_bitmaps: 2,
            dir_size: 64,
            ..ext
        };
        let e = parse_directory(&buf, &long, 65536, 1 << 30).unwrap_err();
        assert!(e.message.contains("Bitmap '' doesn't satisfy"), "{e}");
        let mut b = buf.clone();
        b[18..20].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(parse_directory(&b, &ext, 65536, 1 << 30).is_err());
        // Extension fields.
        let mut d = ext.serialize();
        d[4] = 1;
        assert!(BitmapsExt::parse(&d, 65536).is_err());
        let mut d = ext.serialize();
        put_u32(&mut d, 0, 0);
        assert!(BitmapsExt::parse(&d, 65536).is_err());
        let mut d = ext.serialize();
        put_u64(&mut d, 16, 0x40001);
        assert!(BitmapsExt::parse(&d, 65536).is_err());
        let mut d = ext.serialize();
        put_u64(&mut d, 8, u64::MAX);
        assert!(BitmapsExt::parse(&d, 65536).is_err());
        assert!(BitmapsExt::parse(&d[..16], 65536).is_err());
    }
}
