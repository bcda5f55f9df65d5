//! Finding and replaying the log's active sequence on open.
//!
//! The log is searched sector by sector for valid entries (signature,
//! lengths, sequence number, the header's log GUID, descriptors, data
//! sectors, CRC-32C); consecutive entries with increasing sequence
//! numbers form a sequence and the sequence ending in the highest
//! sequence number is the active one. Replaying writes its descriptors'
//! data and zeros into the file, extends the file to the entries' last
//! file offset, flushes, and then marks the log empty (zero log GUID in
//! the headers). Entries are read a sector at a time: nothing is
//! allocated by a size the log states except descriptors, bounded by the
//! log's length, itself bounded by the file.

use crate::guid::Guid;
use crate::header::{Headers, MIB};
use crate::image::MAX_FILE_SIZE;
use crate::log::{data_sector_bytes, descriptor_sectors, Descriptor, EntryHeader, SECTOR};
use crate::region::Region;
use block_core::{
    BlockError, BlockNode, BlockNodeExt, ErrorKind, Preallocation, Result, ZeroFlags,
};
use std::cell::Cell;

/// A valid entry found in the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its header.
    pub header: EntryHeader,
    /// Its descriptors.
    pub descriptors: Vec<Descriptor>,
    /// Log offset of its first sector.
    pub start: u64,
}

/// The log region of a file, read as a circular buffer of sectors.
pub struct LogReader<'a> {
    file: &'a dyn BlockNode,
    log: Region,
    guid: Guid,
    /// Sectors read so far and the most a search may read: a log full of
    /// entries that are valid but for their last sector must not make the
    /// search quadratic in the log's length.
    reads: Cell<u64>,
    budget: u64,
}

