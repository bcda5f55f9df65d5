//! The header section: the file identifier at offset 0 and the two headers
//! at 64 KiB and 128 KiB (4 KiB each, CRC-32C over the 4 KiB with the
//! checksum field zeroed). The valid header with the higher sequence
//! number is the current one; an update writes the other slot with the
//! next sequence number, so a crash mid-update leaves the old one current.

use crate::guid::Guid;
use block_core::engine::codec::{Endian, FieldReader};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// Byte order of every VHDX field.
pub const ENDIAN: Endian = Endian::Little;
/// The file identifier's signature, at offset 0.
pub const FILE_SIGNATURE: &[u8; 8] = b"vhdxfile";
/// Offsets of the two headers.
pub const HEADER_OFFSETS: [u64; 2] = [64 << 10, 128 << 10];
/// Bytes a header's checksum covers.
pub const HEADER_SIZE: usize = 4096;
/// The header signature, "head".
pub const HEADER_SIGNATURE: u32 = u32::from_le_bytes(*b"head");
/// End of the header section (1 MiB): metadata, log and data lie past it.
pub const HEADER_SECTION_END: u64 = 1 << 20;
/// The alignment of regions, the log and payload blocks.
pub const MIB: u64 = 1 << 20;

/// CRC-32C of `buf` with the 4 bytes at `crc_at` taken as zeros, as every
/// VHDX checksum is computed.
pub fn checksum(buf: &[u8], crc_at: usize) -> u32 {
    let c = crc32c::crc32c(&buf[..crc_at]);
    let c = crc32c::crc32c_append(c, &[0; 4]);
    crc32c::crc32c_append(c, &buf[crc_at + 4..])
}

/// Stores the checksum of `buf` at `crc_at`.
pub fn seal(buf: &mut [u8], crc_at: usize) {
    let c = checksum(buf, crc_at);
    ENDIAN.put_u32(buf, crc_at, c);
}

/// One header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Higher is newer.
    pub sequence: u64,
    /// Changed on the first write to the file in a session.
    pub file_write_guid: Guid,
    /// Changed on the first guest-visible write in a session.
    pub data_write_guid: Guid,
    /// Non-zero when the log may hold entries to replay.
    pub log_guid: Guid,
    /// Log format version (0).
    pub log_version: u16,
    /// Header version (1).
    pub version: u16,
    /// Bytes of the log (a multiple of 1 MiB).
    pub log_length: u32,
    /// File offset of the log (a multiple of 1 MiB).
    pub log_offset: u64,
}

impl Header {
    /// Decodes a header slot: `None` when its checksum, signature or
    /// version is wrong (that slot is not valid).
    pub fn decode(b: &[u8]) -> Result<Option<Header>> {
        let r = FieldReader::new(b, ENDIAN, "open");
        if b.len() < HEADER_SIZE {
            return Err(BlockError::corrupt("open", "short VHDX header"));
        }
        if r.u32(0, "signature")? != HEADER_SIGNATURE
            || r.u32(4, "checksum")? != checksum(&b[..HEADER_SIZE], 4)
            || r.u16(66, "version")? != 1
        {
            return Ok(None);
        }
        Ok(Some(Header {
            sequence: r.u64(8, "sequence_number")?,
            file_write_guid: Guid::read(b, 16),
            data_write_guid: Guid::read(b, 32),
            log_guid: Guid::read(b, 48),
            log_version: r.u16(64, "log_version")?,
            version: 1,
            log_length: r.u32(68, "log_length")?,
            log_offset: r.u64(72, "log_offset")?,
        }))
    }

