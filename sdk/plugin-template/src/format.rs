//! The format on the shared engine: [`BatFormat`] answers the engine's
//! questions (where does a guest range live, where does a new block go,
//! link it in), and `block_core::engine::FormatNode` does the I/O around
//! those answers: bounds and read-only gates, vectored reads and writes
//! merged over contiguous blocks, copy-on-write fill of partly written
//! blocks, serialised allocation, zeroing and discard splitting, FUA and
//! block status.

use crate::bat::{bat_bytes, Metadata};
use crate::header::{Header, ENDIAN};
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::block_table::write_u32_entries;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{
    BlockError, BlockNode, BlockNodeExt, ErrorKind, NodeInfo, Preallocation, Result, ZeroFlags,
};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open image as the generic node the host gets.
pub type BatNode = FormatNode<BatFormat>;

/// The format of one open image over its `file` child.
///
/// Every method takes `&self` and may run on many threads at once. The
/// metadata is behind one lock: mapping holds it shared; linking a block,
/// growing the disk and re-reading the metadata hold it exclusively. The
/// engine never lets two writes allocate the same block at once, and runs
/// a resize with no allocation in flight.
pub struct BatFormat {
    file: Arc<dyn BlockNode>,
    filename: String,
    meta: RwLock<Metadata>,
}

impl std::fmt::Debug for BatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatFormat")
            .field("filename", &self.filename)
            .field("header", &self.meta().header)
            .finish()
    }
}

