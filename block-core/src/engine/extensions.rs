//! Header extension areas: lists of typed, length-prefixed records (a
//! record header with a type and a data length, the data padded to an
//! alignment) ended by a record of type 0.
//!
//! qcow2's header extensions (big-endian u32 type and u32 length, data
//! padded to 8 bytes, after the header in cluster 0) and the parallels
//! format extension cluster (little-endian u64 magic, u32 length at byte
//! 12 of a 16-byte record header, 8-byte padding) are such lists; an
//! [`ExtensionLayout`] describes one and parses or writes it with every
//! length checked against the area.

use super::codec::{get_be32, get_be64, get_le32, get_le64};
use super::codec::{put_be32, put_be64, put_le32, put_le64, Endian};
use crate::error::{BlockError, Result};

/// The shape of a format's extension records.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionLayout {
    /// Byte order of the type and length fields.
    pub endian: Endian,
    /// Width of the type field at the start of a record header (4 or 8).
    pub type_bytes: usize,
    /// Offset of the u32 data length in a record header.
    pub len_at: usize,
    /// Bytes of a record header (the data follows).
    pub header_bytes: usize,
    /// The data of each record is padded to a multiple of this.
    pub align: usize,
    /// What the area is called in errors ("cluster 0").
    pub area_name: &'static str,
}

/// One record of an extension area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The record type (never 0, the end marker).
    pub kind: u64,
    /// Offset of the data in the area.
    pub offset: usize,
    /// The data, without padding.
    pub data: &'a [u8],
}

impl ExtensionLayout {
    fn get(&self, b: &[u8], off: usize, bytes: usize) -> u64 {
        match (self.endian, bytes) {
            (Endian::Big, 8) => get_be64(b, off),
            (Endian::Little, 8) => get_le64(b, off),
            (Endian::Big, _) => get_be32(b, off).into(),
            (Endian::Little, _) => get_le32(b, off).into(),
        }
    }

    fn put(&self, b: &mut [u8], off: usize, bytes: usize, v: u64) {
        match (self.endian, bytes) {
            (Endian::Big, 8) => put_be64(b, off, v),
            (Endian::Little, 8) => put_le64(b, off, v),
            (Endian::Big, _) => put_be32(b, off, v as u32),
            (Endian::Little, _) => put_le32(b, off, v as u32),
        }
    }

    /// The records of `area` from byte `start` on, up to the end marker or
    /// to where no record header fits before the end of `area` (a missing
    /// end marker is tolerated). A record whose data runs past the end is
    /// a corruption error for `op` at the data's offset, naming the record
    /// type and the area.
    pub fn parse<'a>(
        &self,
        area: &'a [u8],
        start: usize,
        op: &'static str,
    ) -> Result<Vec<Extension<'a>>> {
        let mut out = Vec::new();
        let mut off = start;
        // Each record takes at least a header: the loop is bounded.
        while off.saturating_add(self.header_bytes) <= area.len() {
            let kind = self.get(area, off, self.type_bytes);
            let len = self.get(area, off + self.len_at, 4) as usize;
            off += self.header_bytes;
            if kind == 0 {
                break;
            }
            if len > area.len() - off {
                let msg = format!(
                    "header extension 0x{kind:x} runs past the end of {}",
                    self.area_name
                );
                return Err(BlockError::corrupt(op, msg).at(off as u64));
            }
            out.push(Extension {
                kind,
                offset: off,
                data: &area[off..off + len],
            });
            off = off.saturating_add(len.div_ceil(self.align) * self.align);
        }
        Ok(out)
    }

    /// Writes `records` (type, data) and the end marker into `area` from
    /// byte `start`, each record's data padded with zeros; returns the
    /// offset after the end marker. An invalid-argument error for `op`
    /// naming the area when they do not fit (`area` may then be partly
    /// written).
    pub fn write<'a>(
        &self,
        area: &mut [u8],
        start: usize,
        records: impl IntoIterator<Item = (u64, &'a [u8])>,
        op: &'static str,
    ) -> Result<usize> {
        let hdr = self.header_bytes;
        let full = || {
            let msg = format!("header extensions do not fit in {}", self.area_name);
            BlockError::invalid(op, msg)
        };
        let mut off = start;
        for (kind, data) in records {
            let padded = data.len().div_ceil(self.align) * self.align;
            if off + hdr + padded + hdr > area.len() || data.len() > u32::MAX as usize {
                return Err(full());
            }
            area[off..off + hdr + padded].fill(0);
            self.put(area, off, self.type_bytes, kind);
            self.put(area, off + self.len_at, 4, data.len() as u64);
            area[off + hdr..off + hdr + data.len()].copy_from_slice(data);
            off += hdr + padded;
        }
        if off + hdr > area.len() {
            return Err(full());
        }
        area[off..off + hdr].fill(0);
        Ok(off + hdr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QCOW2: ExtensionLayout = ExtensionLayout {
        endian: Endian::Big,
        type_bytes: 4,
        len_at: 4,
        header_bytes: 8,
        align: 8,
        area_name: "cluster 0",
    };
    const PARALLELS: ExtensionLayout = ExtensionLayout {
        endian: Endian::Little,
        type_bytes: 8,
        len_at: 12,
        header_bytes: 16,
        align: 8,
        area_name: "cluster 0",
    };

    #[test]
    fn records_round_trip_in_both_layouts() {
        for l in [QCOW2, PARALLELS] {
            let mut area = vec![0xaau8; 128];
            let recs: [(u64, &[u8]); 2] = [(0xe279_2aca, b"raw"), (7, b"0123456789")];
            let end = l.write(&mut area, 8, recs, "write header").unwrap();
            let h = l.header_bytes;
            assert_eq!(end, 8 + (h + 8) + (h + 16) + h);
            assert_eq!(area[8 + h + 3..8 + h + 8], [0; 5], "padding is zero");
            let got = l.parse(&area, 8, "open").unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(
                (got[0].kind, got[0].data, got[0].offset),
                (0xe279_2aca, &b"raw"[..], 8 + h)
            );
            assert_eq!((got[1].kind, got[1].data), (7, &b"0123456789"[..]));
            // No end marker: the records up to the end of the area.
            let got = l.parse(&area[..end - h], 8, "open").unwrap();
            assert_eq!(got.len(), 2);
            let e = l.write(&mut area[..end - 1], 8, recs, "write header");
            assert_eq!(
                e.unwrap_err().message,
                "header extensions do not fit in cluster 0"
            );
        }
    }

    #[test]
    fn lengths_past_the_area_are_corruption() {
        let mut area = vec![0u8; 64];
        put_be32(&mut area, 16, 0x1234);
        put_be32(&mut area, 20, 41);
        let e = QCOW2.parse(&area, 16, "open").unwrap_err();
        assert_eq!(
            e.message,
            "header extension 0x1234 runs past the end of cluster 0"
        );
        assert_eq!(e.offset, Some(24));
        put_be32(&mut area, 20, 40);
        let got = QCOW2.parse(&area, 16, "open").unwrap();
        assert_eq!(got[0].data.len(), 40);
        assert!(QCOW2.parse(&area, 60, "open").unwrap().is_empty());
        assert!(QCOW2
            .parse(&area, usize::MAX - 2, "open")
            .unwrap()
            .is_empty());
    }
}
