//! The metadata log's on-disk structures: a circular buffer of 4 KiB
//! sectors holding entries. An entry is a 64-byte header followed by
//! 32-byte descriptors (126 in the first sector, 128 in each further
//! descriptor sector), then one data sector per data descriptor. A data
//! descriptor carries the first 8 and last 4 bytes of its 4 KiB; the data
//! sector the 4084 between, framed by a signature and the sequence number.
//! The entry's CRC-32C covers all its sectors, checksum field zeroed.

use crate::guid::Guid;
use crate::header::{seal, ENDIAN};
use block_core::{BlockError, Result};

/// Bytes of a log sector.
pub const SECTOR: usize = 4096;
/// "loge".
pub const ENTRY_SIGNATURE: u32 = u32::from_le_bytes(*b"loge");
/// "desc".
pub const DATA_DESC_SIGNATURE: u32 = u32::from_le_bytes(*b"desc");
/// "zero".
pub const ZERO_DESC_SIGNATURE: u32 = u32::from_le_bytes(*b"zero");
/// "data".
pub const DATA_SIGNATURE: u32 = u32::from_le_bytes(*b"data");

/// A log entry's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryHeader {
    /// CRC-32C of the entry.
    pub checksum: u32,
    /// Bytes of the entry (a multiple of 4 KiB).
    pub entry_length: u32,
    /// Log offset of the first entry of the active sequence.
    pub tail: u32,
    /// The entry's sequence number (not 0).
    pub sequence: u64,
    /// Descriptors following the header.
    pub descriptor_count: u32,
    /// Must equal the header's log GUID.
    pub log_guid: Guid,
    /// The file's size when the entry was written, everything durable.
    pub flushed_file_offset: u64,
    /// The file's size the entry's writes need.
    pub last_file_offset: u64,
}

impl EntryHeader {
    /// Decodes the first 64 bytes of `b`, `None` without the signature.
    pub fn decode(b: &[u8]) -> Option<EntryHeader> {
        if b.len() < 64 || ENDIAN.u32(b, 0) != ENTRY_SIGNATURE {
            return None;
        }
        Some(EntryHeader {
            checksum: ENDIAN.u32(b, 4),
            entry_length: ENDIAN.u32(b, 8),
            tail: ENDIAN.u32(b, 12),
            sequence: ENDIAN.u64(b, 16),
            descriptor_count: ENDIAN.u32(b, 24),
            log_guid: Guid::read(b, 32),
            flushed_file_offset: ENDIAN.u64(b, 48),
            last_file_offset: ENDIAN.u64(b, 56),
        })
    }

    /// Stores the header (checksum field as given) in `b[..64]`.
    pub fn encode(&self, b: &mut [u8]) {
        ENDIAN.put_u32(b, 0, ENTRY_SIGNATURE);
        ENDIAN.put_u32(b, 4, self.checksum);
        ENDIAN.put_u32(b, 8, self.entry_length);
        ENDIAN.put_u32(b, 12, self.tail);
        ENDIAN.put_u64(b, 16, self.sequence);
        ENDIAN.put_u32(b, 24, self.descriptor_count);
        ENDIAN.put_u32(b, 28, 0);
        self.log_guid.write(b, 32);
        ENDIAN.put_u64(b, 48, self.flushed_file_offset);
        ENDIAN.put_u64(b, 56, self.last_file_offset);
    }
}

/// A descriptor: what one part of an entry writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descriptor {
    /// Zeros over `length` bytes at `file_offset`.
    Zero {
        /// Bytes to zero (a multiple of 4 KiB).
        length: u64,
        /// Where (4 KiB aligned).
        file_offset: u64,
    },
    /// 4 KiB at `file_offset`: `leading`, the data sector's 4084 bytes,
    /// `trailing`.
    Data {
        /// The sector's first 8 bytes.
        leading: [u8; 8],
        /// The sector's last 4 bytes.
        trailing: [u8; 4],
        /// Where (4 KiB aligned).
        file_offset: u64,
    },
}

