//! The format on the shared engine: [`ParallelsFormat`] answers the
//! engine's questions (where does a guest range live, where does a new
//! cluster go, link it in), and `block_core::engine::FormatNode` does the
//! I/O around those answers: bounds and read-only gates, vectored reads and
//! writes merged over contiguous clusters, copy-on-write fill of partly
//! written clusters, serialised allocation, zeroing and discard splitting,
//! FUA and block status.
//!
//! While the image is open for writing its header's in-use field holds
//! the in-use magic; it is cleared again when the node is dropped or hands
//! the image over (inactivate), so an image whose field is set on open was
//! not closed by its last writer.

use crate::bat::Metadata;
use crate::header::{Header, ENDIAN, HEADER_SIZE, INUSE_MAGIC};
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::block_table::write_u32_entries;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, BlockNodeExt, ErrorKind, NodeInfo, Result, ZeroFlags};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open image as the generic node the host gets.
pub type ParallelsNode = FormatNode<ParallelsFormat>;

/// The format of one open image over its `file` child.
///
/// Every method takes `&self` and may run on many threads at once. The
/// metadata is behind one lock: mapping holds it shared; linking a cluster,
/// repairing and re-reading the metadata hold it exclusively.
pub struct ParallelsFormat {
    file: Arc<dyn BlockNode>,
    filename: String,
    meta: RwLock<Metadata>,
    /// Opened for writing: the in-use field is set while active.
    writable: bool,
    /// This node set the in-use field (and clears it when done).
    marked: AtomicBool,
    /// The in-use field was set when the image was read: its last writer
    /// did not close it (a check reports it; a repair clears it).
    pub(crate) unclean: AtomicBool,
}

impl std::fmt::Debug for ParallelsFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelsFormat")
            .field("filename", &self.filename)
            .field("header", &self.meta().header)
            .finish()
    }
}

