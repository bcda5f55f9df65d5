//! The format on the shared engine: [`VhdxFormat`] maps guest ranges
//! through the BAT, allocates new payload blocks at the end of the file
//! (1 MiB aligned) and links them through the log; the engine's
//! `FormatNode` does the I/O around it.
//!
//! Crash order of a new block (as QEMU): the file grows to hold it, its
//! data is written and flushed, then the BAT sector naming it goes through
//! the log (entry durable, applied, flushed, log emptied). A crash leaves
//! the old BAT, or an entry the next read-write open replays.

use crate::bat::{present, Block};
use crate::guid::Guid;
use crate::image::{Access, Image};
use crate::log_write::StopAt;
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{
    BlockError, BlockNode, BlockNodeExt, ErrorKind, NodeInfo, Preallocation, Result, ZeroFlags,
};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open VHDX image as the generic node the host gets.
pub type VhdxNode = FormatNode<VhdxFormat>;

/// The format of one open image over its `file` child. The metadata is
/// behind one lock: mapping holds it shared; linking a block, the first
/// guest write's header update and re-reading hold it exclusively.
pub struct VhdxFormat {
    file: Arc<dyn BlockNode>,
    filename: String,
    access: Mutex<Access>,
    session: Guid,
    stop: Mutex<StopAt>,
    meta: RwLock<Image>,
}

impl std::fmt::Debug for VhdxFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhdxFormat")
            .field("filename", &self.filename)
            .field("size", &self.meta().params.disk_size)
            .finish()
    }
}

impl VhdxFormat {
    /// Reads (and, writable, replays the log of) `file`, image `filename`.
    pub fn open(file: Arc<dyn BlockNode>, filename: String, access: Access) -> Result<VhdxFormat> {
        let session = Guid::random();
        let meta = Image::load(file.as_ref(), access, session, &filename)
            .map_err(|e| e.in_file(&filename))?;
        log::debug!(
            "{DRIVER_NAME}: opened {filename}: {} bytes in {}-byte blocks{}",
            meta.params.disk_size,
            meta.params.block_size,
            if meta.replayed { ", log replayed" } else { "" }
        );
        Ok(VhdxFormat {
            file,
            filename,
            access: Mutex::new(access),
            session,
            stop: Mutex::new(StopAt::Done),
            meta: RwLock::new(meta),
        })
    }

    /// Shared access to the metadata.
    pub fn meta(&self) -> RwLockReadGuard<'_, Image> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn meta_mut(&self) -> RwLockWriteGuard<'_, Image> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The image file.
    pub fn file(&self) -> &Arc<dyn BlockNode> {
        &self.file
    }

    /// Test hook: later BAT updates stop once their log entry is durable,
    /// leaving a dirty log as a crash between log write and apply would.
    pub fn stop_after_log_entry(&self) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = StopAt::AfterEntry;
    }

    fn access(&self) -> Access {
        *self.access.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reload(&self, access: Access) -> Result<()> {
        let fresh = Image::load(self.file.as_ref(), access, self.session, &self.filename)
            .map_err(|e| e.in_file(&self.filename))?;
        *self.meta_mut() = fresh;
        Ok(())
    }
}

impl Format for VhdxFormat {
    fn size(&self) -> u64 {
        self.meta().params.disk_size
    }

    /// The payload block size.
    fn allocation_unit(&self) -> u64 {
        self.meta().block_size()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// One block at most: its data, or zeros (every state but present;
    /// an image without parent holds its zeros itself).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let bs = m.block_size();
        let in_block = offset % bs;
        let len = len.min(bs - in_block);
        Ok(
            match m
                .bat
                .block("read", offset / bs)
                .map_err(|e| e.in_file(&self.filename))?
            {
                Block::Zero => Mapping::Zero {
                    len,
                    allocated: true,
                    host: None,
                },
                Block::Data(at) => Mapping::Data {
                    child: ChildRef::FILE,
                    host_offset: at + in_block,
                    len,
                    writable: true,
                },
            },
        )
    }

