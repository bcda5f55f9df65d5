//! Metadata updates through the log, in QEMU's order: the data the update
//! names is already durable; the headers get a log GUID (when the log is
//! empty); the entry is written at the start of the (empty) log and
//! flushed; its sectors are written in place and flushed; the headers'
//! log GUID is cleared again. A crash before the entry is durable leaves
//! the old metadata; a crash after it leaves an entry the next read-write
//! open replays ([`crate::log_replay`]).

use crate::guid::Guid;
use crate::header::Headers;
use crate::log::{encode_entry, SECTOR};
use crate::region::Region;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// Where an update stops: normally after the whole sequence; tests stop it
/// after the entry is durable to leave a dirty log behind, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// Write, apply and empty the log.
    Done,
    /// Stop once the entry is durable (the log stays dirty).
    AfterEntry,
}

/// The log of an open image and its next sequence number.
#[derive(Debug, Clone, Copy)]
pub struct LogWriter {
    /// The log region.
    pub log: Region,
    /// Sequence number of the next entry.
    pub sequence: u64,
}

impl LogWriter {
    /// Writes the 4 KiB sectors `writes` through the log (see the module
    /// documentation).
    pub fn write(
        &mut self,
        file: &dyn BlockNode,
        headers: &mut Headers,
        writes: &[(u64, &[u8])],
        stop: StopAt,
    ) -> Result<()> {
        let total =
            (crate::log::descriptor_sectors(writes.len() as u64) as usize + writes.len()) * SECTOR;
        if total as u64 > self.log.length {
            return Err(BlockError::invalid(
                "write",
                format!(
                    "a {total}-byte log entry does not fit the {}-byte log",
                    self.log.length
                ),
            ));
        }
        let mut h = headers.current();
        if h.log_guid.is_zero() {
            h.log_guid = Guid::random();
            headers.update(file, h)?;
        }
        self.sequence = self.sequence.max(1);
        let entry = encode_entry(self.sequence, h.log_guid, file.length()?, writes)?;
        file.write_at(self.log.offset, &entry)?;
        file.flush()?;
        self.sequence += 1;
        if stop == StopAt::AfterEntry {
            return Ok(());
        }
        for &(at, data) in writes {
            file.write_at(at, data)?;
        }
        file.flush()?;
        h.log_guid = Guid::ZERO;
        headers.update(file, h)
    }
}
