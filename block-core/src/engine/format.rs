//! The mapping contract a format implements.

use crate::control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
use crate::error::{BlockError, Result};
use crate::host::ChildRole;
use crate::info::NodeInfo;
use crate::node::BlockNode;
use crate::types::Preallocation;
use std::sync::Arc;

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
    },
    /// Not allocated here: reads come from the backing node (zeros without one).
    Unallocated {
        /// Length of the range.
        len: u64,
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
            | Mapping::Unallocated { len }
            | Mapping::Special { len } => len,
        }
    }

    /// True for an empty mapping (never returned by a correct format).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fresh host space for the guest range `[guest_offset, guest_offset+len)`,
/// handed out by [`Format::allocate`] and linked by [`Format::commit`].
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
    /// unit). The engine then writes the whole allocation (guest data plus
    /// copy-on-write fill from the old content) and calls [`Format::commit`].
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let _ = (offset, len);
        Err(BlockError::unsupported("write"))
    }

    /// Links an allocation whose data is written into the metadata, so that
    /// [`Format::map`] returns it as writable data.
    fn commit(&self, alloc: &Allocation) -> Result<()> {
        let _ = alloc;
        Err(BlockError::unsupported("write"))
    }

    /// Gives back an allocation whose data write failed.
    fn abort(&self, alloc: &Allocation) {
        let _ = alloc;
    }

    /// Makes the unit-aligned range read as zeros in metadata (deallocating
    /// with `unmap`). `Ok(false)`: the format cannot, the engine writes zeros.
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
    /// The migration handoff, beyond the engine's flush/invalidate default.
    fn migration(&self) -> Option<&dyn MigrationControl> {
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
