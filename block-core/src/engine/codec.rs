//! On-disk struct codec: fixed-width big- and little-endian fields read
//! and written at byte offsets, checked arithmetic on offsets and sizes,
//! and table reads bounded by validated header fields.
//!
//! Format drivers parse headers with [`FieldReader`] (every read is
//! bounds-checked and fails with a corruption error instead of panicking)
//! and size their tables with [`table_bytes`], which refuses a size above
//! the driver's limit before anything is allocated. The unchecked
//! accessors ([`get_be64`], [`put_be32`], ...) are for buffers whose size
//! the caller has already established (a cached table of known length).

use crate::error::{BlockError, Result};
use crate::node::{BlockNode, BlockNodeExt};

macro_rules! accessors {
    ($get:ident, $put:ident, $t:ty, $from:ident, $to:ident, $what:literal) => {
        #[doc = concat!("Reads the ", $what, " at byte `off` of `b` (panics when out of bounds).")]
        #[inline]
        pub fn $get(b: &[u8], off: usize) -> $t {
            const N: usize = std::mem::size_of::<$t>();
            let mut a = [0u8; N];
            a.copy_from_slice(&b[off..off + N]);
            <$t>::$from(a)
        }
        #[doc = concat!("Writes `v` as the ", $what, " at byte `off` of `b` (panics when out of bounds).")]
        #[inline]
        pub fn $put(b: &mut [u8], off: usize, v: $t) {
            const N: usize = std::mem::size_of::<$t>();
            b[off..off + N].copy_from_slice(&v.$to());
        }
    };
}

accessors!(
    get_be16,
    put_be16,
    u16,
    from_be_bytes,
    to_be_bytes,
    "big-endian u16"
);
accessors!(
    get_be32,
    put_be32,
    u32,
    from_be_bytes,
    to_be_bytes,
    "big-endian u32"
);
accessors!(
    get_be64,
    put_be64,
    u64,
    from_be_bytes,
    to_be_bytes,
    "big-endian u64"
);
accessors!(
    get_le16,
    put_le16,
    u16,
    from_le_bytes,
    to_le_bytes,
    "little-endian u16"
);
accessors!(
    get_le32,
    put_le32,
    u32,
    from_le_bytes,
    to_le_bytes,
    "little-endian u32"
);
accessors!(
    get_le64,
    put_le64,
    u64,
    from_le_bytes,
    to_le_bytes,
    "little-endian u64"
);

/// Byte order of an on-disk format's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Most significant byte first (qcow2, vpc).
    Big,
    /// Least significant byte first (qed, vdi, vhdx, vmdk, parallels).
    Little,
}

impl Endian {
    /// Reads a u32 of this byte order at `off` (panics when out of bounds).
    pub fn u32(self, b: &[u8], off: usize) -> u32 {
        match self {
            Endian::Big => get_be32(b, off),
            Endian::Little => get_le32(b, off),
        }
    }
    /// Reads a u64 of this byte order at `off` (panics when out of bounds).
    pub fn u64(self, b: &[u8], off: usize) -> u64 {
        match self {
            Endian::Big => get_be64(b, off),
            Endian::Little => get_le64(b, off),
        }
    }
    /// Writes a u32 of this byte order at `off` (panics when out of bounds).
    pub fn put_u32(self, b: &mut [u8], off: usize, v: u32) {
        match self {
            Endian::Big => put_be32(b, off, v),
            Endian::Little => put_le32(b, off, v),
        }
    }
    /// Writes a u64 of this byte order at `off` (panics when out of bounds).
    pub fn put_u64(self, b: &mut [u8], off: usize, v: u64) {
        match self {
            Endian::Big => put_be64(b, off, v),
            Endian::Little => put_le64(b, off, v),
        }
    }
}

/// Bounds-checked field reads from an untrusted buffer (a header read
/// from disk). A read past the end fails with a corruption error naming
/// the field instead of panicking.
#[derive(Debug, Clone, Copy)]
pub struct FieldReader<'a> {
    buf: &'a [u8],
    endian: Endian,
    op: &'static str,
}

impl<'a> FieldReader<'a> {
    /// A reader over `buf` with fields of byte order `endian`; errors are
    /// reported for operation `op`.
    pub fn new(buf: &'a [u8], endian: Endian, op: &'static str) -> FieldReader<'a> {
        FieldReader { buf, endian, op }
    }

    /// The buffer length.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes `[off, off + len)`, if the buffer holds them.
    pub fn bytes(&self, off: usize, len: usize, field: &str) -> Result<&'a [u8]> {
        off.checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .map(|e| &self.buf[off..e])
            .ok_or_else(|| {
                BlockError::corrupt(
                    self.op,
                    format!(
                        "{field} at byte {off} ({len} bytes) lies past the end of the {}-byte structure",
                        self.buf.len()
                    ),
                )
            })
    }

    /// The byte at `off`.
    pub fn u8(&self, off: usize, field: &str) -> Result<u8> {
        Ok(self.bytes(off, 1, field)?[0])
    }

    /// The u16 at `off`.
    pub fn u16(&self, off: usize, field: &str) -> Result<u16> {
        let b = self.bytes(off, 2, field)?;
        Ok(match self.endian {
            Endian::Big => get_be16(b, 0),
            Endian::Little => get_le16(b, 0),
        })
    }

    /// The u32 at `off`.
    pub fn u32(&self, off: usize, field: &str) -> Result<u32> {
        Ok(self.endian.u32(self.bytes(off, 4, field)?, 0))
    }

    /// The u64 at `off`.
    pub fn u64(&self, off: usize, field: &str) -> Result<u64> {
        Ok(self.endian.u64(self.bytes(off, 8, field)?, 0))
    }
}

