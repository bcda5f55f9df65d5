//! Writing bitmaps: the in-use flags at a writable open (in place, as
//! QEMU's `update_ext_header_and_dir_in_place`), and the store at close and
//! inactivation.
//!
//! Store order (crash-consistent; every step only adds until the header
//! switches):
//! 1. each bitmap's non-zero data clusters and its table go to newly
//!    allocated clusters (their refcounts raised in the cache);
//! 2. the new directory goes to newly allocated clusters;
//! 3. the writeback writes the refcount blocks, flushes, then the header
//!    with the new extension (and the `bitmaps` autoclear bit), flushes;
//! 4. the old directory, tables and data clusters are freed (deferred
//!    decrements, applied after the header write).
//!
//! A crash before step 3 leaves the old directory, whose bitmaps carry the
//! in-use flag (set at open): QEMU then treats them as inconsistent, and
//! the new clusters are leaks.

use super::dir::{self, BitmapsExt, DirEntry, FLAG_AUTO, FLAG_EXTRA_DATA_COMPATIBLE, FLAG_IN_USE};
use super::{ext_of, set_ext, BitmapState};
use crate::layout::overlap::kind;
use crate::node::{Deferred, Qcow2Node, WState};
use block_core::{BlockError, Result};
use std::sync::atomic::Ordering;

impl Qcow2Node {
    /// True when this node may write bitmaps now.
    fn bitmaps_writable(&self) -> bool {
        !self.read_only
            && !self.inactive.load(Ordering::Acquire)
            && !self.broken.load(Ordering::Acquire)
            && !self.corrupt.load(Ordering::Acquire)
            && self.snapshot_view.is_none()
    }

