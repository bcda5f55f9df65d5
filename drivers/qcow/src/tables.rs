//! The open image's metadata: the header, the L1 table held in memory, the
//! backing file name, and the end of the file where new L2 tables and
//! clusters go.
//!
//! Guest cluster `c` is described by entry `c % E` of the L2 table that L1
//! entry `c / E` names (`E` = 2^l2_bits). An L1 entry of 0 means no L2
//! table; an L2 entry of 0 means unallocated (read from the backing file,
//! zeros without one); bit 63 marks a compressed cluster (its file offset
//! in the low 63 - cluster_bits bits, its compressed size in bytes
//! above them); anything else is a cluster's file offset (512-aligned).
//! No offset may point into the header, the backing name or the L1 table.

use crate::header::{Header, ENDIAN, HEADER_LEN};
use block_core::engine::codec::{read_u64_table, TableRules};
use block_core::{BlockError, BlockNode, BlockNodeExt, ErrorKind, Result};
use std::sync::{Mutex, MutexGuard};

/// File offsets must fit an `i64` (the file protocol's limit).
pub const MAX_FILE_OFFSET: u64 = i64::MAX as u64;
/// An L2 entry's compressed flag.
pub const COMPRESSED: u64 = 1 << 63;

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Not allocated here.
    Unallocated,
    /// Data at this file offset.
    Data(u64),
    /// Deflate-compressed: `size` bytes at file offset `offset`.
    Compressed {
        /// File offset of the compressed bytes.
        offset: u64,
        /// Their length.
        size: u64,
    },
}

/// Where the allocated part of the file ends; new space goes there,
/// aligned as QEMU aligns it (clusters and tables to the cluster size,
/// compressed clusters to the sector).
#[derive(Debug)]
pub struct EndAllocator {
    end: Mutex<u64>,
}

impl EndAllocator {
    /// An allocator for a file of `len` bytes (QEMU sees whole sectors).
    pub fn new(len: u64) -> EndAllocator {
        EndAllocator {
            end: Mutex::new(len.div_ceil(512) * 512),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.end.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current end.
    pub fn end(&self) -> u64 {
        *self.lock()
    }

    /// `len` bytes at the end, the start aligned to `align` (a power of
    /// two); the next allocation starts at least a sector later.
    pub fn allocate(&self, len: u64, align: u64) -> Result<u64> {
        let mut g = self.lock();
        let start = g.div_ceil(align) * align;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_OFFSET)
            .ok_or_else(|| {
                BlockError::new(
                    ErrorKind::NoSpace,
                    "allocate",
                    "the image file would grow past the largest file offset",
                )
            })?;
        *g = end.div_ceil(512) * 512;
        Ok(start)
    }

    /// Takes back the allocation of `len` bytes at `start` if it is still
    /// the last one.
    pub fn undo(&self, start: u64, len: u64) {
        let mut g = self.lock();
        if *g == (start + len).div_ceil(512) * 512 {
            *g = start;
        }
    }

    /// Sets the end (the file was truncated).
    pub fn reset(&self, len: u64) {
        *self.lock() = len.div_ceil(512) * 512;
    }
}

/// The header, L1 table, backing name and allocator of one open image.
#[derive(Debug)]
pub struct Metadata {
    /// The header as read.
    pub header: Header,
    /// The L1 entries.
    pub l1: Vec<u64>,
    /// The backing file name, when the image has one.
    pub backing_name: Option<String>,
    /// Where new tables and clusters go.
    pub alloc: EndAllocator,
    /// Bytes at the start of the file that hold the header and the
    /// backing name.
    pub header_end: u64,
}

fn corrupt(msg: String) -> BlockError {
    BlockError::corrupt("open", msg)
}

impl Metadata {
    /// Reads and checks the header of `file`, then the backing name and
    /// the L1 table it names (placed inside the file before a buffer for
    /// it is allocated).
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < HEADER_LEN as u64 {
            return Err(BlockError::invalid("open", "Image not in qcow format"));
        }
        let mut b = [0u8; HEADER_LEN];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        let entries = header.l1_entries();
        let rules = TableRules {
            op: "open",
            alignment: 1,
            unit: "byte",
            max_end: file_len,
        };
        rules.check(
            "L1 table",
            header.l1_table_offset,
            entries * 8,
            crate::header::MAX_L1_ENTRIES * 8,
        )?;
        let mut header_end = HEADER_LEN as u64;
        let backing_name = if header.backing_file_offset != 0 {
            let len = u64::from(header.backing_file_size);
            let end = header.backing_file_offset.checked_add(len);
            if end.is_none_or(|e| e > file_len) {
                return Err(corrupt(
                    "the backing file name lies past the end of the file".into(),
                ));
            }
            let mut name = vec![0u8; len as usize];
            file.read_at(header.backing_file_offset, &mut name)?;
            if let Some(nul) = name.iter().position(|&c| c == 0) {
                name.truncate(nul);
            }
            header_end = header_end.max(end.unwrap_or(0));
            Some(String::from_utf8_lossy(&name).into_owned())
        } else {
            None
        };
        let l1 = read_u64_table(
            file,
            "open",
            "L1 table",
            header.l1_table_offset,
            entries,
            ENDIAN,
            crate::header::MAX_L1_ENTRIES * 8,
        )?;
        Ok(Metadata {
            header,
            l1,
            backing_name: backing_name.filter(|n| !n.is_empty()),
            alloc: EndAllocator::new(file_len),
            header_end,
        })
    }

