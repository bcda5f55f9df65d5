//! Opening an image, re-reading it (invalidate_cache), activation and
//! inactivation, and the clean close. The open folder also holds the
//! open-time damage tolerance (damage.rs). It sits above the I/O layer
//! (the snapshot view, preallocation detection) and below the
//! operations (create opens the image it made).

pub(crate) mod damage;

use crate::io::snapview;
use crate::layout::header::{Header, MAX_CLUSTER_BITS, MAX_HOST_OFFSET, MAX_L1_BYTES};
use crate::layout::overlap::SharedOverlapMap;
use crate::layout::snapshot::{self, SnapshotSel};
use crate::node::cache::TableCache;
use crate::node::{Loaded, Meta, Qcow2Node, WState};
use block_core::engine::backing_child::backing_request;
use block_core::engine::codec::Endian;
use block_core::engine::padded_read::{read_padded, read_u64s_padded};
use block_core::engine::refcount_alloc::RefcountAllocator;
use block_core::{
    BlockError, BlockNode, BlockNodeExt, CheckMode, ChildRequest, ChildRole, HostServices,
    OpenFlags, OpenRequest, OptDesc, OptType, Result,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Default total metadata cache size.
pub const DEFAULT_CACHE_BYTES: u64 = 32 << 20;

/// Reads and validates header, L1, refcount table and snapshot table;
/// `lenient` tolerates invalid snapshot L1 tables (check, read-only).
pub(crate) fn load(file: &Arc<dyn BlockNode>, lenient: bool) -> Result<Loaded> {
    let flen = file.length()?;
    let first = (flen.min(1 << MAX_CLUSTER_BITS)) as usize;
    let mut buf = vec![0u8; first.min(4096)];
    file.read_at(0, &mut buf)?;
    if buf.len() >= 24 {
        let bits = u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]);
        if (9..=MAX_CLUSTER_BITS).contains(&bits) && (1usize << bits) > buf.len() {
            buf = vec![0u8; (1usize << bits).min(first)];
            file.read_at(0, &mut buf)?;
        }
    }
    let h = Header::parse(&buf, flen)?;
    let read_u64s = |off, n| read_u64s_padded(&**file, flen, off, n, Endian::Big);
    let l1 = read_u64s(h.l1_table_offset, h.l1_size as usize)?;
    let rt_entries = (u64::from(h.refcount_table_clusters) << h.cluster_bits) / 8;
    let reftable = read_u64s(h.refcount_table_offset, rt_entries as usize)?;
    let base = h.snapshots_offset;
    let (snapshots, snapshots_size) = snapshot::parse_table(h.nb_snapshots, |o, l| {
        let mut b = vec![0u8; l];
        read_padded(&**file, flen, base + o, &mut b)?;
        Ok(b)
    })?;
    let cs = h.cluster_size();
    for (i, s) in snapshots.iter().enumerate() {
        let bytes = u64::from(s.l1_size) * 8;
        let ok = bytes <= MAX_L1_BYTES
            && s.l1_offset % cs == 0
            && s.l1_offset
                .checked_add(bytes)
                .is_some_and(|e| e <= flen && e < MAX_HOST_OFFSET);
        if !ok && !lenient {
            return Err(BlockError::corrupt(
                "open",
                format!("Snapshot {} (index {i}) has an invalid L1 table", s.id),
            ));
        }
    }
    let damage = crate::open::damage::table_past_eof(&h, flen, snapshots_size);
    let meta = Meta {
        h,
        l1,
        snapshots,
        snapshots_size,
        ..Meta::default()
    };
    Ok(Loaded {
        meta,
        reftable,
        damage,
    })
}

/// [`load`] as the node presents the image: switched to the L1 table of
/// the snapshot `view` selects, if any, with the persistent bitmaps.
fn load_view(
    file: &Arc<dyn BlockNode>,
    lenient: bool,
    view: &Option<SnapshotSel>,
) -> Result<(Loaded, crate::bitmap::BitmapState)> {
    let mut ld = load(file, lenient)?;
    if let Some(sel) = view {
        snapview::apply(file, &mut ld.meta, sel)?;
    }
    let bitmaps = crate::bitmap::load(file, &mut ld.meta.h)?;
    Ok((ld, bitmaps))
}

