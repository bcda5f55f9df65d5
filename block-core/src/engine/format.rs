//! The mapping contract a format implements.

use crate::control::{AmendControl, BackingControl, BitmapControl, CheckControl, SnapshotControl};
use crate::error::{BlockError, Result};
use crate::host::ChildRole;
use crate::info::NodeInfo;
use crate::limits::{IoLimits, NodeCapabilities};
use crate::node::BlockNode;
use crate::types::Preallocation;
use std::sync::{Arc, RwLock};

/// A child of a format node: its role and, for roles that can repeat (vmdk
/// extents, vhdx parents), an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildRef {
    /// The child's role.
    pub role: ChildRole,
    /// Index among children of the same role (0 for the only one).
    pub index: u32,
}

impl ChildRef {
    /// The image file (`file` child, index 0).
    pub const FILE: ChildRef = ChildRef {
        role: ChildRole::File,
        index: 0,
    };
    /// The external data file (`data-file` child, index 0).
    pub const DATA_FILE: ChildRef = ChildRef {
        role: ChildRole::DataFile,
        index: 0,
    };
}

/// Host space of the format in a child that holds no guest data of its
/// range (preallocated zeros, the unwritten part of an allocated unit).
/// Block status reports its offset, as QEMU's `qemu-img map` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRef {
    /// The child the space is in.
    pub child: ChildRef,
    /// Byte offset of the range's first byte in the child.
    pub offset: u64,
}

/// What backs the guest range starting at the queried offset, for `len()`
/// bytes (at least 1, at most the queried length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Stored plainly at `host_offset` in `child`; `writable` when guest
    /// writes may go there in place (no copy-on-write needed, e.g. qcow2's
    /// COPIED flag).
    Data {
        /// The child holding the data.
        child: ChildRef,
        /// Byte offset of the range's first byte in the child.
        host_offset: u64,
        /// Length of the range.
        len: u64,
        /// Writes may overwrite the data in place.
        writable: bool,
    },
    /// Reads as zeros. `allocated`: the zero state is stored in this node
    /// (it hides the backing file).
    Zero {
        /// Length of the range.
        len: u64,
        /// Stored in this node rather than inherited.
        allocated: bool,
        /// Host space kept for the range (preallocated zeros), if any.
        host: Option<HostRef>,
    },
    /// Not allocated here: reads come from the backing node (zeros without one).
    Unallocated {
        /// Length of the range.
        len: u64,
        /// Host space already reserved for the range (an allocated unit
        /// whose sub-range was never written), if any.
        host: Option<HostRef>,
    },
    /// Stored in a form only the format can decode (compressed, encrypted):
    /// the engine asks [`Format::read_special`].
    Special {
        /// Length of the range.
        len: u64,
    },
}

impl Mapping {
    /// The length of the mapped range.
    pub fn len(&self) -> u64 {
        match *self {
            Mapping::Data { len, .. }
            | Mapping::Zero { len, .. }
            | Mapping::Unallocated { len, .. }
            | Mapping::Special { len } => len,
        }
    }

    /// True for an empty mapping (never returned by a correct format).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Host space for the guest range `[guest_offset, guest_offset+len)`,
/// handed out by [`Format::allocate`] and linked by [`Format::commit`].
///
/// The engine writes the guest data there with copy-on-write fill, in
/// whole `granule`s around the data: `granule == len` fills the whole
/// allocation; a smaller granule (qcow2's subclusters with extended L2
/// entries, vmdk's grain inside a larger allocation) fills only the
/// granules the write touches, and the format records which ones are now
/// written in `commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// First guest byte covered (a multiple of the allocation unit).
    pub guest_offset: u64,
    /// Guest bytes covered (a multiple of the allocation unit, or up to the
    /// end of the disk).
    pub len: u64,
    /// The child the space is in.
    pub child: ChildRef,
    /// The host offset of `guest_offset`; the space is contiguous.
    pub host_offset: u64,
    /// Copy-on-write granularity (a power of two dividing the unit, or
    /// `len`): the engine writes whole granules around the guest data.
    pub granule: u64,
    /// The space was already the format's (a qcow2 cluster allocated but
    /// its subcluster not, a preallocated zero unit): [`Format::abort`]
    /// must keep it.
    pub reused: bool,
}

