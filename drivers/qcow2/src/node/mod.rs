//! The open qcow2 node: state, lock design and shared helpers.
//!
//! Lock order (never taken the other way round):
//! `wlock` (allocation mutex) → bitmaps → `meta` (RwLock) → per-table locks → cache
//! map mutex / overlap map. Readers and in-place writers take only
//! `meta.read()` plus table read locks; everything that changes metadata
//! holds `wlock`.
//!
//! The node folder is the state layer: below it only the on-disk layout
//! (`crate::layout`) and the bitmap state (`crate::bitmap::state`); the
//! metadata, I/O and operation files above it add `impl Qcow2Node`
//! blocks. cache.rs names the engine's table cache for L2 tables and
//! refcount blocks.

pub mod cache;

use crate::layout::features;
use crate::layout::header::Header;
use crate::layout::mapping::{Geometry, L1E_OFFSET_MASK, REFT_OFFSET_MASK};
use crate::layout::overlap::{kind, kind_name, OverlapMap, SharedOverlapMap};
use crate::layout::snapshot::Snapshot;
use crate::node::cache::{Table, TableCache};
use block_core::{BlockError, BlockNode, BlockNodeExt, OpenFlags, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Everything mutable read from the image at open or invalidation:
/// the reader metadata (nothing dirty yet) and the refcount table.
pub(crate) struct Loaded {
    pub meta: Meta,
    pub reftable: Vec<u64>,
    /// A table past the end of the file (open/damage.rs), `None` when intact.
    pub damage: Option<&'static str>,
}

/// Metadata readers need: header, active L1, snapshot list.
#[derive(Debug, Default)]
pub(crate) struct Meta {
    /// The header as in memory (written back when `header_dirty`).
    pub h: Header,
    /// The active L1 table.
    pub l1: Vec<u64>,
    /// The L1 table differs from the disk.
    pub l1_dirty: bool,
    /// The header differs from the disk.
    pub header_dirty: bool,
    /// Internal snapshots.
    pub snapshots: Vec<Snapshot>,
    /// Bytes of the snapshot table.
    pub snapshots_size: u64,
}

/// State only the holder of the allocation lock touches: the engine
/// refcount allocator's.
pub(crate) use block_core::engine::refcount_alloc::AllocState as WState;
/// A deferred refcount decrement (the engine's).
pub(crate) use block_core::engine::refcount_alloc::DeferredFree as Deferred;
use block_core::engine::refcount_alloc::RefcountAllocator;

/// An open qcow2 image.
pub struct Qcow2Node {
    pub(crate) filename: String,
    pub(crate) file: Arc<dyn BlockNode>,
    pub(crate) data_file: Option<Arc<dyn BlockNode>>,
    pub(crate) backing: RwLock<Option<Arc<dyn BlockNode>>>,
    pub(crate) flags: OpenFlags,
    /// The geometry, packed ([`Geometry::pack`]): amend changes the
    /// refcount width and the version of an open image.
    pub(crate) geo_bits: AtomicU64,
    pub(crate) meta: RwLock<Meta>,
    pub(crate) l2: TableCache,
    pub(crate) rc: TableCache,
    pub(crate) wlock: RefcountAllocator,
    pub(crate) overlap: SharedOverlapMap,
    /// Held for reading by every request in flight (the engine's
    /// `Format::in_flight`), for writing before freed clusters are reused.
    pub(crate) in_flight: RwLock<()>,
    pub(crate) read_only: bool,
    /// The snapshot this read-only node presents instead of the active
    /// state (open options `snapshot.id` / `snapshot.name`).
    pub(crate) snapshot_view: Option<crate::layout::snapshot::SnapshotSel>,
    pub(crate) inactive: AtomicBool,
    pub(crate) corrupt: AtomicBool,
    pub(crate) broken: AtomicBool,
    /// The dirty bit is set on disk by this node (lazy refcounts).
    pub(crate) dirty_set: AtomicBool,
    /// Whether the image looks metadata-preallocated (`io/prealloc.rs`).
    pub(crate) metadata_prealloc: std::sync::atomic::AtomicU8,
    /// Persistent dirty bitmaps (bitmap/).
    pub(crate) bitmaps: crate::bitmap::state::Bitmaps,
}

impl std::fmt::Debug for Qcow2Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Node")
            .field("filename", &self.filename)
            .field("geo", &self.geo())
            .finish()
    }
}

