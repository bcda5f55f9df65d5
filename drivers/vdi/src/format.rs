//! The format on the shared engine: [`VdiFormat`] answers the engine's
//! questions (where does a guest range live, where does a new block go,
//! link it in), and `block_core::engine::FormatNode` does the I/O around
//! them: bounds and read-only gates, vectored I/O merged over contiguous
//! blocks, copy-on-write fill of partly written blocks, serialised
//! allocation, zeroing and discard splitting, FUA and block status.

use crate::header::{is_allocated, Header, BLOCKS_ALLOCATED_AT, ENDIAN};
use crate::map::Metadata;
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::block_table::write_u32_entries;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{
    BlockError, BlockNode, BlockNodeExt, ErrorKind, NodeInfo, Preallocation, Result, ZeroFlags,
};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open VDI image as the generic node the host gets.
pub type VdiNode = FormatNode<VdiFormat>;

/// The format of one open image over its `file` child.
///
/// The metadata is behind one lock: mapping holds it shared; linking a
/// block and re-reading the metadata hold it exclusively. The engine never
/// lets two writes allocate the same block at once.
pub struct VdiFormat {
    file: Arc<dyn BlockNode>,
    filename: String,
    meta: RwLock<Metadata>,
}

impl std::fmt::Debug for VdiFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VdiFormat")
            .field("filename", &self.filename)
            .field("blocks", &self.meta().header.blocks_in_image)
            .finish()
    }
}

impl VdiFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`.
    pub fn open(file: Arc<dyn BlockNode>, filename: String) -> Result<VdiFormat> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        Ok(VdiFormat {
            file,
            filename,
            meta: RwLock::new(meta),
        })
    }

    /// The image file.
    pub fn file(&self) -> &Arc<dyn BlockNode> {
        &self.file
    }

    /// Shared access to the metadata.
    pub fn meta(&self) -> RwLockReadGuard<'_, Metadata> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to the metadata.
    pub(crate) fn meta_mut(&self) -> RwLockWriteGuard<'_, Metadata> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Metadata::block_offset`] with the image's name on errors.
    fn block_offset(&self, m: &Metadata, op: &'static str, index: u64) -> Result<Option<u64>> {
        m.block_offset(op, index)
            .map_err(|e| e.in_file(&self.filename))
    }

    /// Writes the blocks-allocated count of `h` into the header.
    pub(crate) fn write_allocated_count(&self, h: &Header) -> Result<()> {
        self.file
            .write_at(BLOCKS_ALLOCATED_AT, &h.blocks_allocated.to_le_bytes())
    }
}

impl Format for VdiFormat {
    fn size(&self) -> u64 {
        self.meta().header.disk_size
    }

    /// The block size: the engine allocates, zeroes and discards in blocks.
    fn allocation_unit(&self) -> u64 {
        self.meta().header.block()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// One block at most: its data in the file, or zeros (unallocated, or
    /// the map's zero marker, which is stored state).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let bs = m.header.block();
        let in_block = offset % bs;
        let len = len.min(bs - in_block);
        let index = offset / bs;
        Ok(match self.block_offset(&m, "read", index)? {
            None if m.map[index as usize] == crate::header::ZERO => Mapping::Zero {
                len,
                allocated: true,
                host: None,
            },
            None => Mapping::Unallocated { len, host: None },
            Some(at) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + in_block,
                len,
                writable: true,
            },
        })
    }

    /// Numbers the blocks from `offset` on that hold no data (as many of
    /// the `len` bytes' blocks as are in a row) as the next data blocks.
    /// Nothing on disk changes yet.
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let m = self.meta();
        let bs = m.header.block();
        let first = offset / bs;
        let last = (offset + len).div_ceil(bs).min(m.map.len() as u64);
        let blocks = (first..last)
            .take_while(|&i| !is_allocated(m.map[i as usize]))
            .count() as u64;
        if blocks == 0 {
            return Err(BlockError::corrupt(
                "write",
                format!("block {first} to allocate is allocated"),
            )
            .in_file(&self.filename));
        }
        let space = m.alloc.allocate(blocks * bs)?;
        Ok(Allocation {
            guest_offset: offset,
            len: (blocks * bs).min(m.header.disk_size - offset),
            child: ChildRef::FILE,
            host_offset: u64::from(m.header.offset_data) + space.offset,
            // Whole blocks are written (guest data and zero fill, up to
            // the disk's end), as QEMU writes them.
            granule: blocks * bs,
            reused: false,
        })
    }

    /// Links the blocks of `a` into the map, then counts them in the header.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        // The last block of a disk that ends inside it is written only to
        // the disk's end: the file still holds the whole block, as in
        // images QEMU writes.
        let end = a.host_offset + a.granule;
        if self.file.length()? < end {
            self.file.truncate(end, Preallocation::Off)?;
        }
        // Crash order: the blocks' data is durable before the entries
        // naming them; a crash leaves at worst an unnamed block, which the
        // next allocation reuses.
        self.file.flush()?;
        let mut m = self.meta_mut();
        let bs = m.header.block();
        let first = (a.guest_offset / bs) as usize;
        let blocks = a.len.div_ceil(bs) as usize;
        // The allocator's limit keeps block numbers below blocks_in_image.
        let number = ((a.host_offset - u64::from(m.header.offset_data)) / bs) as u32;
        let entries: Vec<u32> = (0..blocks as u32).map(|k| number + k).collect();
        let at = u64::from(m.header.offset_bmap);
        write_u32_entries(&*self.file, at, ENDIAN, &mut m.map, first, &entries)?;
        let mut h = m.header;
        h.blocks_allocated = h.blocks_allocated.saturating_add(blocks as u32);
        self.write_allocated_count(&h)?;
        m.header = h;
        Ok(())
    }

    /// The data write failed: give the blocks back if they are still last.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        let bs = m.header.block();
        let offset = a.host_offset - u64::from(m.header.offset_data);
        let len = a.len.div_ceil(bs) * bs;
        m.alloc.undo(&AppendAllocation {
            offset,
            len,
            index: offset / bs,
            trailer_offset: offset + len,
        });
    }

    /// A block without data already reads as zeros; a block with data is
    /// zeroed in the file (a hole where the file can make one). The map
    /// keeps its entry: the format frees no blocks.
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let m = self.meta();
        let bs = m.header.block();
        if let Some(at) = self.block_offset(&m, "write_zeroes", offset / bs)? {
            let flags = if unmap {
                ZeroFlags::MAY_UNMAP
            } else {
                ZeroFlags::NONE
            };
            match self.file.write_zeroes(at + offset % bs, len, flags) {
                Err(e) if e.kind == ErrorKind::Unsupported => return Ok(false),
                r => r?,
            }
        }
        Ok(true)
    }

    // Discard keeps every block and its data (the trait's default: nothing
    // done), as QEMU's vdi driver does: the format frees no blocks, and
    // guest reads stay what they were.

    /// Another process may have changed the image (a migration handoff):
    /// read the header and the map again.
    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| e.in_file(&self.filename))?;
        *self.meta_mut() = fresh;
        Ok(())
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// As `qemu-img info` shows a vdi image: the cluster size is the block
    /// size, and there is no format-specific section.
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.header.disk_size,
            cluster_size: Some(m.header.block()),
            ..NodeInfo::default()
        })
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}
