//! The open image's metadata: the header, the block allocation table (BAT)
//! held in memory, and the append allocator that places new blocks at the
//! end of the file.
//!
//! BAT entry `i` describes guest block `i` (guest bytes
//! `[i * block_size, (i + 1) * block_size)`): `0` means unallocated (the
//! block reads as zeros: this format has no backing file; a format with
//! one would read the backing file there), any other value `n` means the
//! block's data is at file offset `n * block_size`. Block 0 of the file
//! holds the header, so no data block is ever numbered 0.

use crate::header::{Header, ENDIAN, HEADER_SIZE, MAX_BAT_BYTES, MAX_FILE_OFFSET};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::block_table::{read_u32_table, u32_table_bytes};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// The header, the BAT and the allocator of one open image.
#[derive(Debug)]
pub struct Metadata {
    /// The header as last read or written.
    pub header: Header,
    /// The BAT entries, one per guest block.
    pub bat: Vec<u32>,
    /// Where new blocks go: block-aligned, at the end of the file.
    pub alloc: AppendAllocator,
}

/// The end of the file space a block number can name: entries are u32
/// block numbers, and file offsets fit an `i64`.
pub fn file_limit(block_size: u64) -> u64 {
    ((u64::from(u32::MAX) + 1) * block_size).min(MAX_FILE_OFFSET)
}

/// Serialises BAT entries.
pub fn bat_bytes(entries: &[u32]) -> Vec<u8> {
    u32_table_bytes(entries, ENDIAN)
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
                format!("the file ({file_len} bytes) is shorter than the header"),
            ));
        }
        let mut b = [0u8; HEADER_SIZE as usize];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        header.check_bat(file_len)?;
        let bat = read_u32_table(
            file,
            "open",
            "BAT",
            header.bat_offset,
            u64::from(header.bat_entries),
            ENDIAN,
            MAX_BAT_BYTES,
        )?;
        // New blocks go after everything in the file, never into the
        // space reserved for the BAT.
        let end = file_len.max(header.bat_reserved_end());
        let bs = header.block();
        let alloc = AppendAllocator::new(end, 0, bs, file_limit(bs))?;
        Ok(Metadata { header, bat, alloc })
    }

    /// The file offset of guest block `index`'s data, `None` when the block
    /// is unallocated. An entry naming the header, the BAT or a block past
    /// the end of the file is a corruption error: guest writes must never
    /// land on metadata, whatever the image says.
    pub fn block_offset(&self, op: &'static str, index: u64) -> Result<Option<u64>> {
        let entry = self.bat[index as usize];
        if entry == 0 {
            return Ok(None);
        }
        let bs = self.header.block();
        let at = u64::from(entry) * bs;
        let h = &self.header;
        let bad = |what: &str| {
            Err(
                BlockError::corrupt(op, format!("BAT entry {index} (block {entry}) {what}"))
                    .at(index * bs),
            )
        };
        if at < h.bat_reserved_end() && h.bat_offset < at + bs {
            return bad("overlaps the BAT");
        }
        if at + bs > self.alloc.end() {
            return bad("lies past the end of the file");
        }
        Ok(Some(at))
    }

    /// Guest blocks with data.
    pub fn allocated_blocks(&self) -> u64 {
        self.bat.iter().filter(|&&e| e != 0).count() as u64
    }
}