    /// The first guest-visible write of the session changes the data
    /// write GUID in both headers (QEMU's vhdx_user_visible_write).
    fn will_change(&self, _offset: u64, _len: u64) -> Result<()> {
        if self.meta().data_guid_changed {
            return Ok(());
        }
        let mut m = self.meta_mut();
        if !m.data_guid_changed {
            let mut h = m.headers.current();
            h.file_write_guid = self.session;
            h.data_write_guid = Guid::random();
            m.headers.update(self.file.as_ref(), h)?;
            m.data_guid_changed = true;
        }
        Ok(())
    }

    /// Space for the one block at `offset` at the end of the file.
    fn allocate(&self, offset: u64, _len: u64) -> Result<Allocation> {
        let m = self.meta();
        let bs = m.block_size();
        if let Block::Data(_) = m.bat.block("write", offset / bs)? {
            return Err(BlockError::corrupt(
                "write",
                format!("block {} to allocate is allocated", offset / bs),
            )
            .in_file(&self.filename));
        }
        let space = m.alloc.allocate(bs)?;
        Ok(Allocation {
            guest_offset: offset,
            len: bs.min(m.params.disk_size - offset),
            child: ChildRef::FILE,
            host_offset: space.offset,
            granule: bs,
            reused: false,
        })
    }

    /// Grows the file over the whole block, makes the data durable, then
    /// writes the BAT sector naming it through the log.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        let end = a.host_offset + self.meta().block_size();
        if self.file.length()? < end {
            self.file.truncate(end, Preallocation::Off)?;
        }
        self.file.flush()?;
        let stop = *self.stop.lock().unwrap_or_else(|e| e.into_inner());
        let mut guard = self.meta_mut();
        let m = &mut *guard;
        let index = m.bat.index(a.guest_offset / m.block_size());
        let entry_at = m.bat.entry_offset(index);
        let sector_at = entry_at / 4096 * 4096;
        let mut sector = vec![0u8; 4096];
        self.file.read_at(sector_at, &mut sector)?;
        let e = present(a.host_offset);
        let k = (entry_at - sector_at) as usize;
        sector[k..k + 8].copy_from_slice(&e.to_le_bytes());
        m.log.write(
            self.file.as_ref(),
            &mut m.headers,
            &[(sector_at, &sector)],
            stop,
        )?;
        m.bat.entries[index] = e;
        Ok(())
    }

    /// The data write failed: give the block back if it is still last.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        let len = m.block_size();
        m.alloc.undo(&AppendAllocation {
            offset: a.host_offset,
            len,
            index: 0,
            trailer_offset: a.host_offset + len,
        });
    }

    /// A block without data already reads as zeros; a present block is
    /// zeroed in the file (a hole where the file can make one). The BAT is
    /// unchanged (QEMU's driver changes no entry either).
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let m = self.meta();
        let bs = m.block_size();
        if let Block::Data(at) = m.bat.block("write_zeroes", offset / bs)? {
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

    /// Discard frees nothing (QEMU's vhdx driver has none): advisory.
    fn discard(&self, _offset: u64, _len: u64) -> Result<bool> {
        Ok(false)
    }

    /// Another process may have changed the image: read it again (and
    /// replay its log when this node may write).
    fn invalidate(&self) -> Result<()> {
        self.reload(self.access())
    }

    /// Takes the image over after a handoff: writable from now on when the
    /// node was opened read-write.
    fn activate(&self) -> Result<()> {
        let mut a = self.access();
        a.writable = !a.read_only;
        *self.access.lock().unwrap_or_else(|e| e.into_inner()) = a;
        self.reload(a)
    }

    /// Hands the image off: everything is already on disk (BAT updates go
    /// through the log at once); from now on nothing is written.
    fn inactivate(&self) -> Result<()> {
        self.access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .writable = false;
        self.file.flush()
    }

    /// QEMU's vhdx driver cannot resize; neither can this one.
    fn resize(&self, _size: u64, _prealloc: Preallocation) -> Result<()> {
        Err(BlockError::new(
            ErrorKind::Unsupported,
            "resize",
            "Image format driver does not support resize",
        ))
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// As `qemu-img info`: the block size is the cluster size.
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.params.disk_size,
            cluster_size: Some(m.block_size()),
            ..NodeInfo::default()
        })
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}
