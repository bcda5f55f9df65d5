//! The image header: the first [`HEADER_SIZE`] bytes of the file.
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | [`MAGIC`] |
//! | 8..12 | version, u32 little-endian: [`VERSION`] |
//! | 12..16 | header size, u32 little-endian: [`HEADER_SIZE`] |
//! | 16..24 | virtual size in bytes, u64 little-endian |
//! | 24 | key, 1..=255 |
//! | 25..512 | zero |
//!
//! The guest data starts at [`HEADER_SIZE`]. A new format should change
//! [`MAGIC`] so that its images are not mistaken for this one's.

use block_core::{BlockError, Result};

/// The size of the header and the file offset of guest byte 0.
pub const HEADER_SIZE: u64 = 512;
/// The first bytes of every image.
pub const MAGIC: [u8; 8] = *b"BLKXOR\0\0";
/// The only header version there is.
pub const VERSION: u32 = 1;
/// The largest virtual size: the data must end within an `i64` file offset.
pub const MAX_SIZE: u64 = i64::MAX as u64 - HEADER_SIZE;

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The guest-visible size in bytes.
    pub size: u64,
    /// The key every data byte is mapped through ([`crate::codec`]).
    pub key: u8,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE as usize] {
        let mut b = [0u8; HEADER_SIZE as usize];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24] = self.key;
        b
    }

    /// Decodes and validates a header read from an image. Every field is
    /// checked before it is used, since the file may be damaged or hostile:
    /// the error says which field is wrong.
    pub fn decode(b: &[u8; HEADER_SIZE as usize]) -> Result<Header> {
        if b[0..8] != MAGIC {
            return Err(BlockError::corrupt(
                "open",
                "not an image of this format (bad magic)",
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(BlockError::new(
                block_core::ErrorKind::Unsupported,
                "open",
                format!("unsupported header version {version} (this driver reads {VERSION})"),
            ));
        }
        let header_size = u32_at(12);
        if u64::from(header_size) != HEADER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("header size {header_size}, expected {HEADER_SIZE}"),
            ));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[16..24]);
        let size = u64::from_le_bytes(size);
        if size > MAX_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("virtual size {size} is larger than the format allows ({MAX_SIZE})"),
            ));
        }
        let key = b[24];
        if key == 0 {
            return Err(BlockError::corrupt("open", "key 0 in the header"));
        }
        Ok(Header { size, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use block_core::ErrorKind;

    #[test]
    fn encode_then_decode_is_the_same_header() {
        let h = Header {
            size: 0x0123_4567_89ab,
            key: 0xc3,
        };
        let b = h.encode();
        assert_eq!(&b[0..8], b"BLKXOR\0\0");
        assert_eq!(b[16..24], 0x0123_4567_89abu64.to_le_bytes());
        assert!(b[25..].iter().all(|&x| x == 0));
        assert_eq!(Header::decode(&b).unwrap(), h);
    }

    #[test]
    fn every_bad_field_is_named() {
        let good = Header { size: 4096, key: 7 }.encode();
        let cases: [(usize, u8, ErrorKind, &str); 4] = [
            (0, b'x', ErrorKind::Corrupt, "bad magic"),
            (8, 2, ErrorKind::Unsupported, "header version 2"),
            (13, 1, ErrorKind::Corrupt, "header size 256"),
            (24, 0, ErrorKind::Corrupt, "key 0"),
        ];
        for (at, value, kind, words) in cases {
            let mut b = good;
            b[at] = value;
            let e = Header::decode(&b).unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
        let mut b = good;
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = Header::decode(&b).unwrap_err();
        assert!(e.message.contains("larger than the format allows"), "{e}");
    }
}
