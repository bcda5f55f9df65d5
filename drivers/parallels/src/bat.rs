//! The open image's metadata: the header, the block allocation table (BAT)
//! held in memory, and the append allocator that places new clusters at
//! the end of the file.
//!
//! BAT entry `i` describes guest cluster `i` (guest bytes
//! `[i * cluster, (i + 1) * cluster)`): `0` means unallocated (the cluster
//! reads as zeros), any other value `n` means the cluster's data is at file
//! offset `n * unit`, where the unit is a cluster for images with the
//! "WithouFreSpacExt" magic and a sector for "WithoutFreeSpace" ones.

use crate::header::{Header, ENDIAN, HEADER_SIZE, MAX_BAT_BYTES};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::block_table::{read_u32_table, u32_table_bytes};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// The header, the BAT and the allocator of one open image.
#[derive(Debug)]
pub struct Metadata {
    /// The header as last read or written.
    pub header: Header,
    /// The BAT entries, one per guest cluster.
    pub bat: Vec<u32>,
    /// Where new clusters go: aligned to the entry unit, at the end of the
    /// file and never before the data area.
    pub alloc: AppendAllocator,
}

/// The end of the file space an entry can name: entries are u32 counts of
/// `unit` bytes, and file offsets fit an `i64`.
pub fn file_limit(unit: u64) -> u64 {
    ((u64::from(u32::MAX) + 1) * unit).min(i64::MAX as u64)
}

/// Serialises BAT entries.
pub fn bat_bytes(entries: &[u32]) -> Vec<u8> {
    u32_table_bytes(entries, ENDIAN)
}

/// A new allocator for an image of `header` in a file of `file_len` bytes.
pub fn allocator(header: &Header, file_len: u64) -> Result<AppendAllocator> {
    let unit = header.entry_unit();
    AppendAllocator::new(file_len, header.data_start(), unit, file_limit(unit))
}

impl Metadata {
    /// Reads and checks the header of `file`, then the BAT it names. The
    /// BAT's size comes from the (untrusted) header: it is bounded and
    /// placed inside the file before the buffer for it is allocated.
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < HEADER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("the file ({file_len} bytes) is shorter than the parallels header"),
            ));
        }
        let mut b = [0u8; HEADER_SIZE as usize];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        header.check_layout(file_len)?;
        let bat = read_u32_table(
            file,
            "open",
            "BAT",
            HEADER_SIZE,
            u64::from(header.bat_entries),
            ENDIAN,
            MAX_BAT_BYTES,
        )?;
        let alloc = allocator(&header, file_len)?;
        Ok(Metadata { header, bat, alloc })
    }

    /// Where entry `entry` points in the file.
    pub fn entry_offset(&self, entry: u32) -> u64 {
        u64::from(entry) * self.header.entry_unit()
    }

    /// The file offset of guest cluster `index`'s data, `None` when the
    /// cluster is unallocated. An entry naming the header, the BAT or a
    /// cluster past the end of the file is a corruption error: guest writes
    /// must never land on metadata, whatever the image says.
    pub fn cluster_offset(&self, op: &'static str, index: u64) -> Result<Option<u64>> {
        let entry = self.bat[index as usize];
        if entry == 0 {
            return Ok(None);
        }
        let at = self.entry_offset(entry);
        let cluster = self.header.cluster();
        let bad = |what: &str| {
            Err(
                BlockError::corrupt(op, format!("BAT entry {index} (offset {at:#x}) {what}"))
                    .at(index * cluster),
            )
        };
        if at < self.header.data_start() {
            return bad("lies before the data area");
        }
        if at + cluster > self.alloc.end() {
            return bad("lies past the end of the file");
        }
        Ok(Some(at))
    }

    /// Guest clusters with data.
    pub fn allocated_clusters(&self) -> u64 {
        self.bat.iter().filter(|&&e| e != 0).count() as u64
    }
}
