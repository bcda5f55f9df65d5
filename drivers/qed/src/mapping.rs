//! QED on the shared engine: [`QedFormat`] answers the engine's questions
//! (where does a guest range live, where does a new cluster go, link it
//! in) and `block_core::engine::FormatNode` does the I/O around them,
//! including backing reads and copy-on-write fill of partly written
//! clusters.

use crate::format::{clear_need_check, QedFormat};
use crate::header::{check_image_size, ZERO_CLUSTER};
use crate::tables::{Cluster, Metadata};
use crate::DRIVER_NAME;
use block_core::control::CheckControl;
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, ErrorKind, NodeInfo, Preallocation, Result, ZeroFlags};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An open image as the generic node the host gets.
pub type QedNode = FormatNode<QedFormat>;

impl QedFormat {
    fn ctx(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }
}

impl Format for QedFormat {
    fn size(&self) -> u64 {
        self.meta().header.image_size
    }

    /// The cluster size: the engine allocates and zeroes in clusters.
    fn allocation_unit(&self) -> u64 {
        self.meta().header.cluster()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        self.backing.clone()
    }

    /// One cluster at most; the engine merges clusters contiguous in the
    /// file into one request.
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let cs = m.header.cluster();
        let len = len.min(cs - offset % cs);
        let c = self
            .lookup(&m, "read", offset / cs)
            .map_err(|e| self.ctx(e))?;
        Ok(match c {
            Cluster::Unallocated => Mapping::Unallocated { len, host: None },
            Cluster::Zero => Mapping::Zero {
                len,
                allocated: true,
                host: None,
            },
            Cluster::Data(at) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + offset % cs,
                len,
                writable: true,
            },
        })
    }

    /// Appends space for the clusters from `offset` on that have no data
    /// (as many in a row, inside one L2 table, as the write covers) at the
    /// end of the file, after setting the need-check flag.
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        self.mark_need_check().map_err(|e| self.ctx(e))?;
        let m = self.meta();
        let cs = m.header.cluster();
        let first = offset / cs;
        let table_end = (first / m.header.entries() + 1) * m.header.entries();
        let last = (offset + len).div_ceil(cs).min(table_end);
        let mut n = 0;
        for c in first..last {
            match self.lookup(&m, "write", c).map_err(|e| self.ctx(e))? {
                Cluster::Data(_) => break,
                _ => n += 1,
            }
        }
        if n == 0 {
            return Err(self.ctx(BlockError::corrupt(
                "write",
                format!("cluster {first} to allocate is allocated"),
            )));
        }
        let space = m.alloc.allocate(n * cs).map_err(|e| self.ctx(e))?;
        Ok(Allocation {
            guest_offset: offset,
            len: (n * cs).min(m.header.image_size - offset),
            child: ChildRef::FILE,
            host_offset: space.offset,
            granule: n * cs,
            reused: false,
        })
    }

    /// Links the clusters of `a`: their data is flushed first, then the L2
    /// entries (and a new L2 table before its L1 entry) are written.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        self.file.flush()?;
        let mut m = self.meta_mut();
        let cs = m.header.cluster();
        let n = a.len.div_ceil(cs);
        let values: Vec<u64> = (0..n).map(|k| a.host_offset + k * cs).collect();
        self.link(&mut m, a.guest_offset / cs, &values)
            .map_err(|e| self.ctx(e))
    }

    /// The data write failed: give the space back if it is still last.
    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        let cs = m.header.cluster();
        let len = a.len.div_ceil(cs) * cs;
        m.alloc
            .undo(&block_core::engine::append_alloc::AppendAllocation {
                offset: a.host_offset,
                len,
                index: 0,
                trailer_offset: a.host_offset + len,
            });
    }

    /// A cluster with data is zeroed in place; any other becomes a zero
    /// cluster (L2 entry 1), which also hides the backing file.
    fn make_zero(&self, offset: u64, len: u64, unmap: bool) -> Result<bool> {
        let cs = self.allocation_unit();
        let c = offset / cs;
        let found = self.lookup(&self.meta(), "write_zeroes", c);
        match found.map_err(|e| self.ctx(e))? {
            Cluster::Zero => Ok(true),
            Cluster::Data(at) => {
                let flags = if unmap {
                    ZeroFlags::MAY_UNMAP
                } else {
                    ZeroFlags::NONE
                };
                match self.file.write_zeroes(at + offset % cs, len, flags) {
                    Err(e) if e.kind == ErrorKind::Unsupported => Ok(false),
                    r => r.map(|_| true),
                }
            }
            Cluster::Unallocated => {
                if !offset.is_multiple_of(cs) || (len < cs && offset + len < self.size()) {
                    return Ok(false);
                }
                self.mark_need_check().map_err(|e| self.ctx(e))?;
                let mut m = self.meta_mut();
                // Another writer may have allocated it meanwhile.
                if self.lookup(&m, "write_zeroes", c)? != Cluster::Unallocated {
                    drop(m);
                    return self.make_zero(offset, len, unmap);
                }
                self.link(&mut m, c, &[ZERO_CLUSTER])
                    .map_err(|e| self.ctx(e))?;
                Ok(true)
            }
        }
    }

    /// Another process may have changed the image: read it again.
    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| self.ctx(e))?;
        self.l2.clear();
        *self.meta_mut() = fresh;
        Ok(())
    }

    /// Flushes and marks the image clean before the handoff.
    fn inactivate(&self) -> Result<()> {
        self.file.flush()?;
        let mut m = self.meta_mut();
        clear_need_check(self.file.as_ref(), &mut m).map_err(|e| self.ctx(e))?;
        self.need_check_set.store(false, Ordering::Release);
        Ok(())
    }

    /// Grows the disk (the tables already address every size up to the
    /// format's limit); shrinking is refused, as QEMU's qed does.
    fn resize(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        if prealloc != Preallocation::Off {
            return Err(self.ctx(BlockError::invalid(
                "resize",
                "Unsupported preallocation mode",
            )));
        }
        let mut m = self.meta_mut();
        let h = m.header;
        if size < h.image_size {
            return Err(self.ctx(BlockError::new(
                ErrorKind::Unsupported,
                "resize",
                "shrinking QED images is not supported",
            )));
        }
        let (cs, ts) = (h.cluster(), u64::from(h.table_size));
        check_image_size("resize", size, cs, ts).map_err(|e| self.ctx(e))?;
        let mut new = h;
        new.image_size = size;
        self.write_header(&new)?;
        self.file.flush()?;
        m.header = new;
        Ok(())
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }

    /// The fields qemu-img reports for qed (it has no format-specific part).
    /// qemu-img 10 reports `dirty-flag: false` for qed images even with the
    /// need-check flag set (observed; `check` is where that state shows),
    /// and blk's `info` agrees with it.
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.header.image_size,
            cluster_size: Some(m.header.cluster()),
            dirty_flag: false,
            backing_filename: m.backing_name.clone(),
            backing_filename_format: m.backing_format(),
            ..NodeInfo::default()
        })
    }

    /// Without a backing file a new image reads as zeros.
    fn has_zero_init(&self) -> bool {
        true
    }

    /// `blk rebase -u` and `commit` rewrite the stored backing file.
    fn backing_control(&self) -> Option<&dyn block_core::control::BackingControl> {
        Some(self)
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}