    /// True when `[off, off+len)` overlaps the header, the backing name
    /// or the L1 table (or overflows).
    pub fn overlaps_metadata(&self, off: u64, len: u64) -> bool {
        let Some(end) = off.checked_add(len).filter(|&e| e <= MAX_FILE_OFFSET) else {
            return true;
        };
        let l1 = self.header.l1_table_offset;
        let l1_end = l1 + self.l1.len() as u64 * 8;
        off < self.header_end || (off < l1_end && l1 < end)
    }

    /// The L1 index and L2 index of guest cluster `c`.
    pub fn indices(&self, c: u64) -> (usize, usize) {
        let e = self.header.l2_entries();
        ((c / e) as usize, (c % e) as usize)
    }

    /// The L2 table offset of L1 entry `i` (`None`: no table); one inside
    /// the metadata or past the end of the file is a corruption error.
    pub fn l2_offset(&self, op: &'static str, i: usize) -> Result<Option<u64>> {
        let off = *self
            .l1
            .get(i)
            .ok_or_else(|| BlockError::corrupt(op, format!("L1 index {i} is past the L1 table")))?;
        let bytes = self.header.l2_bytes();
        if off == 0 {
            return Ok(None);
        }
        if self.overlaps_metadata(off, bytes) || off + bytes > self.alloc.end() {
            return Err(BlockError::corrupt(
                op,
                format!("L1 entry {i} names an invalid L2 table offset {off:#x}"),
            ));
        }
        Ok(Some(off))
    }

    /// Decodes L2 entry `e` of guest cluster `c`; an offset inside the
    /// metadata or not sector-aligned is a corruption error (guest I/O
    /// never lands on metadata).
    pub fn cluster(&self, op: &'static str, c: u64, e: u64) -> Result<Cluster> {
        let h = &self.header;
        let cs = h.cluster();
        let bad = |what: &str| {
            BlockError::corrupt(op, format!("L2 entry of cluster {c} names {what} ({e:#x})"))
                .at(c * cs)
        };
        if e == 0 {
            return Ok(Cluster::Unallocated);
        }
        if e & COMPRESSED != 0 {
            let offset = e & h.compressed_offset_mask();
            let size = (e >> (63 - h.cluster_bits)) & (cs - 1);
            if size == 0 || self.overlaps_metadata(offset, size) {
                return Err(bad("an invalid compressed cluster"));
            }
            return Ok(Cluster::Compressed { offset, size });
        }
        if e % 512 != 0 || self.overlaps_metadata(e, cs) {
            return Err(bad("an invalid cluster offset"));
        }
        Ok(Cluster::Data(e))
    }
}
