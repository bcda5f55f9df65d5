//! The open image's metadata: the header, the block map held in memory,
//! and the append allocator that numbers new data blocks.
//!
//! Map entry `i` describes guest block `i` (guest bytes
//! `[i * 1 MiB, (i + 1) * 1 MiB)`): [`UNALLOCATED`] and [`ZERO`] read as
//! zeros, any other value `n` is a data block number, the block's data at
//! `data offset + n * 1 MiB`. Block numbers are below the number of blocks
//! in the image, so data never lands on the header or the map.
//!
//! The allocator works on offsets relative to the data area (block `n` at
//! `n * 1 MiB`), so that blocks stay at the format's block numbers even
//! though the data area itself need not start on a block boundary.

use crate::header::{is_allocated, Header, ENDIAN, HEADER_SIZE, MAX_MAP_BYTES, UNALLOCATED, ZERO};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::block_table::{read_u32_table, u32_table_bytes};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// The header, the block map and the allocator of one open image.
#[derive(Debug)]
pub struct Metadata {
    /// The header as last read or written.
    pub header: Header,
    /// The block map entries, one per guest block.
    pub map: Vec<u32>,
    /// Where new blocks go, relative to the data offset.
    pub alloc: AppendAllocator,
}

/// Serialises block map entries.
pub fn map_bytes(entries: &[u32]) -> Vec<u8> {
    u32_table_bytes(entries, ENDIAN)
}

/// The allocator for `h` and `map`: the next block number is past every
/// block the map names and past the header's count of allocated blocks
/// (capped at the blocks in the image: a damaged count must not stop the
/// image from opening). Like QEMU, a block written but never linked (a
/// crash before its map entry) is reused.
pub fn allocator(h: &Header, map: &[u32]) -> Result<AppendAllocator> {
    let named = map
        .iter()
        .filter(|&&e| e < h.blocks_in_image)
        .map(|&e| e + 1)
        .max()
        .unwrap_or(0);
    let next = named.max(h.blocks_allocated.min(h.blocks_in_image));
    let bs = h.block();
    AppendAllocator::new(
        u64::from(next) * bs,
        0,
        bs,
        u64::from(h.blocks_in_image) * bs,
    )
}

impl Metadata {
    /// Reads and checks the header of `file`, then the block map it names.
    /// The map's size comes from the (untrusted) header: it is bounded and
    /// placed inside the file before the buffer for it is allocated.
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < HEADER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("the file ({file_len} bytes) is shorter than the VDI header"),
            ));
        }
        let mut b = [0u8; HEADER_SIZE as usize];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        header.check_map(file_len)?;
        let map = read_u32_table(
            file,
            "open",
            "block map",
            u64::from(header.offset_bmap),
            u64::from(header.blocks_in_image),
            ENDIAN,
            MAX_MAP_BYTES,
        )?;
        let alloc = allocator(&header, &map)?;
        Ok(Metadata { header, map, alloc })
    }

    /// The file offset of guest block `index`'s data, `None` when the block
    /// reads as zeros. An entry that is neither a marker nor a block number
    /// of the image is a corruption error: guest I/O must never land on
    /// metadata, whatever the image says.
    pub fn block_offset(&self, op: &'static str, index: u64) -> Result<Option<u64>> {
        let entry = self.map[index as usize];
        if entry == UNALLOCATED || entry == ZERO {
            return Ok(None);
        }
        let h = &self.header;
        if !is_allocated(entry) || entry >= h.blocks_in_image {
            return Err(BlockError::corrupt(
                op,
                format!(
                    "block map entry {index} names block {entry}, past the {} blocks of the image",
                    h.blocks_in_image
                ),
            )
            .at(index * h.block()));
        }
        Ok(Some(h.block_at(entry)))
    }

    /// Guest blocks with data.
    pub fn allocated_blocks(&self) -> u64 {
        self.map.iter().filter(|&&e| is_allocated(e)).count() as u64
    }
}