impl Descriptor {
    /// Decodes the 32 bytes of `b` for an entry of sequence `seq`; `None`
    /// when the descriptor is not valid (signature, sequence, alignment).
    pub fn decode(b: &[u8], seq: u64) -> Option<Descriptor> {
        let file_offset = ENDIAN.u64(b, 16);
        if ENDIAN.u64(b, 24) != seq || file_offset % SECTOR as u64 != 0 {
            return None;
        }
        match ENDIAN.u32(b, 0) {
            ZERO_DESC_SIGNATURE => {
                let length = ENDIAN.u64(b, 8);
                (length % SECTOR as u64 == 0).then_some(Descriptor::Zero {
                    length,
                    file_offset,
                })
            }
            DATA_DESC_SIGNATURE => Some(Descriptor::Data {
                trailing: b[4..8].try_into().expect("4 bytes"),
                leading: b[8..16].try_into().expect("8 bytes"),
                file_offset,
            }),
            _ => None,
        }
    }

    /// The file range the descriptor writes.
    pub fn range(&self) -> (u64, u64) {
        match *self {
            Descriptor::Zero {
                length,
                file_offset,
            } => (file_offset, length),
            Descriptor::Data { file_offset, .. } => (file_offset, SECTOR as u64),
        }
    }
}

/// Sectors holding the header and `count` descriptors (at least one).
pub fn descriptor_sectors(count: u64) -> u64 {
    (count + 2).div_ceil(128)
}

/// The 4 KiB a data descriptor and its data sector describe, `None` when
/// the data sector's signature or sequence number is wrong.
pub fn data_sector_bytes(d: &Descriptor, sector: &[u8], seq: u64) -> Option<Vec<u8>> {
    let Descriptor::Data {
        leading, trailing, ..
    } = d
    else {
        return None;
    };
    let high = u64::from(ENDIAN.u32(sector, 4));
    let low = u64::from(ENDIAN.u32(sector, SECTOR - 4));
    if ENDIAN.u32(sector, 0) != DATA_SIGNATURE || (high << 32 | low) != seq {
        return None;
    }
    let mut out = Vec::with_capacity(SECTOR);
    out.extend_from_slice(leading);
    out.extend_from_slice(&sector[8..SECTOR - 4]);
    out.extend_from_slice(trailing);
    Some(out)
}

/// An entry writing each 4 KiB `(file_offset, data)` of `writes`, with
/// sequence number `seq` in log `guid`; `file_len` is the file's size now
/// (flushed and last file offset). Returns the entry's bytes.
pub fn encode_entry(
    seq: u64,
    guid: Guid,
    file_len: u64,
    writes: &[(u64, &[u8])],
) -> Result<Vec<u8>> {
    if seq == 0 {
        return Err(BlockError::invalid("log", "log sequence number 0"));
    }
    let n = writes.len() as u64;
    let ds = descriptor_sectors(n) as usize;
    let total = (ds + writes.len()) * SECTOR;
    let mut b = vec![0u8; total];
    let hdr = EntryHeader {
        checksum: 0,
        entry_length: u32::try_from(total)
            .map_err(|_| BlockError::invalid("log", "log entry too large"))?,
        tail: 0,
        sequence: seq,
        descriptor_count: n as u32,
        log_guid: guid,
        flushed_file_offset: file_len,
        last_file_offset: file_len,
    };
    hdr.encode(&mut b);
    for (i, &(at, data)) in writes.iter().enumerate() {
        if data.len() != SECTOR || at % SECTOR as u64 != 0 {
            return Err(BlockError::invalid(
                "log",
                "log writes are aligned 4 KiB sectors",
            ));
        }
        let d = 64 + 32 * i;
        ENDIAN.put_u32(&mut b, d, DATA_DESC_SIGNATURE);
        b[d + 4..d + 8].copy_from_slice(&data[SECTOR - 4..]);
        b[d + 8..d + 16].copy_from_slice(&data[..8]);
        ENDIAN.put_u64(&mut b, d + 16, at);
        ENDIAN.put_u64(&mut b, d + 24, seq);
        let s = (ds + i) * SECTOR;
        ENDIAN.put_u32(&mut b, s, DATA_SIGNATURE);
        ENDIAN.put_u32(&mut b, s + 4, (seq >> 32) as u32);
        b[s + 8..s + SECTOR - 4].copy_from_slice(&data[8..SECTOR - 4]);
        ENDIAN.put_u32(&mut b, s + SECTOR - 4, seq as u32);
    }
    seal(&mut b, 4);
    Ok(b)
}