impl<'a> LogReader<'a> {
    /// A reader over `log` of `file`, accepting entries of `guid`.
    pub fn new(file: &'a dyn BlockNode, log: Region, guid: Guid) -> LogReader<'a> {
        let budget = (log.length / SECTOR as u64).saturating_mul(16) + 4096;
        LogReader {
            file,
            log,
            guid,
            reads: Cell::new(0),
            budget,
        }
    }

    fn sector(&self, pos: u64, buf: &mut [u8]) -> Result<()> {
        self.reads.set(self.reads.get() + 1);
        if self.reads.get() > self.budget {
            return Err(BlockError::corrupt(
                "open",
                "the VHDX log is too damaged to search for entries to replay",
            )
            .at(self.log.offset));
        }
        self.file
            .read_at(self.log.offset + pos % self.log.length, buf)
    }

    /// The valid entry starting at log offset `pos`, if any.
    pub fn entry_at(&self, pos: u64) -> Result<Option<Entry>> {
        let mut s = vec![0u8; SECTOR];
        self.sector(pos, &mut s)?;
        let Some(h) = EntryHeader::decode(&s) else {
            return Ok(None);
        };
        let len = u64::from(h.entry_length);
        let sectors = len / SECTOR as u64;
        let ds = descriptor_sectors(u64::from(h.descriptor_count));
        if len == 0
            || len % SECTOR as u64 != 0
            || len > self.log.length
            || h.sequence == 0
            || h.log_guid != self.guid
            || ds > sectors
        {
            return Ok(None);
        }
        let mut crc = crc32c::crc32c(&s[..4]);
        crc = crc32c::crc32c_append(crc, &[0; 4]);
        crc = crc32c::crc32c_append(crc, &s[8..]);
        let mut descriptors = Vec::new();
        let mut raw = s[64..].to_vec();
        for k in 1..ds {
            self.sector(pos + k * SECTOR as u64, &mut s)?;
            crc = crc32c::crc32c_append(crc, &s);
            raw.extend_from_slice(&s);
            // Decode as we go so that `raw` stays small.
            let whole = raw.len() / 32;
            for d in raw.chunks_exact(32).take(whole) {
                if descriptors.len() as u32 == h.descriptor_count {
                    break;
                }
                match Descriptor::decode(d, h.sequence) {
                    Some(d) => descriptors.push(d),
                    None => return Ok(None),
                }
            }
            raw.drain(..whole * 32);
        }
        for d in raw.chunks_exact(32) {
            if descriptors.len() as u32 == h.descriptor_count {
                break;
            }
            match Descriptor::decode(d, h.sequence) {
                Some(d) => descriptors.push(d),
                None => return Ok(None),
            }
        }
        let data = descriptors
            .iter()
            .filter(|d| matches!(d, Descriptor::Data { .. }))
            .count() as u64;
        if ds + data > sectors || descriptors.len() as u32 != h.descriptor_count {
            return Ok(None);
        }
        let mut di = descriptors
            .iter()
            .filter(|d| matches!(d, Descriptor::Data { .. }));
        for k in ds..sectors {
            self.sector(pos + k * SECTOR as u64, &mut s)?;
            crc = crc32c::crc32c_append(crc, &s);
            if let Some(d) = di.next() {
                if data_sector_bytes(d, &s, h.sequence).is_none() {
                    return Ok(None);
                }
            }
        }
        if crc != h.checksum {
            return Ok(None);
        }
        Ok(Some(Entry {
            header: h,
            descriptors,
            start: pos,
        }))
    }

    /// The active sequence: the run of consecutive valid entries ending in
    /// the highest sequence number, from the entry its newest entry's tail
    /// names (empty when the log holds none).
    pub fn active_sequence(&self) -> Result<Vec<Entry>> {
        let mut best: Vec<Entry> = Vec::new();
        let mut pos = 0;
        while pos < self.log.length {
            let Some(first) = self.entry_at(pos)? else {
                pos += SECTOR as u64;
                continue;
            };
            let mut run = vec![first];
            let mut next = pos + u64::from(run[0].header.entry_length);
            // A run never covers more than the whole log.
            let mut covered = u64::from(run[0].header.entry_length);
            while covered < self.log.length {
                let Some(e) = self.entry_at(next % self.log.length)? else {
                    break;
                };
                let last = run.last().expect("non-empty").header.sequence;
                if e.header.sequence != last.wrapping_add(1) {
                    break;
                }
                covered += u64::from(e.header.entry_length);
                next += u64::from(e.header.entry_length);
                run.push(e);
            }
            let top = run.last().expect("non-empty").header.sequence;
            // The run ending highest; of two ending alike (one found from
            // inside the other), the longer.
            if best.last().is_none_or(|b| {
                top > b.header.sequence || (top == b.header.sequence && run.len() > best.len())
            }) {
                best = run;
            }
            // The search goes on past the run (as QEMU's does).
            pos += covered;
        }
        // The newest entry's tail names the first entry still to replay:
        // those before it were applied already.
        if let Some(tail) = best.last().map(|e| u64::from(e.header.tail)) {
            if let Some(k) = best.iter().position(|e| e.start == tail) {
                best.drain(..k);
            }
        }
        Ok(best)
    }

    /// The 4 KiB data of the `k`-th data descriptor of `e`.
    fn data_of(&self, e: &Entry, k: u64, d: &Descriptor) -> Result<Vec<u8>> {
        let ds = descriptor_sectors(u64::from(e.header.descriptor_count));
        let mut s = vec![0u8; SECTOR];
        self.sector(e.start + (ds + k) * SECTOR as u64, &mut s)?;
        data_sector_bytes(d, &s, e.header.sequence)
            .ok_or_else(|| BlockError::corrupt("open", "VHDX log data sector changed"))
    }
}

/// Replays `entries` (an active sequence) into `file`, then empties the
/// log in `headers`. Descriptors must not write into the log itself.
pub fn replay(
    file: &dyn BlockNode,
    headers: &mut Headers,
    log: Region,
    entries: &[Entry],
) -> Result<()> {
    let reader = LogReader::new(file, log, headers.current().log_guid);
    let bad = |m: String| BlockError::corrupt("open", m).at(log.offset);
    for e in entries {
        let file_len = file.length()?;
        if e.header.flushed_file_offset > file_len {
            return Err(bad(format!(
                "VHDX log entry {} needs a file of {} bytes, the file has {file_len}: it was truncated",
                e.header.sequence, e.header.flushed_file_offset
            )));
        }
        if e.header.last_file_offset > MAX_FILE_SIZE {
            return Err(bad(format!(
                "VHDX log entry {} needs a file of {} bytes",
                e.header.sequence, e.header.last_file_offset
            )));
        }
        let limit = file_len.max(e.header.last_file_offset);
        let mut k = 0;
        for d in &e.descriptors {
            let (at, len) = d.range();
            let end = at.checked_add(len).filter(|&end| end <= limit);
            if end.is_none() || (at < log.end() && log.offset < at + len) {
                return Err(bad(format!(
                    "VHDX log entry {} writes {len} bytes at {at}, outside the file or into the log",
                    e.header.sequence
                )));
            }
            match d {
                Descriptor::Data { .. } => {
                    let data = reader.data_of(e, k, d)?;
                    k += 1;
                    file.write_at(at, &data)?;
                }
                Descriptor::Zero { .. } => match file.write_zeroes(at, len, ZeroFlags::NONE) {
                    Err(err) if err.kind == ErrorKind::Unsupported => write_zeros(file, at, len)?,
                    r => r?,
                },
            }
        }
        if file.length()? < e.header.last_file_offset {
            let to = e.header.last_file_offset.div_ceil(MIB) * MIB;
            file.truncate(to, Preallocation::Off)?;
        }
    }
    file.flush()?;
    let mut h = headers.current();
    h.log_guid = Guid::ZERO;
    headers.update(file, h)?;
    log::info!(
        "vhdx: replayed {} log entries (last sequence number {})",
        entries.len(),
        entries.last().map_or(0, |e| e.header.sequence)
    );
    Ok(())
}

/// Writes `len` zero bytes at `at`, a MiB at a time.
fn write_zeros(file: &dyn BlockNode, at: u64, len: u64) -> Result<()> {
    let chunk = vec![0u8; MIB as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(MIB);
        file.write_at(at + done, &chunk[..n as usize])?;
        done += n;
    }
    Ok(())
}