    /// Before the first change of a writable open (a guest write, a
    /// resize): sets the in-use flags the open deferred.
    pub(crate) fn bitmaps_before_change(&self) -> Result<()> {
        if !self.bitmaps.in_use_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut ws = self.wlock();
        if self.bitmaps.in_use_pending.load(Ordering::Acquire) {
            self.bitmaps_set_in_use(&mut ws)?;
            self.bitmaps.in_use_pending.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Before the first change of a writable open: sets the in-use flag of every consistent bitmap
    /// in the directory, in place: autoclear bit off (header, flush),
    /// directory, flush, autoclear bit on (header, flush). A crash in
    /// between leaves the bitmaps inconsistent, never wrong.
    pub(crate) fn bitmaps_set_in_use(&self, _ws: &mut WState) -> Result<()> {
        let mut st = self.bitmaps.lock();
        if st.in_use_on_disk || !self.bitmaps_writable() {
            return Ok(());
        }
        if !st.list.iter().any(|b| !b.inconsistent) {
            return Ok(());
        }
        let mut m = self.meta_write();
        let Some(Ok(ext)) = ext_of(&m.h) else {
            return Ok(());
        };
        let mut entries: Vec<DirEntry> = st.list.iter().filter_map(|b| b.disk.clone()).collect();
        for e in &mut entries {
            e.flags |= FLAG_IN_USE;
        }
        let buf = dir::serialize_directory(&entries);
        if buf.len() as u64 != ext.dir_size {
            // The in-memory list no longer matches the directory (cannot
            // happen right after open): store everything at close instead.
            st.in_use_on_disk = true;
            return Ok(());
        }
        m.h.autoclear_features &= !crate::layout::features::AUTOCLEAR_BITMAPS;
        self.file.flush()?;
        self.write_header_locked(&mut m)?;
        self.file.flush()?;
        self.write_meta(ext.dir_offset, &buf, kind::BITMAP_DIRECTORY)?;
        self.file.flush()?;
        m.h.autoclear_features |= crate::layout::features::AUTOCLEAR_BITMAPS;
        self.write_header_locked(&mut m)?;
        self.file.flush()?;
        drop(m);
        for b in st.list.iter_mut() {
            if let Some(d) = &mut b.disk {
                d.flags |= FLAG_IN_USE;
            }
        }
        st.in_use_on_disk = true;
        Ok(())
    }

    /// Stores the bitmaps (see the module doc) when they are in use on disk
    /// or changed; the caller runs the writeback that makes it durable.
    pub(crate) fn store_bitmaps(&self, ws: &mut WState) -> Result<()> {
        let mut st = self.bitmaps.lock();
        if !(st.in_use_on_disk || st.changed) || !self.bitmaps_writable() {
            return Ok(());
        }
        // QEMU cannot store a bitmap without data clusters (a zero-size
        // image: its table would have no entries, which the format does not
        // allow); it loses every bitmap of that store and keeps the image
        // as it was. So does this store, before it allocates anything.
        if st
            .list
            .iter()
            .any(|b| !b.inconsistent && b.data.nchunks() == 0)
        {
            return Err(self.ctx(BlockError::invalid(
                "store_bitmaps",
                format!(
                    "Lost persistent bitmaps during inactivation of node '{}': No memory",
                    self.filename
                ),
            )));
        }
        // As QEMU: bitmaps already on disk keep their place; bitmaps
        // created since are appended newest first.
        let (mut list, mut new): (Vec<_>, Vec<_>) = std::mem::take(&mut st.list)
            .into_iter()
            .partition(|b| b.disk.is_some());
        new.reverse();
        list.append(&mut new);
        st.list = list;
        let cs = self.geo().cs();
        let mut frees: Vec<u64> = Vec::new();
        let mut entries: Vec<DirEntry> = Vec::with_capacity(st.list.len());
        let mut tables: Vec<Vec<u64>> = Vec::with_capacity(st.list.len());
        let old_ext = ext_of(&self.meta_read().h).and_then(|r| r.ok());
        let BitmapState { list, removed, .. } = &mut *st;
        for b in list.iter() {
            if b.inconsistent {
                // Kept exactly as on disk (it is only good for removal).
                if let Some(d) = &b.disk {
                    entries.push(d.clone());
                    tables.push(b.disk_table.clone());
                }
                continue;
            }
            let n = b.data.nchunks();
            let mut table = vec![0u64; n as usize];
            for (ci, slot) in table.iter_mut().enumerate() {
                if let Some(bytes) = b.data.chunk_bytes_of(ci as u64) {
                    let off = self.alloc_clusters(ws, 1)?;
                    self.write_meta(off, &bytes, 0)?;
                    *slot = off;
                }
            }
            let tcl = (n * 8).div_ceil(cs).max(1);
            let toff = self.alloc_clusters(ws, tcl)?;
            let mut tbuf = vec![0u8; (tcl * cs) as usize];
            for (i, &x) in table.iter().enumerate() {
                tbuf[i * 8..i * 8 + 8].copy_from_slice(&x.to_be_bytes());
            }
            self.write_meta(toff, &tbuf, 0)?;
            let old_flags = b.disk.as_ref().map_or(0, |d| d.flags);
            entries.push(DirEntry {
                table_offset: toff,
                table_size: n.max(1) as u32,
                flags: (old_flags & FLAG_EXTRA_DATA_COMPATIBLE)
                    | if b.enabled { FLAG_AUTO } else { 0 },
                ty: dir::TYPE_DIRTY_TRACKING,
                granularity_bits: b.gran_bits as u8,
                extra: b.disk.as_ref().map_or_else(Vec::new, |d| d.extra.clone()),
                name: b.name.clone(),
            });
            tables.push(table);
        }
        let new_ext = if entries.is_empty() {
            None
        } else {
            let buf = dir::serialize_directory(&entries);
            let dcl = (buf.len() as u64).div_ceil(cs);
            let doff = self.alloc_clusters(ws, dcl)?;
            self.write_meta(doff, &buf, 0)?;
            Some(BitmapsExt {
                nb_bitmaps: entries.len() as u32,
                dir_size: buf.len() as u64,
                dir_offset: doff,
            })
        };
        // The old directory, and the old tables and data of every bitmap
        // rewritten or removed (inconsistent ones keep theirs).
        let rewritten = list
            .iter()
            .filter(|b| !b.inconsistent)
            .filter_map(|b| b.disk.as_ref().map(|d| (d, b.disk_table.as_slice())))
            .chain(removed.iter().map(|(d, t)| (d, t.as_slice())));
        frees.extend(super::clusters_of(old_ext.as_ref(), rewritten, cs));
        {
            let mut m = self.meta_write();
            set_ext(&mut m.h, new_ext);
            m.header_dirty = true;
            self.refresh_overlap(&m, ws);
        }
        // A damaged table may name clusters past the end of the file (QEMU
        // reads them as zeros) or otherwise never allocated: freeing those
        // would underflow their refcount, so they are left alone (QEMU's
        // free fails on them and leaves them too).
        for off in frees {
            if self.get_refcount(ws, off / cs)? == 0 {
                log::warn!("qcow2: bitmap cluster {off:#x} is not allocated: not freed");
                continue;
            }
            ws.deferred.push(Deferred {
                offset: off,
                clusters: 1,
                punch: true,
            });
        }
        for ((b, e), t) in st.list.iter_mut().zip(entries).zip(tables) {
            b.disk = Some(e);
            b.disk_table = t;
        }
        st.removed.clear();
        st.changed = false;
        st.in_use_on_disk = false;
        Ok(())
    }
}
