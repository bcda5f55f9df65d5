//! The open image's metadata: the header, the L1 table held in memory, the
//! backing file name, and the append allocator that places new clusters
//! and L2 tables at the end of the file.
//!
//! Guest cluster `c` is described by entry `c % E` of the L2 table that L1
//! entry `c / E` names (`E` entries per table). An L1 entry of 0 means no
//! L2 table (every cluster of its range unallocated); an L2 entry of 0
//! means unallocated (read from the backing file, zeros without one), 1
//! ([`ZERO_CLUSTER`]) reads as zeros, anything else is the cluster's file
//! offset. Offsets must be cluster-aligned, after the header area and
//! inside the file.

use crate::header::{Header, ENDIAN, F_BACKING_FILE, F_BACKING_FORMAT_NO_PROBE, HEADER_LEN};
use crate::header::{MAX_TABLE_BYTES, ZERO_CLUSTER};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::codec::read_u64_table;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// File offsets must fit an `i64` (the file protocol's limit).
pub const MAX_FILE_OFFSET: u64 = i64::MAX as u64;

/// What one L2 entry says about its guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Not allocated here.
    Unallocated,
    /// Reads as zeros.
    Zero,
    /// Data at this file offset.
    Data(u64),
}

/// The header, L1 table, backing name and allocator of one open image.
#[derive(Debug)]
pub struct Metadata {
    /// The header as last read or written.
    pub header: Header,
    /// The L1 entries.
    pub l1: Vec<u64>,
    /// The backing file name, when the image has one.
    pub backing_name: Option<String>,
    /// Where new clusters and tables go: cluster-aligned, at the end.
    pub alloc: AppendAllocator,
}

impl Metadata {
    /// Reads and checks the header of `file`, then the backing name and
    /// the L1 table it names (bounded and placed inside the file before a
    /// buffer for it is allocated).
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < HEADER_LEN as u64 {
            return Err(BlockError::corrupt(
                "open",
                format!("the file ({file_len} bytes) is shorter than the QED header"),
            ));
        }
        let mut b = [0u8; HEADER_LEN];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        header.check_l1(file_len)?;
        let backing_name = if header.features & F_BACKING_FILE != 0 {
            let mut name = vec![0u8; header.backing_filename_size as usize];
            file.read_at(u64::from(header.backing_filename_offset), &mut name)?;
            Some(String::from_utf8_lossy(&name).into_owned())
        } else {
            None
        };
        let l1 = read_u64_table(
            file,
            "open",
            "L1 table",
            header.l1_table_offset,
            header.entries(),
            ENDIAN,
            MAX_TABLE_BYTES,
        )?;
        let cs = header.cluster();
        let alloc = AppendAllocator::new(file_len, header.data_start(), cs, MAX_FILE_OFFSET)?;
        Ok(Metadata {
            header,
            l1,
            backing_name,
            alloc,
        })
    }

    /// The backing file's format when the header fixes it (raw), `None`
    /// when it is probed.
    pub fn backing_format(&self) -> Option<String> {
        (self.header.features & F_BACKING_FORMAT_NO_PROBE != 0).then(|| "raw".to_string())
    }

    /// True when `off` may name a cluster: aligned, after the header area,
    /// outside the L1 table, before the end of the file.
    pub fn valid_cluster(&self, off: u64) -> bool {
        let h = &self.header;
        let l1 = h.l1_table_offset..h.l1_table_offset + h.table_bytes();
        off.is_multiple_of(h.cluster())
            && off >= h.data_start()
            && !l1.contains(&off)
            && off < self.alloc.end()
    }

    /// True when `off` may name an L2 table (all of it inside the file).
    pub fn valid_table(&self, off: u64) -> bool {
        let last = off.checked_add(self.header.table_bytes() - self.header.cluster());
        self.valid_cluster(off) && last.is_some_and(|l| self.valid_cluster(l))
    }

    /// The L1 index and L2 index of guest cluster `c`.
    pub fn indices(&self, c: u64) -> (usize, usize) {
        let e = self.header.entries();
        ((c / e) as usize, (c % e) as usize)
    }

    /// The L2 table offset of L1 entry `i` (`None`: no table); an invalid
    /// one is a corruption error.
    pub fn l2_offset(&self, op: &'static str, i: usize) -> Result<Option<u64>> {
        match self.l1[i] {
            0 => Ok(None),
            off if self.valid_table(off) => Ok(Some(off)),
            off => Err(BlockError::corrupt(
                op,
                format!("L1 entry {i} names an invalid L2 table offset {off:#x}"),
            )),
        }
    }

    /// Decodes L2 entry `e` of guest cluster `c`; an invalid offset is a
    /// corruption error (guest I/O never lands on metadata or past the end).
    pub fn cluster(&self, op: &'static str, c: u64, e: u64) -> Result<Cluster> {
        match e {
            0 => Ok(Cluster::Unallocated),
            ZERO_CLUSTER => Ok(Cluster::Zero),
            off if self.valid_cluster(off) => Ok(Cluster::Data(off)),
            off => Err(BlockError::corrupt(
                op,
                format!("L2 entry of cluster {c} names an invalid offset {off:#x}"),
            )
            .at(c * self.header.cluster())),
        }
    }
}