impl BatFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`.
    pub fn open(file: Arc<dyn BlockNode>, filename: String) -> Result<BatFormat> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        Ok(BatFormat {
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

    /// The allocation `a` of `bs`-byte blocks as the append allocator
    /// handed it out. (The block size is passed in: the caller holds the
    /// metadata lock, which is not taken twice.)
    fn appended(a: &Allocation, bs: u64) -> AppendAllocation {
        let len = a.len.div_ceil(bs) * bs;
        AppendAllocation {
            offset: a.host_offset,
            len,
            index: 0,
            trailer_offset: a.host_offset + len,
        }
    }

    /// [`Metadata::block_offset`] with the image's name on errors.
    fn block_offset(&self, m: &Metadata, op: &'static str, index: u64) -> Result<Option<u64>> {
        m.block_offset(op, index)
            .map_err(|e| e.in_file(&self.filename))
    }

    /// Writes `h` over the header.
    fn write_header(&self, h: &Header) -> Result<()> {
        self.file.write_at(0, &h.encode())
    }
}

impl Format for BatFormat {
    fn size(&self) -> u64 {
        self.meta().header.size
    }

    /// The block size: the engine allocates, zeroes and discards in blocks.
    fn allocation_unit(&self) -> u64 {
        self.meta().header.block()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// One block at most: its data in the file, or unallocated (zeros).
    /// The engine merges neighbouring blocks that are contiguous in the
    /// file into one request.
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let bs = m.header.block();
        let in_block = offset % bs;
        let len = len.min(bs - in_block);
        Ok(match self.block_offset(&m, "read", offset / bs)? {
            None => Mapping::Unallocated { len, host: None },
            Some(at) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + in_block,
                len,
                writable: true,
            },
        })
    }

    /// Appends space for the unallocated blocks from `offset` on (as many
    /// of the `len` bytes' blocks as are unallocated in a row) at the end
    /// of the file. Nothing on disk changes yet.
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let m = self.meta();
        let bs = m.header.block();
        let first = offset / bs;
        let last = (offset + len).div_ceil(bs).min(m.bat.len() as u64);
        let blocks = (first..last)
            .take_while(|&i| m.bat[i as usize] == 0)
            .count() as u64;
        if blocks == 0 {
            return Err(BlockError::corrupt(
                "write",
                format!("block {first} to allocate is allocated"),
            ));
        }
        let space = m.alloc.allocate(blocks * bs)?;
        Ok(Allocation {
            guest_offset: offset,
            len: (blocks * bs).min(m.header.size - offset),
            child: ChildRef::FILE,
            host_offset: space.offset,
            // The engine writes whole blocks: guest data and zero fill.
            granule: blocks * bs,
            reused: false,
        })
    }

    /// Links the blocks of `a` into the BAT.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        // Crash order: the engine has written the blocks' data; make it
        // durable BEFORE the BAT entries that point at it are written. A
        // crash then leaves at worst blocks at the end of the file that no
        // entry names (leaks, which `check` reports), never an entry
        // naming a block whose data did not reach the disk.
        self.file.flush()?;
        let mut m = self.meta_mut();
        let bs = m.header.block();
        let first = (a.guest_offset / bs) as usize;
        let blocks = a.len.div_ceil(bs) as usize;
        let entries: Vec<u32> = (0..blocks)
            // The allocator's limit keeps block numbers within u32.
            .map(|k| (a.host_offset / bs) as u32 + k as u32)
            .collect();
        let at = m.header.bat_offset;
        // On failure the blocks stay allocated: the entry may have reached
        // the disk all the same, and a block two entries name would be
        // worse than a leak.
        write_u32_entries(&*self.file, at, ENDIAN, &mut m.bat, first, &entries)?;
        Ok(())
    }

    /// The data write failed: give the space back if it is still last.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        m.alloc.undo(&Self::appended(a, m.header.block()));
    }

    /// An unallocated block already reads as zeros; an allocated one is
    /// zeroed in the file (a hole where the file can make one). The BAT
    /// keeps its entry: this format has no free-space map to return the
    /// block to.
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
                // The engine writes zeros instead.
                Err(e) if e.kind == ErrorKind::Unsupported => return Ok(false),
                r => r?,
            }
        }
        Ok(true)
    }

    /// Discards the file space of allocated blocks (the entries stay, so
    /// the blocks are not leaked). A file that cannot discard is fine:
    /// discard is advisory.
    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        let m = self.meta();
        let bs = m.header.block();
        for i in offset / bs..(offset + len).div_ceil(bs) {
            if let Some(at) = self.block_offset(&m, "discard", i)? {
                let n = bs.min(m.header.size - i * bs);
                match self.file.discard(at, n) {
                    Err(e) if e.kind == ErrorKind::Unsupported => return Ok(false),
                    r => r?,
                }
            }
        }
        Ok(true)
    }

    /// Another process may have changed the image (a migration handoff):
    /// read the header and the BAT again.
    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| e.in_file(&self.filename))?;
        *self.meta_mut() = fresh;
        Ok(())
    }

    /// Grows the disk: new BAT entries (zero: unallocated) go into the
    /// space reserved after the BAT when they fit, else the whole BAT moves
    /// to new blocks at the end of the file. The BAT is durable before the
    /// header naming it is written. Shrinking is not supported.
    fn resize(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        let ctx = |e: BlockError| e.in_file(&self.filename);
        if prealloc != Preallocation::Off {
            return Err(ctx(BlockError::invalid(
                "resize",
                "only preallocation=off is supported",
            )));
        }
        let mut m = self.meta_mut();
        let old = m.header;
        if size < old.size {
            return Err(ctx(BlockError::new(
                ErrorKind::Unsupported,
                "resize",
                "shrinking images is not supported",
            )));
        }
        let mut new = Header::new("resize", size, old.block()).map_err(ctx)?;
        new.bat_offset = old.bat_offset;
        let added = (new.bat_entries - old.bat_entries) as usize;
        let mut bat = m.bat.clone();
        bat.resize(new.bat_entries as usize, 0);
        if new.bat_offset + new.bat_bytes() <= old.bat_reserved_end() {
            let at = old.bat_offset + old.bat_bytes();
            self.file.write_at(at, &bat_bytes(&vec![0; added]))?;
        } else {
            // The old BAT's blocks are left unused (check reports them as
            // leaked when they were data blocks).
            new.bat_offset = m.alloc.allocate(new.bat_bytes())?.offset;
            self.file.write_at(new.bat_offset, &bat_bytes(&bat))?;
        }
        self.file.flush()?;
        self.write_header(&new)?;
        self.file.flush()?;
        m.header = new;
        m.bat = bat;
        Ok(())
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// `blk info` prints the `data` members under "Format specific
    /// information".
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        let h = &m.header;
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: h.size,
            cluster_size: Some(h.block()),
            format_specific: Some(serde_json::json!({
                "type": DRIVER_NAME,
                "data": {
                    "version": h.version,
                    "bat-entries": h.bat_entries,
                    "bat-offset": h.bat_offset,
                    "allocated-blocks": m.allocated_blocks(),
                },
            })),
            ..NodeInfo::default()
        })
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}
