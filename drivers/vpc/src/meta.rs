//! The metadata of an open image: its footer and, for a dynamic image, the
//! dynamic header, the BAT held in memory and the append allocator that
//! places new blocks (each a sector bitmap followed by the data) where the
//! trailing footer copy is.
//!
//! BAT entry `i` describes guest block `i`: [`UNALLOCATED`] reads as zeros
//! (dynamic images have no backing file), any other value `n` means the
//! block's bitmap starts at sector `n` and its data follows the bitmap.

use crate::dyn_header::{DynHeader, DYN_HEADER_SIZE, MAX_BAT_BYTES, UNALLOCATED};
use crate::footer::{Footer, SizeCalc, ENDIAN, FOOTER_SIZE};
use block_core::engine::append_alloc::AppendAllocator;
use block_core::engine::block_table::{read_u32_table, u32_table_bytes, ENTRY_SIZE};
use block_core::engine::codec::checked_end;
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};

/// The end of the file space a BAT entry (a u32 sector number) can name.
pub const FILE_LIMIT: u64 = u32::MAX as u64 * FOOTER_SIZE;

/// A dynamic image's allocation metadata.
#[derive(Debug)]
pub struct Dynamic {
    /// The dynamic header.
    pub header: DynHeader,
    /// The BAT entries (sector numbers of each block's bitmap).
    pub bat: Vec<u32>,
    /// Where new blocks go: at the trailing footer's place.
    pub alloc: AppendAllocator,
}

/// The footer and, for dynamic images, the allocation metadata.
#[derive(Debug)]
pub struct Metadata {
    /// The footer as read (written back unchanged as the trailing copy).
    pub footer: Footer,
    /// The guest-visible size in bytes.
    pub size: u64,
    /// `None` for a fixed image.
    pub dynamic: Option<Dynamic>,
}

/// Serialises BAT entries.
pub fn bat_bytes(entries: &[u32]) -> Vec<u8> {
    u32_table_bytes(entries, ENDIAN)
}

/// True when `[a, a+alen)` and `[b, b+blen)` share a byte.
fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

impl Dynamic {
    /// The file offset of guest block `index`'s data, `None` when the block
    /// is unallocated. (Every entry was placed at open.)
    pub fn block_offset(&self, index: u64) -> Option<u64> {
        let e = *self.bat.get(index as usize)?;
        (e != UNALLOCATED).then(|| u64::from(e) * FOOTER_SIZE + self.header.bitmap_size())
    }

    /// The length of one block in the file: bitmap and data.
    pub fn stride(&self) -> u64 {
        self.header.bitmap_size() + self.header.block()
    }

    /// Guest blocks with data.
    pub fn allocated_blocks(&self) -> u64 {
        self.bat.iter().filter(|&&e| e != UNALLOCATED).count() as u64
    }
}

impl Metadata {
    /// Reads and checks the footer (at offset 0, else at the end of the
    /// file), then for a dynamic image the header and the BAT. Every size
    /// and offset is bounded before it is used; `calc` says how the size
    /// is read from the footer.
    pub fn load(file: &dyn BlockNode, calc: SizeCalc) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < FOOTER_SIZE {
            return Err(BlockError::corrupt(
                "open",
                format!("invalid VPC image: the file ({file_len} bytes) is shorter than a footer"),
            ));
        }
        let mut b = [0u8; FOOTER_SIZE as usize];
        file.read_at(0, &mut b)?;
        if !Footer::has_magic(&b) {
            file.read_at(file_len - FOOTER_SIZE, &mut b)?;
        }
        let footer = Footer::decode(&b)?;
        let size = footer.disk_size(calc)?;
        if !footer.is_dynamic() {
            if size > file_len - FOOTER_SIZE {
                return Err(BlockError::corrupt(
                    "open",
                    format!("fixed image of {size} bytes in a file of {file_len} bytes: truncated"),
                ));
            }
            return Ok(Metadata {
                footer,
                size,
                dynamic: None,
            });
        }
        let dynamic = Self::load_dynamic(file, &footer, size, file_len)?;
        Ok(Metadata {
            footer,
            size,
            dynamic: Some(dynamic),
        })
    }

    fn load_dynamic(
        file: &dyn BlockNode,
        footer: &Footer,
        size: u64,
        file_len: u64,
    ) -> Result<Dynamic> {
        let at = footer.fields.data_offset;
        let end = checked_end("open", "dynamic header", at, DYN_HEADER_SIZE)?;
        if end > file_len || at < FOOTER_SIZE {
            return Err(BlockError::corrupt("open", "dynamic header outside the file").at(at));
        }
        let mut hb = [0u8; DYN_HEADER_SIZE as usize];
        file.read_at(at, &mut hb)?;
        let header = DynHeader::decode(&hb)?;
        header.check_bat(size, file_len)?;
        let bat = read_u32_table(
            file,
            "open",
            "BAT",
            header.table_offset,
            u64::from(header.max_table_entries),
            ENDIAN,
            MAX_BAT_BYTES,
        )?;
        let bytes = bat.len() as u64 * ENTRY_SIZE;
        let bat_end = (header.table_offset + bytes).div_ceil(FOOTER_SIZE) * FOOTER_SIZE;
        let stride = header.bitmap_size() + header.block();
        let mut free = bat_end;
        for (i, &e) in bat.iter().enumerate() {
            if e == UNALLOCATED {
                continue;
            }
            let start = u64::from(e) * FOOTER_SIZE;
            let bad = |what: &str| {
                Err(
                    BlockError::corrupt("open", format!("BAT entry {i} (sector {e}) {what}"))
                        .at(start),
                )
            };
            if overlaps(start, stride, 0, FOOTER_SIZE)
                || overlaps(start, stride, at, DYN_HEADER_SIZE)
                || overlaps(start, stride, header.table_offset, bytes as u64)
            {
                return bad("overlaps the image's metadata");
            }
            free = free.max(start + stride);
        }
        if free > file_len {
            return Err(BlockError::corrupt(
                "open",
                format!("blocks end at {free}, past the end of the file ({file_len} bytes): the image has been truncated"),
            ));
        }
        let alloc = AppendAllocator::new(free, 0, FOOTER_SIZE, FILE_LIMIT)?;
        Ok(Dynamic { header, bat, alloc })
    }
}
