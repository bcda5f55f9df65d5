//! The bitmap state a node holds (the bitmaps in memory, their entries
//! and tables on disk, whether writes are tracked): plain data below the
//! node, so that the node holds it without importing the bitmap
//! operations.

use super::dir::{BitmapsExt, DirEntry, TABLE_OFFSET_MASK};
use super::mem::DirtyBitmap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One bitmap as this node holds it.
#[derive(Debug, Clone)]
pub(crate) struct Bitmap {
    /// The name.
    pub name: String,
    /// log2 of the granularity.
    pub gran_bits: u32,
    /// Tracks writes (the `auto` flag).
    pub enabled: bool,
    /// In use on disk at open (not saved correctly): its bits are
    /// meaningless; it is kept as on disk until removed.
    pub inconsistent: bool,
    /// The bits.
    pub data: DirtyBitmap,
    /// The entry on disk (`None`: created since the last store).
    pub disk: Option<DirEntry>,
    /// The bitmap table on disk.
    pub disk_table: Vec<u64>,
}

/// The bitmaps of a node.
#[derive(Debug, Default)]
pub(crate) struct BitmapState {
    /// The bitmaps, in directory order.
    pub list: Vec<Bitmap>,
    /// Removed bitmaps still on disk: (entry, table), freed at the next store.
    pub removed: Vec<(DirEntry, Vec<u64>)>,
    /// The directory on disk marks the bitmaps in use: they must be stored.
    pub in_use_on_disk: bool,
    /// Bitmaps were added, removed or changed since the last store.
    pub changed: bool,
}

/// Every host cluster of the directory of `ext` and of the given
/// `(entry, table)` pairs (tables and data clusters), one offset per
/// cluster.
pub(crate) fn clusters_of<'a>(
    ext: Option<&BitmapsExt>,
    entries: impl Iterator<Item = (&'a DirEntry, &'a [u64])>,
    cs: u64,
) -> Vec<u64> {
    let mut out = Vec::new();
    if let Some(e) = ext {
        let first = e.dir_offset / cs;
        let last = (e.dir_offset + e.dir_size).div_ceil(cs);
        out.extend((first..last).map(|c| c * cs));
    }
    for (d, t) in entries {
        let tcl = (u64::from(d.table_size) * 8).div_ceil(cs);
        out.extend((0..tcl).map(|i| d.table_offset + i * cs));
        out.extend(t.iter().map(|x| x & TABLE_OFFSET_MASK).filter(|&o| o != 0));
    }
    out
}

impl BitmapState {
    /// Every host cluster the bitmaps use on disk (with the directory of
    /// `ext`).
    pub fn disk_clusters(&self, ext: Option<&BitmapsExt>, cs: u64) -> Vec<u64> {
        let on_disk = self
            .list
            .iter()
            .filter_map(|b| b.disk.as_ref().map(|d| (d, b.disk_table.as_slice())))
            .chain(self.removed.iter().map(|(d, t)| (d, t.as_slice())));
        clusters_of(ext, on_disk, cs)
    }
}

/// The bitmap state of a node, behind its own lock. Lock order: `wlock` →
/// this lock → `meta` (the store allocates under `wlock` and updates the
/// header under `meta`); nothing takes it while holding `meta`.
#[derive(Debug, Default)]
pub(crate) struct Bitmaps {
    state: Mutex<BitmapState>,
    /// Some bitmap is enabled: writes must be tracked.
    tracking: AtomicBool,
    /// A writable open has not set the in-use flags yet: they are set
    /// before its first change (guest write, resize), not at the open, so
    /// that a command that fails before it changes anything leaves the
    /// file byte-identical (docs/data-safety.md).
    pub(crate) in_use_pending: AtomicBool,
}

impl Bitmaps {
    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, BitmapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the state (open, cache invalidation).
    pub fn replace(&self, st: BitmapState) {
        let mut g = self.lock();
        *g = st;
        self.update_tracking(&g);
    }

    /// Recomputes whether writes must be tracked.
    pub fn update_tracking(&self, st: &BitmapState) {
        let t = st.list.iter().any(|b| b.enabled && !b.inconsistent);
        self.tracking.store(t, Ordering::Release);
    }

    /// Marks the guest range dirty in every enabled bitmap.
    pub fn mark(&self, offset: u64, len: u64) {
        if !self.tracking.load(Ordering::Acquire) || len == 0 || NO_MARKS.with(|c| c.get()) {
            return;
        }
        let mut st = self.lock();
        for b in st.list.iter_mut() {
            if b.enabled && !b.inconsistent {
                b.data.mark(offset, len);
            }
        }
    }
}

thread_local! {
    /// Set while this thread runs driver-internal writes that QEMU does not
    /// track (the zeroing a resize does).
    static NO_MARKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` without marking its writes in the bitmaps (this thread only).
pub(crate) fn without_marks<R>(f: impl FnOnce() -> R) -> R {
    let old = NO_MARKS.with(|c| c.replace(true));
    let r = f();
    NO_MARKS.with(|c| c.set(old));
    r
}
