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
//!
//! Fixed-layout structures (headers, table entries) are declared once,
//! field by field with their offsets, with [`fixed_fields!`](crate::fixed_fields):
//! the declaration gives both the checked decoder and the encoder, so the
//! two cannot disagree. Table positions named by a header are validated
//! with [`TableRules`] (alignment, size limit, overflow, addressable end).

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

/// A fixed-width integer field of an on-disk structure (u8, u16, u32,
/// u64), read and written in a given byte order; the field type of
/// [`fixed_fields!`](crate::fixed_fields).
pub trait FieldValue: Sized {
    /// Reads the field at `off` of `r` (a corruption error naming `field`
    /// when the buffer is too short).
    fn get(r: &FieldReader<'_>, off: usize, field: &str) -> Result<Self>;
    /// Writes the field at `off` of `b` in byte order `e` (panics when out
    /// of bounds: encoders write into buffers of the structure's size).
    fn put(self, b: &mut [u8], off: usize, e: Endian);
}

impl FieldValue for u8 {
    fn get(r: &FieldReader<'_>, off: usize, field: &str) -> Result<u8> {
        r.u8(off, field)
    }
    fn put(self, b: &mut [u8], off: usize, _e: Endian) {
        b[off] = self;
    }
}

impl FieldValue for u16 {
    fn get(r: &FieldReader<'_>, off: usize, field: &str) -> Result<u16> {
        r.u16(off, field)
    }
    fn put(self, b: &mut [u8], off: usize, e: Endian) {
        match e {
            Endian::Big => put_be16(b, off, self),
            Endian::Little => put_le16(b, off, self),
        }
    }
}

impl FieldValue for u32 {
    fn get(r: &FieldReader<'_>, off: usize, field: &str) -> Result<u32> {
        r.u32(off, field)
    }
    fn put(self, b: &mut [u8], off: usize, e: Endian) {
        e.put_u32(b, off, self)
    }
}

impl FieldValue for u64 {
    fn get(r: &FieldReader<'_>, off: usize, field: &str) -> Result<u64> {
        r.u64(off, field)
    }
    fn put(self, b: &mut [u8], off: usize, e: Endian) {
        e.put_u64(b, off, self)
    }
}

/// Declares the fixed-offset fields of an on-disk structure held in a
/// Rust struct, once for both directions: generates a unit struct with
/// `decode(&mut value, &FieldReader)` (every read bounds-checked, a short
/// buffer is a corruption error naming the field) and
/// `encode(&value, &mut [u8], Endian)`. Field types are those of the
/// struct's fields (u8, u16, u32 or u64, see [`FieldValue`]); fields not
/// listed (names, variable parts) are the caller's.
///
/// ```
/// #[derive(Default)]
/// struct Hdr { magic: u32, size: u64 }
/// block_core::fixed_fields! {
///     /// The fields of `Hdr`.
///     HdrFields for Hdr { magic @ 0, size @ 8 }
/// }
/// use block_core::engine::codec::{Endian, FieldReader};
/// let mut b = [0u8; 16];
/// HdrFields::encode(&Hdr { magic: 7, size: 1 << 40 }, &mut b, Endian::Little);
/// let mut h = Hdr::default();
/// HdrFields::decode(&mut h, &FieldReader::new(&b, Endian::Little, "open")).unwrap();
/// assert_eq!((h.magic, h.size), (7, 1 << 40));
/// assert!(HdrFields::decode(&mut h, &FieldReader::new(&b[..12], Endian::Little, "open")).is_err());
/// ```
#[macro_export]
macro_rules! fixed_fields {
    ($(#[$doc:meta])* $vis:vis $name:ident for $ty:ty { $($field:ident @ $off:expr),* $(,)? }) => {
        $(#[$doc])*
        $vis struct $name;

        impl $name {
            /// Reads the fields from `r` into `v`.
            #[allow(dead_code)]
            $vis fn decode(
                v: &mut $ty,
                r: &$crate::engine::codec::FieldReader<'_>,
            ) -> $crate::Result<()> {
                $(v.$field = $crate::engine::codec::FieldValue::get(r, $off, stringify!($field))?;)*
                Ok(())
            }

            /// Writes the fields of `v` into `b` in byte order `e`.
            #[allow(dead_code)]
            $vis fn encode(v: &$ty, b: &mut [u8], e: $crate::engine::codec::Endian) {
                $($crate::engine::codec::FieldValue::put(v.$field, b, $off, e);)*
            }
        }
    };
}

/// The rules a format's header imposes on the tables it names (mapping
/// tables, refcount or allocation tables, snapshot tables): their
/// offsets aligned, their sizes bounded, their ends addressable. qcow2,
/// qed (L1 table), vdi (block map), vhdx (BAT, 1 MiB aligned) and
/// parallels (BAT) check a header this way before any table is read.
#[derive(Debug, Clone, Copy)]
pub struct TableRules {
    /// The operation errors are reported for.
    pub op: &'static str,
    /// Offsets must be multiples of this (a power of two).
    pub alignment: u64,
    /// What the alignment is called in errors ("cluster" for
    /// "cluster-aligned").
    pub unit: &'static str,
    /// Table ends must not exceed this.
    pub max_end: u64,
}

impl TableRules {
    /// Validates `what`, a table of `bytes` bytes (at most `limit`) at
    /// `offset`; an empty table's offset need only be aligned. Errors are
    /// corruption errors (those about the offset carry it).
    pub fn check(&self, what: &str, offset: u64, bytes: u64, limit: u64) -> Result<()> {
        let bad = |msg: String| BlockError::corrupt(self.op, msg);
        if bytes > limit {
            return Err(bad(format!("{what} too large ({bytes} bytes)")));
        }
        if offset & (self.alignment - 1) != 0 {
            let msg = format!("{what} offset is not {}-aligned", self.unit);
            return Err(bad(msg).at(offset));
        }
        if bytes == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(bytes)
            .ok_or_else(|| bad(format!("{what} offset overflows")))?;
        if end > self.max_end {
            return Err(bad(format!("{what} offset invalid")).at(offset));
        }
        Ok(())
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
    Ok(u64_entries(&buf, endian))
}

/// The u64 entries of byte order `endian` in `buf` (a table read; a
/// trailing partial entry is ignored). The inverse of [`u64_table_bytes`].
pub fn u64_entries(buf: &[u8], endian: Endian) -> Vec<u64> {
    buf.chunks_exact(8).map(|c| endian.u64(c, 0)).collect()
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
        assert_eq!(u64_entries(&t, Endian::Little), [1, 2]);
        assert_eq!(u64_entries(&t[..12], Endian::Big), [1 << 56]);
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

    #[derive(Debug, Default, PartialEq)]
    struct Toy {
        tag: u8,
        count: u16,
        flags: u32,
        offset: u64,
    }

    crate::fixed_fields! {
        /// Toy's layout.
        ToyFields for Toy { tag @ 0, count @ 2, flags @ 4, offset @ 8 }
    }

    #[test]
    fn fixed_fields_round_trip_in_both_orders() {
        let t = Toy {
            tag: 9,
            count: 0x0102,
            flags: 0x0304_0506,
            offset: 0x0708_090a_0b0c_0d0e,
        };
        for e in [Endian::Big, Endian::Little] {
            let mut b = [0u8; 16];
            ToyFields::encode(&t, &mut b, e);
            assert_eq!(
                FieldReader::new(&b, e, "open").u16(2, "count").unwrap(),
                0x0102
            );
            let mut back = Toy::default();
            ToyFields::decode(&mut back, &FieldReader::new(&b, e, "open")).unwrap();
            assert_eq!(back, t);
        }
        let mut b = [0u8; 16];
        ToyFields::encode(&t, &mut b, Endian::Big);
        assert_eq!((b[0], &b[2..4], b[15]), (9, &[1u8, 2][..], 0x0e));
        let short = [0u8; 12];
        let e = ToyFields::decode(
            &mut Toy::default(),
            &FieldReader::new(&short, Endian::Big, "open"),
        )
        .unwrap_err();
        assert!(e.message.contains("offset"), "{}", e.message);
    }

    #[test]
    fn table_rules() {
        let r = TableRules {
            op: "open",
            alignment: 512,
            unit: "cluster",
            max_end: 1 << 20,
        };
        r.check("L1 table", 1024, 512, 4096).unwrap();
        r.check("L1 table", 1000, 0, 4096).unwrap_err();
        let e = r.check("L1 table", 1000, 8, 4096).unwrap_err();
        assert_eq!(e.message, "L1 table offset is not cluster-aligned");
        assert_eq!(e.offset, Some(1000));
        let e = r.check("L1 table", 1024, 8192, 4096).unwrap_err();
        assert_eq!(e.message, "L1 table too large (8192 bytes)");
        let e = r.check("L1 table", 1 << 20, 512, 4096).unwrap_err();
        assert_eq!(e.message, "L1 table offset invalid");
        let e = r.check("L1 table", u64::MAX - 511, 512, 4096).unwrap_err();
        assert_eq!(e.message, "L1 table offset overflows");
        r.check("L1 table", 1 << 30, 0, 4096).unwrap();
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
