//! An open image's metadata: the headers, the regions, the disk
//! parameters, the BAT in memory, the allocator of new blocks and the log
//! writer. Loading follows QEMU's order: headers, the log (replayed when
//! dirty and the image is writable), region table, metadata, BAT.

use crate::bat::{offset, state, Bat, FULLY_PRESENT, PARTIALLY_PRESENT};
use crate::guid::Guid;
use crate::header::{Headers, HEADER_SECTION_END, MIB};
use crate::log_replay::{replay, LogReader};
use crate::log_write::LogWriter;
use crate::metadata::DiskParams;
use crate::region::{Region, Regions};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::{BlockError, BlockNode, ErrorKind, Result};

/// The largest file the allocator grows the image to (BAT offsets have 44
/// bits of MiB; this bound is far below and far above any real image).
pub const MAX_FILE_SIZE: u64 = 1 << 50;

/// How the image is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Writes allowed (a dirty log is replayed; headers are updated).
    pub writable: bool,
    /// Opened read-only (not merely inactive): a dirty log refuses the
    /// open. An inactive image defers the replay to its activation.
    pub read_only: bool,
    /// Opened for `check`: BAT entries past the end of the file are
    /// reported by the check instead of refusing the open.
    pub check: bool,
}

/// The metadata of one open image.
#[derive(Debug)]
pub struct Image {
    /// Both headers and the current one.
    pub headers: Headers,
    /// BAT and metadata regions.
    pub regions: Regions,
    /// Block size, disk size, sector sizes.
    pub params: DiskParams,
    /// The block allocation table.
    pub bat: Bat,
    /// Where new payload blocks go (1 MiB aligned, at the end).
    pub alloc: AppendAllocator,
    /// The log and its next sequence number.
    pub log: LogWriter,
    /// The open replayed a dirty log.
    pub replayed: bool,
    /// The data write GUID was changed since the open.
    pub data_guid_changed: bool,
}

/// The problems of `bat` in a file of `file_len` bytes whose metadata
/// occupies `used` (header section, log, regions): present blocks past the
/// end of the file or over metadata. The lines are QEMU's.
pub fn bat_problems(bat: &Bat, disk_size: u64, file_len: u64, used: &[Region]) -> Vec<String> {
    let mut out = Vec::new();
    for (b, e) in bat.payload() {
        if !matches!(state(e), FULLY_PRESENT | PARTIALLY_PRESENT) {
            continue;
        }
        let (at, idx) = (offset(e), bat.index(b));
        // The last block may be stored only up to the disk's end (QEMU
        // created such fixed images).
        let len = bat.block_size.min(disk_size - b * bat.block_size);
        if at >= file_len {
            out.push(format!(
                "VHDX BAT entry {idx} start offset {at} points after end of file ({file_len}). Image has probably been truncated."
            ));
        } else if at + len > file_len {
            out.push(format!(
                "VHDX BAT entry {idx} end offset {} points after end of file ({file_len}). Image has probably been truncated.",
                at + len - 1
            ));
        } else if at < HEADER_SECTION_END
            || used
                .iter()
                .any(|r| at < r.end() && r.offset < at + bat.block_size)
        {
            out.push(format!(
                "VHDX BAT entry {idx} offset {at} overlaps image metadata"
            ));
        }
    }
    out
}

impl Image {
    /// Reads the metadata of `file`, replaying a dirty log when writable.
    /// `name` is the image's file name, for the message of a dirty log.
    pub fn load(file: &dyn BlockNode, access: Access, session: Guid, name: &str) -> Result<Image> {
        let file_len = file.length()?;
        if file_len < HEADER_SECTION_END {
            return Err(BlockError::corrupt(
                "open",
                format!("the file ({file_len} bytes) is shorter than the VHDX header section"),
            ));
        }
        let mut headers = Headers::load(file)?;
        let h = headers.current();
        h.check_log(file_len)?;
        let log = Region {
            offset: h.log_offset,
            length: u64::from(h.log_length),
        };
        let mut replayed = false;
        let mut sequence = 1;
        if !h.log_guid.is_zero() && log.length > 0 {
            let entries = LogReader::new(file, log, h.log_guid).active_sequence()?;
            if let Some(last) = entries.last() {
                sequence = last.header.sequence.wrapping_add(1).max(1);
                if !access.writable && !access.read_only {
                    log::info!("vhdx: the log is replayed when the image is activated");
                } else if !access.writable {
                    // QEMU's words, with blk's command.
                    return Err(BlockError::new(
                        ErrorKind::PermissionDenied,
                        "open",
                        format!(
                            "VHDX image file '{name}' opened read-only, but contains a log that needs to be replayed\nTo replay the log, run:\nblk check -r all '{name}'"
                        ),
                    ));
                } else {
                    replay(file, &mut headers, log, &entries)?;
                    replayed = true;
                }
            }
        }
        let file_len = file.length()?;
        let regions = Regions::load(file, log, file_len)?;
        let params = DiskParams::load(file, regions.metadata)?;
        let bat = Bat::load(file, regions.bat, &params)?;
        let used = [log, regions.bat, regions.metadata];
        if !access.check {
            if let Some(p) = bat_problems(&bat, params.disk_size, file_len, &used)
                .into_iter()
                .next()
            {
                return Err(BlockError::corrupt("open", p).at(bat.region.offset));
            }
        }
        // Past every block the BAT names (bounded: a check open accepts BAT
        // entries past the end of the file).
        let end = (bat.data_end().min(MAX_FILE_SIZE))
            .max(file_len)
            .max(HEADER_SECTION_END);
        let alloc = AppendAllocator::new(end, 0, MIB, MAX_FILE_SIZE)?;
        if access.writable {
            // A new file write GUID before the session's first write.
            let mut h = headers.current();
            h.file_write_guid = session;
            headers.update(file, h)?;
        }
        Ok(Image {
            headers,
            regions,
            params,
            bat,
            alloc,
            log: LogWriter { log, sequence },
            replayed,
            data_guid_changed: false,
        })
    }

    /// The block size.
    pub fn block_size(&self) -> u64 {
        u64::from(self.params.block_size)
    }

    /// The regions metadata occupies besides the header section.
    pub fn metadata_regions(&self) -> [Region; 3] {
        [self.log.log, self.regions.bat, self.regions.metadata]
    }
}