/// The open options (`OpenRequest::options`) qcow2 reads, one row per
/// option. Without cache sizes the metadata cache is 32 MiB, three
/// quarters of it for L2 tables.
#[rustfmt::skip]
pub fn open_options() -> Vec<OptDesc> {
    use OptType::{Size, Text};
    block_core::declare(&[
        ("cache-size", Size, None, "Maximum combined metadata (L2 tables and refcount blocks) cache size"),
        ("l2-cache-size", Size, None, "Maximum L2 table cache size"),
        ("refcount-cache-size", Size, None, "Maximum refcount block cache size"),
        ("snapshot.id", Text, None, "Open the internal snapshot with this ID (read-only)"),
        ("snapshot.name", Text, None, "Open the internal snapshot with this name (read-only)"),
    ])
}

/// Opens a qcow2 node.
pub(crate) fn open(req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Qcow2Node> {
    let name = req.filename.clone();
    let ctx = |e: BlockError| e.in_file(name.clone());
    let o = block_core::read_open_options(&crate::Qcow2Driver, req).map_err(ctx)?;
    let total = o.get_size("cache-size").map_err(ctx)?;
    let l2_bytes = o.get_size("l2-cache-size").map_err(ctx)?;
    let rc_bytes = o.get_size("refcount-cache-size").map_err(ctx)?;

    let snapshot_view = SnapshotSel::from_request(req);
    let read_only = req.flags.contains(OpenFlags::READ_ONLY);
    if snapshot_view.is_some() && !read_only {
        return Err(ctx(BlockError::invalid(
            "snapshot_load_tmp",
            "Device is not readonly",
        )));
    }

    let mut freq = ChildRequest::new(ChildRole::File, req.filename.clone());
    freq.flags = req.flags;
    let file = host.open_child(&freq)?;
    let lenient = req.flags.contains(OpenFlags::CHECK);
    // Snapshot L1 tables are validated when used; a read-only open
    // tolerates invalid ones as QEMU does (snapshot changes need a
    // writable open, which refuses them).
    let (ld, bitmaps) = load_view(&file, lenient || read_only, &snapshot_view).map_err(ctx)?;
    let h = &ld.meta.h;
    if let Some(what) = ld.damage.filter(|_| !read_only && !lenient) {
        return Err(ctx(crate::open::damage::refuse_writable(what)));
    }
    if h.crypt_method != 0 && (!read_only || lenient) {
        return Err(ctx(crate::layout::crypto::no_secret("open")));
    }
    if h.is_corrupt() && !read_only && !lenient {
        return Err(ctx(BlockError::corrupt(
            "open",
            "qcow2: Image is corrupt; cannot be opened read/write",
        )));
    }
    let data_file = match &h.data_file {
        Some(df) => {
            // QEMU opens the data file by its name as stored, relative to
            // the working directory, not to the image (unlike a backing
            // file); docs/data-safety.md.
            let mut r = ChildRequest::new(ChildRole::DataFile, df.clone());
            r.flags = req.flags.without(OpenFlags::CHECK);
            Some(host.open_child(&r)?)
        }
        None => None,
    };
    let bf = h.backing_file.as_deref();
    let bf = bf.filter(|_| !req.flags.contains(OpenFlags::NO_BACKING));
    let bf = bf.map(|b| backing_request(&req.filename, b, h.backing_format.clone(), req.flags));
    let backing = bf.map(|r| host.open_child(&r)).transpose()?;
    let cs = h.cluster_size();
    let (l2c, rcc) = match (total, l2_bytes, rc_bytes) {
        (_, Some(l), Some(r)) => (l, r),
        (Some(t), Some(l), None) => (l, t.saturating_sub(l).max(4 * cs)),
        (Some(t), None, Some(r)) => (t.saturating_sub(r).max(4 * cs), r),
        (Some(t), None, None) => (t / 4 * 3, t / 4),
        (None, Some(l), None) => (l, (l / 4).max(4 * cs)),
        (None, None, Some(r)) => (DEFAULT_CACHE_BYTES / 4 * 3, r),
        (None, None, None) => (DEFAULT_CACHE_BYTES / 4 * 3, DEFAULT_CACHE_BYTES / 4),
    };
    let geo = h.geometry();
    let dirty = h.is_dirty();
    let corrupt = h.is_corrupt();
    let node = Qcow2Node {
        filename: req.filename.clone(),
        file,
        data_file,
        backing: RwLock::new(backing),
        flags: req.flags,
        geo_bits: std::sync::atomic::AtomicU64::new(geo.pack()),
        meta: RwLock::new(ld.meta),
        l2: TableCache::new((l2c / cs) as usize),
        rc: TableCache::new((rcc / cs) as usize),
        wlock: RefcountAllocator::new(ld.reftable),
        overlap: SharedOverlapMap::default(),
        in_flight: RwLock::new(()),
        read_only,
        snapshot_view,
        inactive: AtomicBool::new(req.flags.contains(OpenFlags::INACTIVE)),
        corrupt: AtomicBool::new(corrupt),
        broken: AtomicBool::new(false),
        dirty_set: AtomicBool::new(dirty),
        metadata_prealloc: std::sync::atomic::AtomicU8::new(crate::io::prealloc::UNKNOWN),
        bitmaps: crate::bitmap::Bitmaps::default(),
    };
    node.bitmaps.replace(bitmaps);
    // Lock order: the allocation lock before `meta`.
    let ws = node.wlock();
    node.refresh_overlap(&node.meta_read(), &ws);
    drop(ws);
    if !lenient {
        node.bitmaps_check_overlap()?;
    }
    if !read_only && !node.inactive.load(Ordering::Acquire) && !lenient {
        node.open_time_writes()?;
    }
    Ok(node)
}

impl Qcow2Node {
    /// The writes an open does on a writable, active image: repair a
    /// dirty image, clear autoclear bits this driver does not maintain.
    pub(crate) fn open_time_writes(&self) -> Result<()> {
        let (dirty, autoclear) = {
            let m = self.meta_read();
            (m.h.is_dirty(), m.h.autoclear_features)
        };
        if dirty {
            log::info!("qcow2: {}: repairing dirty image", self.filename);
            let rep = self.check_impl(CheckMode::FIX_ALL)?;
            if rep.corruptions > 0 || rep.check_errors > 0 {
                return Err(self.ctx(BlockError::corrupt(
                    "open",
                    format!(
                        "could not repair dirty image: {} corruptions, {} errors remain",
                        rep.corruptions, rep.check_errors
                    ),
                )));
            }
            let mut ws = self.wlock();
            self.dirty_set.store(false, Ordering::Release);
            self.mark_clean(&mut ws)?;
        }
        let kept = self.autoclear_kept(&self.meta_read().h);
        if autoclear & !kept != 0 {
            let mut ws = self.wlock();
            {
                let mut m = self.meta_write();
                m.h.autoclear_features &= kept;
                m.header_dirty = true;
            }
            self.writeback(&mut ws, false)?;
        }
        // The in-use flags are set before the first change, not here.
        self.bitmaps.in_use_pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Drops all cached metadata and re-reads it from the file.
    pub(crate) fn invalidate_impl(&self) -> Result<()> {
        let mut ws = self.wlock();
        let active_rw = !self.read_only
            && !self.inactive.load(Ordering::Acquire)
            && !self.broken.load(Ordering::Acquire);
        if active_rw {
            self.store_bitmaps(&mut ws)?;
            self.writeback(&mut ws, false)?;
        }
        let lenient = self.flags.contains(OpenFlags::CHECK) || self.read_only;
        let (ld, bitmaps) = match load_view(&self.file, lenient, &self.snapshot_view) {
            Ok(l) => l,
            Err(e) => {
                self.broken.store(true, Ordering::Release);
                return Err(self.ctx(BlockError::io(
                    "invalidate_cache",
                    format!("Could not reopen qcow2 layer: {e}"),
                )));
            }
        };
        if ld.meta.h.geometry() != self.geo() {
            self.broken.store(true, Ordering::Release);
            return Err(self.ctx(BlockError::new(
                block_core::ErrorKind::Unsupported,
                "invalidate_cache",
                "Could not reopen qcow2 layer: the image geometry changed (cluster size, refcount width, version or features)",
            )));
        }
        // The bitmap lock comes before `meta` in the lock order.
        self.bitmaps.replace(bitmaps);
        let mut m = self.meta_write();
        self.l2.clear();
        self.rc.clear();
        self.corrupt
            .store(ld.meta.h.is_corrupt(), Ordering::Release);
        self.dirty_set
            .store(ld.meta.h.is_dirty(), Ordering::Release);
        self.metadata_prealloc
            .store(crate::io::prealloc::UNKNOWN, Ordering::Release);
        *m = ld.meta;
        *ws = WState {
            reftable: ld.reftable,
            ..WState::default()
        };
        self.refresh_overlap(&m, &ws);
        self.broken.store(false, Ordering::Release);
        drop(m);
        if active_rw && !self.flags.contains(OpenFlags::CHECK) {
            self.bitmaps_set_in_use(&mut ws)?;
        }
        Ok(())
    }

    /// Takes ownership: re-reads everything, becomes writable, and does
    /// the open-time writes an inactive open skipped.
    pub(crate) fn activate_impl(&self) -> Result<()> {
        self.invalidate_impl()?;
        let was_inactive = self.inactive.swap(false, Ordering::AcqRel);
        if was_inactive && !self.read_only {
            let corrupt = self.meta_read().h.is_corrupt();
            if corrupt && !self.flags.contains(OpenFlags::CHECK) {
                self.inactive.store(true, Ordering::Release);
                return Err(self.ctx(BlockError::corrupt(
                    "activate",
                    "qcow2: Image is corrupt; cannot be opened read/write",
                )));
            }
            if !self.flags.contains(OpenFlags::CHECK) {
                self.open_time_writes()?;
                // A destination that takes over marks its bitmaps in use
                // at once, as QEMU's does.
                self.bitmaps_before_change()?;
            }
        }
        Ok(())
    }

    /// Gives up ownership: writes everything back, clears the dirty bit and
    /// refuses writes until activated.
    pub(crate) fn inactivate_impl(&self) -> Result<()> {
        if self.inactive.load(Ordering::Acquire) {
            return Ok(());
        }
        if !self.read_only && !self.broken.load(Ordering::Acquire) {
            let mut ws = self.wlock();
            self.store_bitmaps(&mut ws)?;
            self.mark_clean(&mut ws)?;
            self.file.flush()?;
            if let Some(d) = &self.data_file {
                d.flush()?;
            }
        }
        self.inactive.store(true, Ordering::Release);
        Ok(())
    }
}

impl Drop for Qcow2Node {
    fn drop(&mut self) {
        if self.read_only
            || self.inactive.load(Ordering::Acquire)
            || self.broken.load(Ordering::Acquire)
        {
            return;
        }
        let mut ws = self.wlock();
        // As QEMU: bitmaps that cannot be stored are lost (reported), and
        // the image is still closed properly.
        if let Err(e) = self.store_bitmaps(&mut ws) {
            log::error!("{}", e.message);
        }
        let r = if self.corrupt.load(Ordering::Acquire) {
            // Keep what is on disk; do not write possibly bad metadata.
            Ok(())
        } else if self.dirty_set.load(Ordering::Acquire) {
            self.mark_clean(&mut ws)
        } else {
            self.writeback(&mut ws, true)
        };
        drop(ws);
        if let Err(e) = r.and_then(|_| self.file.flush()) {
            log::error!("qcow2: {}: error while closing: {e}", self.filename);
        }
    }
}