/// The mapping contract of an image format.
///
/// A format answers questions about its layout; [`crate::engine::FormatNode`]
/// does the I/O. Every method takes `&self` and may be called from several
/// threads; the engine serialises allocating writes to the same allocation
/// units (two writes never allocate the same unit at once), and the format
/// guards its own metadata.
pub trait Format: Send + Sync {
    /// Guest-visible size in bytes.
    fn size(&self) -> u64;

    /// The granularity of allocation (cluster size); a power of two.
    fn allocation_unit(&self) -> u64;

    /// The node of `child`, if the format has it.
    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>>;

    /// The children a flush must reach (default: the `file` child).
    fn flushed_children(&self) -> Vec<ChildRef> {
        vec![ChildRef::FILE]
    }

    /// The backing node, if the image has one and it is open.
    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        None
    }

    /// What backs the guest range at `offset` (at most `len` bytes; `offset`
    /// is inside the disk and `len` is at least 1).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping>;

    /// Fills `buf` with the guest bytes at `offset`, inside one range that
    /// [`Format::map`] reported as [`Mapping::Special`].
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let _ = (offset, buf);
        Err(BlockError::unsupported("read special mapping"))
    }

    /// Reserves host space for the units covering `[offset, offset+len)`
    /// (`offset` unit-aligned). May cover less than asked (at least one
    /// unit) and may reuse space the format already has there
    /// ([`Allocation::reused`]). The engine then writes guest data plus
    /// copy-on-write fill from the old content (whole
    /// [`Allocation::granule`]s) and calls [`Format::commit`].
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let _ = (offset, len);
        Err(BlockError::unsupported("write"))
    }

    /// Links an allocation whose data is written into the metadata, so that
    /// [`Format::map`] returns it as writable data. `[written, written+len)`
    /// is the guest range the write covered inside the allocation (with its
    /// copy-on-write fill, whole granules): a format with a granule smaller
    /// than the unit marks only those granules written.
    fn commit(&self, alloc: &Allocation, written: u64, len: u64) -> Result<()> {
        let _ = (alloc, written, len);
        Err(BlockError::unsupported("write"))
    }

    /// Gives back an allocation whose data write failed (keeping
    /// [`Allocation::reused`] space).
    fn abort(&self, alloc: &Allocation) {
        let _ = alloc;
    }

    /// Writes the whole unit at `offset` compressed (`data` is the unit, or
    /// the part of it before the end of the disk), for a request with
    /// [`crate::ReqFlags::COMPRESSED`]; the engine checks the alignment and
    /// serialises the unit. `Ok(false)`: the data does not compress, the
    /// engine writes it plainly.
    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<bool> {
        let _ = (offset, data);
        Err(BlockError::unsupported("compressed write"))
    }

    /// The granularity of [`Format::make_zero`] (default: the allocation
    /// unit): qcow2 with extended L2 entries zeroes subclusters.
    fn zero_granularity(&self) -> u64 {
        self.allocation_unit()
    }

    /// Makes the range read as zeros in metadata (deallocating with
    /// `unmap`). The range lies inside one allocation unit and is aligned
    /// to [`Format::zero_granularity`] (its end may be the end of the
    /// disk). `Ok(false)`: the format cannot, the engine writes zeros.
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let _ = (offset, len, unmap);
        Ok(false)
    }

    /// Deallocates the unit-aligned range. `Ok(false)`: nothing done
    /// (discard is advisory).
    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }

    /// Writes cached metadata back in crash-consistent order (the engine
    /// flushes the children afterwards).
    fn flush_metadata(&self) -> Result<()> {
        Ok(())
    }

    /// Drops cached metadata and re-reads it from the children.
    fn invalidate(&self) -> Result<()> {
        Ok(())
    }

    /// Changes the guest-visible size.
    fn resize(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        let _ = (size, prealloc);
        Err(BlockError::unsupported("truncate"))
    }

    /// Adds the format's context (its file name) to an error the engine
    /// raises itself (bounds, gates, alignment); default: unchanged.
    fn error_context(&self, e: BlockError) -> BlockError {
        e
    }

    /// The format's own gate for reads and block status, after the bounds
    /// check (an image whose reopen failed, one whose key is missing).
    fn check_read(&self, op: &str) -> Result<()> {
        let _ = op;
        Ok(())
    }

    /// The format's own write gate, after the engine's read-only and
    /// inactive gates (qcow2: an image marked corrupt refuses writes).
    fn check_write(&self, op: &str) -> Result<()> {
        let _ = op;
        Ok(())
    }

    /// Called before every guest write, zeroing and discard the node
    /// accepts, with its range (the engine's own fill and fallback writes
    /// are not reported): a format with persistent dirty bitmaps marks the
    /// range, one with an on-disk dirty flag sets it.
    fn will_change(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Checks a data write of `len` bytes at `host_offset` of `child`
    /// before the engine issues it (qcow2's metadata overlap check).
    fn check_data_write(&self, child: ChildRef, host_offset: u64, len: u64) -> Result<()> {
        let _ = (child, host_offset, len);
        Ok(())
    }

    /// A lock the engine holds for reading across each request's mappings
    /// and its data I/O (reads, in-place writes, copy-on-write fill and
    /// write); the format takes it for writing before it reuses freed host
    /// space, so that no request in flight still uses that space.
    fn in_flight(&self) -> Option<&RwLock<()>> {
        None
    }

    /// True when data mappings may point at holes of their child (a
    /// metadata-preallocated image): block status then sets
    /// [`crate::ExtentFlags::RECURSE`] so that the host asks the child.
    fn sparse_data(&self) -> bool {
        false
    }

    /// Writes everything back and flushes the children before a migration
    /// handoff (default: [`Format::flush_metadata`], then every child of
    /// [`Format::flushed_children`]); the node refuses changes afterwards.
    fn inactivate(&self) -> Result<()> {
        self.flush_metadata()?;
        for c in self.flushed_children() {
            if let Some(n) = self.child(c) {
                n.flush()?;
            }
        }
        Ok(())
    }

    /// Takes the image over after a handoff or an inactive open (default:
    /// [`Format::invalidate`]); writes are accepted when it succeeds.
    fn activate(&self) -> Result<()> {
        self.invalidate()
    }

    /// Request shape constraints (default: the flushed children's limits
    /// merged, shaped by [`IoLimits::for_format`] with the allocation unit).
    fn limits(&self) -> IoLimits {
        let children = (self.flushed_children().into_iter())
            .filter_map(|c| self.child(c))
            .fold(IoLimits::default(), |l, n| l.merge(n.limits()));
        IoLimits::for_format(children, self.allocation_unit())
    }

    /// What the node does natively when writable (default:
    /// [`NodeCapabilities::for_format`]); the node clears the write
    /// capabilities itself while it is read-only.
    fn capabilities(&self) -> NodeCapabilities {
        NodeCapabilities::for_format(true)
    }

    /// Format-level description.
    fn info(&self) -> Result<NodeInfo>;

    /// Bytes of storage used (default: the `file` child's).
    fn allocated_size(&self) -> Result<u64> {
        match self.child(ChildRef::FILE) {
            Some(f) => f.allocated_size(),
            None => Ok(0),
        }
    }

    /// True when a fresh image reads as zeros without a backing file.
    fn has_zero_init(&self) -> bool {
        true
    }

    /// Internal snapshots, if the format has them.
    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        None
    }
    /// Metadata check and repair, if the format has it.
    fn check_control(&self) -> Option<&dyn CheckControl> {
        None
    }
    /// Changing format options, if the format can.
    fn amend_control(&self) -> Option<&dyn AmendControl> {
        None
    }
    /// The stored backing reference, if the format has backing files.
    fn backing_control(&self) -> Option<&dyn BackingControl> {
        None
    }
    /// Persistent dirty bitmaps, if the format stores them.
    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        None
    }
}
