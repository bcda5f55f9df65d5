//! The format on the shared engine: [`VpcFormat`] answers the engine's
//! questions (where a guest range lives, where a new block goes, linking
//! it in) and `block_core::engine::FormatNode` does the I/O.
//!
//! A fixed image maps every guest byte to the same offset of the file. A
//! dynamic image maps each block through the BAT; a new block (its bitmap,
//! then its data) goes where the trailing footer copy is, and the footer
//! moves behind it. Crash order: the data and the bitmap are written and
//! flushed, then the BAT entry, then the footer copy at the new end. A
//! crash leaves at worst a block no entry names (a leak) or a missing
//! trailing footer: the copy at offset 0 is what a dynamic image is opened
//! by.

use crate::dyn_header::DEFAULT_BLOCK_SIZE;
use crate::footer::SizeCalc;
use crate::meta::{bat_bytes, Dynamic, Metadata};
use crate::DRIVER_NAME;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, BlockNodeExt, ErrorKind, NodeInfo, Result, ZeroFlags};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open image as the generic node the host gets.
pub type VpcNode = FormatNode<VpcFormat>;

/// The format of one open image over its `file` child. The metadata is
/// behind one lock: mapping holds it shared, linking a block and re-reading
/// the metadata hold it exclusively.
pub struct VpcFormat {
    file: Arc<dyn BlockNode>,
    calc: SizeCalc,
    filename: String,
    meta: RwLock<Metadata>,
}

impl std::fmt::Debug for VpcFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpcFormat")
            .field("filename", &self.filename)
            .field("size", &self.meta().size)
            .finish()
    }
}

/// The error for a dynamic-only request on a fixed image (never reached:
/// every byte of a fixed image is mapped).
fn not_dynamic(op: &'static str) -> BlockError {
    BlockError::new(
        ErrorKind::Unsupported,
        op,
        "a fixed image allocates nothing",
    )
}