/// `offset + len`, or a corruption error for `what` when it overflows.
pub fn checked_end(op: &'static str, what: &str, offset: u64, len: u64) -> Result<u64> {
    offset.checked_add(len).ok_or_else(|| {
        BlockError::corrupt(op, format!("{what}: offset {offset} + {len} overflows"))
    })
}

/// The byte size of a table of `entries` entries of `entry_size` bytes,
/// refused (corruption error for `what`) when it overflows or exceeds
/// `limit` bytes. Call before allocating a buffer sized by header fields.
pub fn table_bytes(
    op: &'static str,
    what: &str,
    entries: u64,
    entry_size: u64,
    limit: u64,
) -> Result<usize> {
    let bytes = entries
        .checked_mul(entry_size)
        .filter(|&b| b <= limit)
        .ok_or_else(|| {
            BlockError::corrupt(
                op,
                format!("{what} too large ({entries} entries of {entry_size} bytes, limit {limit} bytes)"),
            )
        })?;
    usize::try_from(bytes).map_err(|_| BlockError::corrupt(op, format!("{what} too large")))
}

/// Reads a table of `entries` u64 entries of byte order `endian` at
/// `offset` of `file`, refusing (before allocating) a table larger than
/// `limit` bytes or one whose end overflows.
pub fn read_u64_table(
    file: &dyn BlockNode,
    op: &'static str,
    what: &str,
    offset: u64,
    entries: u64,
    endian: Endian,
    limit: u64,
) -> Result<Vec<u64>> {
    let bytes = table_bytes(op, what, entries, 8, limit)?;
    checked_end(op, what, offset, bytes as u64)?;
    let mut buf = vec![0u8; bytes];
    file.read_at(offset, &mut buf)?;
    Ok(buf.chunks_exact(8).map(|c| endian.u64(c, 0)).collect())
}

/// Serializes u64 entries in byte order `endian` (a table to write).
pub fn u64_table_bytes(entries: &[u64], endian: Endian) -> Vec<u8> {
    let mut buf = vec![0u8; entries.len() * 8];
    for (i, &e) in entries.iter().enumerate() {
        endian.put_u64(&mut buf, i * 8, e);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_byte_orders() {
        let mut b = [0u8; 16];
        put_be32(&mut b, 0, 0x0102_0304);
        assert_eq!(b[..4], [1, 2, 3, 4]);
        put_le32(&mut b, 4, 0x0102_0304);
        assert_eq!(b[4..8], [4, 3, 2, 1]);
        put_be64(&mut b, 8, 0x0a0b_0c0d_0e0f_1011);
        assert_eq!(get_be64(&b, 8), 0x0a0b_0c0d_0e0f_1011);
        assert_eq!(get_le64(&b, 8), 0x1110_0f0e_0d0c_0b0a);
        put_le16(&mut b, 0, 0xbeef);
        assert_eq!(get_le16(&b, 0), 0xbeef);
        assert_eq!(get_be16(&b, 0), 0xefbe);
        let t = u64_table_bytes(&[1, 2], Endian::Little);
        assert_eq!(Endian::Little.u64(&t, 8), 2);
        assert_eq!(Endian::Big.u64(&t, 0), 1 << 56);
    }

    #[test]
    fn reader_refuses_reads_past_the_end() {
        let b = [0u8, 0, 0, 7, 9];
        let r = FieldReader::new(&b, Endian::Big, "open");
        assert_eq!(r.u32(0, "magic").unwrap(), 7);
        assert_eq!(r.u8(4, "x").unwrap(), 9);
        let e = r.u32(2, "version").unwrap_err();
        assert!(e.message.contains("version"), "{}", e.message);
        assert!(r.u64(usize::MAX - 2, "huge").is_err());
        assert!(r.bytes(5, 0, "empty").unwrap().is_empty());
    }

    #[test]
    fn table_sizes_are_bounded() {
        assert_eq!(table_bytes("open", "L1", 4, 8, 32).unwrap(), 32);
        assert!(table_bytes("open", "L1", 5, 8, 32).is_err());
        assert!(table_bytes("open", "L1", u64::MAX, 8, u64::MAX).is_err());
        assert!(checked_end("open", "t", u64::MAX, 1).is_err());
        assert_eq!(checked_end("open", "t", 1, 1).unwrap(), 2);
    }
}