    /// The 4 KiB slot holding this header, checksummed.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        ENDIAN.put_u32(&mut b, 0, HEADER_SIGNATURE);
        ENDIAN.put_u64(&mut b, 8, self.sequence);
        self.file_write_guid.write(&mut b, 16);
        self.data_write_guid.write(&mut b, 32);
        self.log_guid.write(&mut b, 48);
        b[64..66].copy_from_slice(&self.log_version.to_le_bytes());
        b[66..68].copy_from_slice(&self.version.to_le_bytes());
        ENDIAN.put_u32(&mut b, 68, self.log_length);
        ENDIAN.put_u64(&mut b, 72, self.log_offset);
        seal(&mut b, 4);
        b
    }

    /// Checks the log's placement: 1 MiB aligned, past the header section,
    /// inside the file, version 0.
    pub fn check_log(&self, file_len: u64) -> Result<()> {
        let bad = |m: String| Err(BlockError::corrupt("open", m).at(self.log_offset));
        if self.log_version != 0 {
            return bad(format!("unsupported VHDX log version {}", self.log_version));
        }
        let len = u64::from(self.log_length);
        if self.log_offset < HEADER_SECTION_END || self.log_offset % MIB != 0 || len % MIB != 0 {
            return bad(format!(
                "VHDX log at {} ({len} bytes) is not 1 MiB aligned past the header section",
                self.log_offset
            ));
        }
        match self.log_offset.checked_add(len) {
            Some(end) if end <= file_len => Ok(()),
            _ => bad(format!(
                "VHDX log at {} ({len} bytes) lies past the end of the file ({file_len} bytes)",
                self.log_offset
            )),
        }
    }
}

/// Both header slots and which one is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// The slots as read (`None`: not valid).
    pub slots: [Option<Header>; 2],
    /// Index of the current slot.
    pub current: usize,
}

impl Headers {
    /// Reads the file identifier and both headers of `file`.
    pub fn load(file: &dyn BlockNode) -> Result<Headers> {
        let mut sig = [0u8; 8];
        file.read_at(0, &mut sig)?;
        if &sig != FILE_SIGNATURE {
            return Err(BlockError::corrupt(
                "open",
                "not a VHDX file (no vhdxfile signature)",
            ));
        }
        let mut slots = [None, None];
        for (i, &at) in HEADER_OFFSETS.iter().enumerate() {
            let mut b = vec![0u8; HEADER_SIZE];
            file.read_at(at, &mut b)?;
            slots[i] = Header::decode(&b)?;
            if slots[i].is_none() {
                log::debug!("vhdx: header {} at {at} is not valid", i + 1);
            }
        }
        let current = match (slots[0], slots[1]) {
            (Some(_), None) => 0,
            (None, Some(_)) => 1,
            (None, None) => {
                return Err(
                    BlockError::corrupt("open", "No valid VHDX header found").at(HEADER_OFFSETS[0])
                )
            }
            (Some(a), Some(b)) if a.sequence > b.sequence => 0,
            (Some(a), Some(b)) if b.sequence > a.sequence => 1,
            // Equal sequence numbers: valid only when the headers are the
            // same (as some tools write them).
            (Some(a), Some(b)) if a == b => 0,
            _ => {
                return Err(BlockError::corrupt(
                    "open",
                    "the two VHDX headers differ but have the same sequence number",
                )
                .at(HEADER_OFFSETS[0]))
            }
        };
        Ok(Headers { slots, current })
    }

    /// The current header.
    pub fn current(&self) -> Header {
        self.slots[self.current].expect("the current slot is valid")
    }

    /// Writes `h` (its sequence number set to the current one's plus one)
    /// to the slot that is not current, flushes, and makes it current.
    pub fn write_next(&mut self, file: &dyn BlockNode, mut h: Header) -> Result<()> {
        let slot = 1 - self.current;
        h.sequence = self.current().sequence.wrapping_add(1);
        file.write_at(HEADER_OFFSETS[slot], &h.encode())?;
        file.flush()?;
        self.slots[slot] = Some(h);
        self.current = slot;
        Ok(())
    }

    /// Updates both slots to `h` in turn (the spec's header update, done
    /// twice so that both slots hold the new state).
    pub fn update(&mut self, file: &dyn BlockNode, h: Header) -> Result<()> {
        self.write_next(file, h)?;
        self.write_next(file, h)
    }
}

/// The file identifier block: the signature and the creator string (UTF-16).
pub fn file_identifier(creator: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 << 10];
    b[..8].copy_from_slice(FILE_SIGNATURE);
    for (i, u) in creator.encode_utf16().take(256).enumerate() {
        b[8 + 2 * i..10 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    b
}