/// What the lookup of one guest offset found.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lookup {
    /// The L2 entry (0 when no L2 table).
    pub entry: u64,
    /// The subcluster bitmap (extended L2).
    pub bitmap: u64,
}

impl Qcow2Node {
    /// The image geometry.
    pub(crate) fn geo(&self) -> Geometry {
        Geometry::unpack(self.geo_bits.load(Ordering::Acquire))
    }
    /// Replaces the geometry (amend; with the allocation mutex and the
    /// metadata write lock held).
    pub(crate) fn set_geo(&self, g: Geometry) {
        self.geo_bits.store(g.pack(), Ordering::Release);
    }
    pub(crate) fn meta_read(&self) -> RwLockReadGuard<'_, Meta> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn meta_write(&self) -> RwLockWriteGuard<'_, Meta> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn wlock(&self) -> MutexGuard<'_, WState> {
        self.wlock.lock()
    }

    /// Adds the file name to an error.
    pub(crate) fn ctx(&self, e: BlockError) -> BlockError {
        e.in_file(self.filename.clone())
    }

    /// The node data clusters live in.
    pub(crate) fn data_node(&self) -> &Arc<dyn BlockNode> {
        self.data_file.as_ref().unwrap_or(&self.file)
    }

    /// The backing node, if any.
    pub(crate) fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        self.backing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads a whole cluster from the image file.
    pub(crate) fn read_cluster(&self, off: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.geo().cs() as usize];
        self.file.read_at(off, &mut buf)?;
        Ok(buf)
    }

    /// The L2 table at `off` through the cache.
    pub(crate) fn l2_table(&self, off: u64) -> Result<Arc<Table>> {
        self.cached_table(&self.l2, off, "L2 table")
    }

    /// The refcount block at `off` through the cache.
    pub(crate) fn rc_table(&self, off: u64) -> Result<Arc<Table>> {
        self.cached_table(&self.rc, off, "Refcount block")
    }

    /// Loads a table through `cache` (the engine's `get_or_load`: loads
    /// run without the allocation mutex and are refused when the table may
    /// have been changed and evicted during the disk read).
    fn cached_table(&self, cache: &TableCache, off: u64, what: &str) -> Result<Arc<Table>> {
        if self.geo().in_cluster(off) != 0 || off == 0 {
            let msg = format!("{what} offset {off:#x} is not cluster aligned or zero");
            return Err(self.corruption(off, &msg));
        }
        cache.get_or_load(off, || {
            let data = self.read_cluster(off);
            #[cfg(test)]
            crate::tests::stress::widen_load_window();
            data
        })
    }

    /// Looks up the L2 entry mapping guest offset `pos`.
    pub(crate) fn lookup(&self, m: &Meta, pos: u64) -> Result<Lookup> {
        let g = self.geo();
        let l1e = m.l1.get(g.l1_index(pos) as usize);
        let l2_off = l1e.map_or(0, |e| e & L1E_OFFSET_MASK);
        if l2_off == 0 {
            return Ok(Lookup::default());
        }
        let t = self.l2_table(l2_off)?;
        let (entry, bitmap) = g.l2_entry(&t.read(), g.l2_index(pos) as usize);
        Ok(Lookup { entry, bitmap })
    }

    /// Refuses writes unless the node is writable, active and not corrupt.
    pub(crate) fn check_writable(&self, op: &str) -> Result<()> {
        self.check_usable(op)?;
        self.check_changeable(op)?;
        if self.corrupt.load(Ordering::Acquire) {
            let msg = "image is corrupt; writes are refused (use check -r all)";
            return Err(self.ctx(BlockError::corrupt(op, msg)));
        }
        Ok(())
    }

    /// Refuses changes (writes, repairs) of a read-only or inactive node.
    pub(crate) fn check_changeable(&self, op: &str) -> Result<()> {
        let why = match () {
            _ if self.read_only => "image is read-only",
            _ if self.inactive.load(Ordering::Acquire) => "image is inactive",
            _ => return Ok(()),
        };
        Err(self.ctx(BlockError::read_only(op, why)))
    }

    /// The gate and preparation of a management operation that writes
    /// (as before a guest change: `Format::will_change`).
    pub(crate) fn begin_write(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        self.check_writable(op)?;
        block_core::engine::Format::will_change(self, offset, len)
    }

    /// Refuses reads of a node whose reopen failed.
    pub(crate) fn check_usable(&self, op: &str) -> Result<()> {
        if self.broken.load(Ordering::Acquire) {
            let msg = "the image could not be reopened after a cache invalidation";
            return Err(self.ctx(BlockError::io(op, msg)));
        }
        Ok(())
    }

    /// Records a corruption: logs it, sets the corrupt bit (v3, when the
    /// image may be written) and returns the error to report.
    pub(crate) fn corruption(&self, offset: u64, msg: &str) -> BlockError {
        log::error!(
            "qcow2: {}: marking image as corrupt: {msg}; further corruption events will be suppressed",
            self.filename
        );
        let first = !self.corrupt.swap(true, Ordering::AcqRel);
        if first
            && self.geo().version >= 3
            && !self.read_only
            && !self.flags.contains(OpenFlags::CHECK)
            && !self.inactive.load(Ordering::Acquire)
        {
            // Avoid deadlocks: the caller may hold meta; use try_read.
            if let Ok(f) = self.meta.try_read().map(|m| m.h.incompatible_features) {
                let _ = self.write_incompat(f | features::INCOMPAT_CORRUPT);
            }
        }
        self.ctx(BlockError::corrupt("qcow2", msg.to_string()).at(offset))
    }

    /// Writes the incompatible-features field of the header and flushes.
    pub(crate) fn write_incompat(&self, bits: u64) -> Result<()> {
        if self.geo().version < 3 {
            return Ok(());
        }
        self.file.write_at(72, &bits.to_be_bytes())?;
        self.file.flush()
    }

    /// Rebuilds the overlap map from the current metadata.
    pub(crate) fn refresh_overlap(&self, m: &Meta, ws: &WState) {
        let cs = self.geo().cs();
        let mut map = OverlapMap::new(cs);
        map.add(0, cs, kind::HEADER);
        map.add(m.h.l1_table_offset, m.l1.len() as u64 * 8, kind::ACTIVE_L1);
        let (rt, rt_clusters) = m.h.reftable_place();
        map.add(rt, rt_clusters * cs, kind::REFTABLE);
        map.add(m.h.snapshots_offset, m.snapshots_size, kind::SNAPSHOT_TABLE);
        if let Some(Ok(e)) = crate::bitmap::dir::ext_of(&m.h) {
            map.add(e.dir_offset, e.dir_size, kind::BITMAP_DIRECTORY);
        }
        for s in &m.snapshots {
            map.add(s.l1_offset, u64::from(s.l1_size) * 8, kind::INACTIVE_L1);
        }
        let l2_tables = m.l1.iter().map(|e| e & L1E_OFFSET_MASK);
        map.add_each(l2_tables, cs, kind::ACTIVE_L2);
        let blocks = ws.reftable.iter().map(|e| e & REFT_OFFSET_MASK);
        map.add_each(blocks, cs, kind::REFBLOCK);
        map.finish();
        self.overlap.set(map);
    }

    /// Checks a write of `len` bytes at `offset` of the image file against
    /// metadata (ignoring the kinds in `ignore`); marks the image corrupt on
    /// a hit.
    pub(crate) fn pre_write_check(&self, offset: u64, len: u64, ignore: u32) -> Result<()> {
        let Some(k) = self.overlap.check(offset, len, ignore) else {
            return Ok(());
        };
        let msg = format!(
            "Preventing invalid write on metadata (overlaps with {})",
            kind_name(k)
        );
        Err(self.corruption(offset, &msg))
    }

    /// Writes guest data to the data node at a host offset (overlap-checked
    /// when the data lives in the image file).
    pub(crate) fn write_data(&self, host: u64, buf: &[u8]) -> Result<()> {
        if self.data_file.is_none() {
            self.pre_write_check(host, buf.len() as u64, 0)?;
        }
        self.data_node().write_at(host, buf)
    }
}