impl VpcFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`,
    /// its size read as `calc` says.
    pub fn open(file: Arc<dyn BlockNode>, filename: String, calc: SizeCalc) -> Result<VpcFormat> {
        let meta = Metadata::load(file.as_ref(), calc).map_err(|e| e.in_file(&filename))?;
        log::debug!(
            "{DRIVER_NAME}: opened {filename}: {} bytes, {}",
            meta.size,
            if meta.dynamic.is_some() {
                "dynamic"
            } else {
                "fixed"
            }
        );
        Ok(VpcFormat {
            file,
            calc,
            filename,
            meta: RwLock::new(meta),
        })
    }

    /// Shared access to the metadata.
    pub fn meta(&self) -> RwLockReadGuard<'_, Metadata> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    fn meta_mut(&self) -> RwLockWriteGuard<'_, Metadata> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the footer copy at the end of the allocated area.
    fn write_trailer(&self, m: &Metadata, d: &Dynamic) -> Result<()> {
        self.file.write_at(d.alloc.end(), &m.footer.raw)
    }

    /// The file offset of guest byte `offset`, `None` when unallocated.
    fn host_offset(m: &Metadata, offset: u64) -> Option<u64> {
        match &m.dynamic {
            None => Some(offset),
            Some(d) => {
                let bs = d.header.block();
                d.block_offset(offset / bs).map(|at| at + offset % bs)
            }
        }
    }
}

impl Format for VpcFormat {
    fn size(&self) -> u64 {
        self.meta().size
    }

    /// The block size (2 MiB for fixed images, as a unit of work only).
    fn allocation_unit(&self) -> u64 {
        (self.meta().dynamic.as_ref()).map_or(DEFAULT_BLOCK_SIZE, |d| d.header.block())
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// A fixed image: the same offset of the file. A dynamic one: one
    /// block at most, its data in the file or unallocated (zeros).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let len = match &m.dynamic {
            None => len,
            Some(d) => len.min(d.header.block() - offset % d.header.block()),
        };
        Ok(match Self::host_offset(&m, offset) {
            // Without a backing file an unallocated block is zeros this
            // image holds: block status says allocated zeros, as QEMU's.
            None => Mapping::Zero {
                len,
                allocated: true,
                host: None,
            },
            Some(host_offset) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset,
                len,
                writable: true,
            },
        })
    }

    /// A fixed image's data may be holes of the file: block status asks
    /// the file, as QEMU does.
    fn sparse_data(&self) -> bool {
        self.meta().dynamic.is_none()
    }

    /// Space for the one block at `offset` (its bitmap and its data) where
    /// the trailing footer is. Nothing on disk changes yet.
    fn allocate(&self, offset: u64, _len: u64) -> Result<Allocation> {
        let m = self.meta();
        let d = m.dynamic.as_ref().ok_or_else(|| not_dynamic("write"))?;
        let bs = d.header.block();
        if d.block_offset(offset / bs).is_some() {
            return Err(BlockError::corrupt(
                "write",
                format!("block {} to allocate is allocated", offset / bs),
            ));
        }
        let space = d.alloc.allocate(d.stride())?;
        Ok(Allocation {
            guest_offset: offset,
            len: bs.min(m.size - offset),
            child: ChildRef::FILE,
            host_offset: space.offset + d.header.bitmap_size(),
            granule: bs,
            reused: false,
        })
    }

    /// Writes the block's bitmap (every sector present, as QEMU does) and
    /// makes it and the data durable, then links the block into the BAT and
    /// moves the footer copy behind it.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        let mut guard = self.meta_mut();
        let m = &mut *guard;
        let d = m.dynamic.as_mut().ok_or_else(|| not_dynamic("write"))?;
        let bitmap_at = a.host_offset - d.header.bitmap_size();
        self.file
            .write_at(bitmap_at, &vec![0xff; d.header.bitmap_size() as usize])?;
        self.file.flush()?;
        let index = (a.guest_offset / d.header.block()) as usize;
        // The allocator's limit keeps sector numbers within u32.
        let entry = (bitmap_at / 512) as u32;
        // On failure the block stays allocated: the entry may have reached
        // the disk all the same.
        let bat_at = d.header.table_offset + index as u64 * 4;
        self.file.write_at(bat_at, &bat_bytes(&[entry]))?;
        d.bat[index] = entry;
        self.file.write_at(d.alloc.end(), &m.footer.raw)
    }

    /// The data write failed: give the space back if it is still last, and
    /// put the footer copy back at the end.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        if let Some(d) = &m.dynamic {
            let offset = a.host_offset - d.header.bitmap_size();
            let len = d.stride();
            d.alloc.undo(&AppendAllocation {
                offset,
                len,
                index: 0,
                trailer_offset: offset + len,
            });
            if let Err(e) = self.write_trailer(&m, d) {
                log::warn!("{}: footer copy not rewritten: {e}", self.filename);
            }
        }
    }

    /// An unallocated block already reads as zeros; allocated data is
    /// zeroed in the file (a hole where the file can make one).
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let m = self.meta();
        if let Some(at) = Self::host_offset(&m, offset) {
            let flags = if unmap {
                ZeroFlags::MAY_UNMAP
            } else {
                ZeroFlags::NONE
            };
            match self.file.write_zeroes(at, len, flags) {
                Err(e) if e.kind == ErrorKind::Unsupported => return Ok(false),
                r => r?,
            }
        }
        Ok(true)
    }

    /// The format frees nothing (as QEMU's driver): discard is advisory.
    fn discard(&self, _offset: u64, _len: u64) -> Result<bool> {
        Ok(false)
    }

    /// Another process may have changed the image: read it again.
    fn invalidate(&self) -> Result<()> {
        let fresh =
            Metadata::load(self.file.as_ref(), self.calc).map_err(|e| e.in_file(&self.filename))?;
        *self.meta_mut() = fresh;
        Ok(())
    }

    /// QEMU's vpc driver cannot change a disk's size; neither can this one
    /// (the footer's geometry and a fixed image's layout are set at create).
    fn resize(&self, _size: u64, _prealloc: block_core::Preallocation) -> Result<()> {
        Err(BlockError::new(
            ErrorKind::Unsupported,
            "resize",
            "Image format driver does not support resize",
        ))
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// As `qemu-img info`: the block size of a dynamic image, nothing
    /// format-specific.
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.size,
            cluster_size: m.dynamic.as_ref().map(|d| d.header.block()),
            ..NodeInfo::default()
        })
    }
}