impl ParallelsFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`
    /// (for writing when `writable`; the in-use field is set by
    /// [`ParallelsFormat::mark_in_use`], not here).
    pub fn open(file: Arc<dyn BlockNode>, filename: String, writable: bool) -> Result<Self> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        if writable && meta.header.ext_off != 0 {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "open",
                "images with a format extension (dirty bitmaps) can only be opened read-only",
            )
            .in_file(&filename));
        }
        let unclean = AtomicBool::new(meta.header.in_use());
        Ok(ParallelsFormat {
            file,
            filename,
            meta: RwLock::new(meta),
            writable,
            marked: AtomicBool::new(false),
            unclean,
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

    /// The allocation `a` as the append allocator handed it out.
    fn appended(a: &Allocation) -> AppendAllocation {
        AppendAllocation {
            offset: a.host_offset,
            len: a.granule,
            index: 0,
            trailer_offset: a.host_offset + a.granule,
        }
    }

    /// [`Metadata::cluster_offset`] with the image's name on errors.
    fn cluster_offset(&self, m: &Metadata, op: &'static str, index: u64) -> Result<Option<u64>> {
        m.cluster_offset(op, index)
            .map_err(|e| e.in_file(&self.filename))
    }

    /// Writes `len` zero bytes at `offset` of the file, in pieces of at
    /// most 1 MiB.
    fn zero_fill(&self, offset: u64, len: u64) -> Result<()> {
        let zeros = vec![0u8; len.min(1 << 20) as usize];
        for done in (0..len).step_by(zeros.len().max(1)) {
            let n = (len - done).min(zeros.len() as u64) as usize;
            self.file.write_at(offset + done, &zeros[..n])?;
        }
        Ok(())
    }

    /// Writes the header of `m` with the in-use field as `in_use` says, and
    /// flushes it.
    pub(crate) fn write_header(&self, m: &mut Metadata, in_use: bool) -> Result<()> {
        let mut h: Header = m.header;
        h.inuse = if in_use { INUSE_MAGIC } else { 0 };
        self.file.write_at(0, &h.encode())?;
        self.file.flush()?;
        m.header = h;
        Ok(())
    }

    /// Sets the in-use field (a writer is about to change the image).
    pub fn mark_in_use(&self) -> Result<()> {
        if !self.writable || self.marked.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut m = self.meta_mut();
        self.write_header(&mut m, true)
            .map_err(|e| e.in_file(&self.filename))?;
        self.marked.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Clears the in-use field this node set: everything it wrote is
    /// flushed first.
    fn clear_in_use(&self) -> Result<()> {
        if !self.marked.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.file.flush()?;
        let mut m = self.meta_mut();
        // An unrepaired unclean image keeps its mark for the next check.
        let keep = self.unclean.load(Ordering::SeqCst);
        self.write_header(&mut m, keep)?;
        self.marked.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for ParallelsFormat {
    fn drop(&mut self) {
        if let Err(e) = self.clear_in_use() {
            log::warn!(
                "{DRIVER_NAME}: {}: could not clear the in-use flag: {e}",
                self.filename
            );
        }
    }
}

impl Format for ParallelsFormat {
    fn size(&self) -> u64 {
        self.meta().header.size()
    }

    /// The cluster size: the engine allocates, zeroes and discards in clusters.
    fn allocation_unit(&self) -> u64 {
        self.meta().header.cluster()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// One cluster at most: its data in the file, or unallocated (zeros).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let cluster = m.header.cluster();
        let in_cluster = offset % cluster;
        let len = len.min(cluster - in_cluster);
        Ok(match self.cluster_offset(&m, "read", offset / cluster)? {
            None => Mapping::Unallocated { len, host: None },
            Some(at) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + in_cluster,
                len,
                writable: true,
            },
        })
    }

    /// Appends space for the unallocated clusters from `offset` on (as
    /// many of the `len` bytes' clusters as are unallocated in a row) at
    /// the end of the file. Nothing on disk changes yet.
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let m = self.meta();
        let cluster = m.header.cluster();
        let first = offset / cluster;
        let last = (offset + len).div_ceil(cluster).min(m.bat.len() as u64);
        let n = (first..last)
            .take_while(|&i| m.bat[i as usize] == 0)
            .count() as u64;
        if n == 0 {
            return Err(BlockError::corrupt(
                "write",
                format!("cluster {first} to allocate is allocated"),
            ));
        }
        let space = m.alloc.allocate(n * cluster)?;
        Ok(Allocation {
            guest_offset: offset,
            len: (n * cluster).min(m.header.size() - offset),
            child: ChildRef::FILE,
            host_offset: space.offset,
            // The engine writes whole clusters: guest data and zero fill
            // (QEMU's check wants every cluster wholly inside the file).
            granule: space.len,
            reused: false,
        })
    }

    /// Links the clusters of `a` into the BAT.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        // Crash order: the engine has written the clusters' data; make it
        // durable BEFORE the BAT entries that point at it are written. A
        // crash then leaves at worst clusters at the end of the file that
        // no entry names (leaks, which `check` reports and repairs), never
        // an entry naming a cluster whose data did not reach the disk.
        let mut m = self.meta_mut();
        let cluster = m.header.cluster();
        let unit = m.header.entry_unit();
        let first = (a.guest_offset / cluster) as usize;
        let n = a.len.div_ceil(cluster) as usize;
        // A last cluster the disk ends inside must still lie wholly in the
        // file (QEMU's check requires it): zero its part past the disk.
        let start = first as u64 * cluster;
        let guest_part = m.header.size().min(start + n as u64 * cluster) - start;
        self.zero_fill(a.host_offset + guest_part, n as u64 * cluster - guest_part)?;
        self.file.flush()?;
        let entries: Vec<u32> = (0..n as u64)
            // The allocator's limit keeps entries within u32.
            .map(|k| ((a.host_offset + k * cluster) / unit) as u32)
            .collect();
        // On failure the clusters stay allocated: the entry may have
        // reached the disk all the same, and a cluster two entries name
        // would be worse than a leak.
        write_u32_entries(
            &*self.file,
            HEADER_SIZE,
            ENDIAN,
            &mut m.bat,
            first,
            &entries,
        )?;
        Ok(())
    }

    /// The data write failed: give the space back if it is still last.
    fn abort(&self, a: &Allocation) {
        self.meta().alloc.undo(&Self::appended(a));
    }

    /// An unallocated cluster already reads as zeros; an allocated one is
    /// zeroed in the file (a hole where the file can make one).
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let m = self.meta();
        let cluster = m.header.cluster();
        if let Some(at) = self.cluster_offset(&m, "write_zeroes", offset / cluster)? {
            let flags = if unmap {
                ZeroFlags::MAY_UNMAP
            } else {
                ZeroFlags::NONE
            };
            match self.file.write_zeroes(at + offset % cluster, len, flags) {
                // The engine writes zeros instead.
                Err(e) if e.kind == ErrorKind::Unsupported => return Ok(false),
                r => r?,
            }
        }
        Ok(true)
    }

    /// Discard is advisory and this driver does none: the clusters stay
    /// allocated and keep their data.
    fn discard(&self, _offset: u64, _len: u64) -> Result<bool> {
        Ok(false)
    }

    /// Another process may have changed the image (a migration handoff):
    /// read the header and the BAT again.
    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| e.in_file(&self.filename))?;
        self.unclean.store(
            fresh.header.in_use() && !self.marked.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        *self.meta_mut() = fresh;
        Ok(())
    }

    /// Flushes and clears the in-use field before the image is handed over.
    fn inactivate(&self) -> Result<()> {
        self.clear_in_use().map_err(|e| e.in_file(&self.filename))
    }

    /// Takes the image over: reads it again and sets the in-use field.
    fn activate(&self) -> Result<()> {
        self.invalidate()?;
        self.mark_in_use()
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// As qemu-img's: the format and the virtual size (parallels has no
    /// format-specific information).
    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: self.size(),
            ..NodeInfo::default()
        })
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}
