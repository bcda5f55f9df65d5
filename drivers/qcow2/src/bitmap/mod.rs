//! Persistent dirty bitmaps (the qcow2 bitmaps extension), as QEMU 10
//! keeps them:
//!
//! * at open the extension, the directory and every bitmap table are read
//!   and bounded (dir.rs), the bitmap data loaded into sparse in-memory
//!   bitmaps (mem.rs); an extension without the `bitmaps` autoclear bit
//!   was modified by a program without bitmap support and is dropped (its
//!   clusters then leak, as in QEMU);
//! * a writable, active open sets the in-use flag of every bitmap in the
//!   directory, in place (autoclear bit off, directory, autoclear bit on);
//!   a bitmap already in use at open is inconsistent: kept as it is on
//!   disk, usable only for removal;
//! * guest writes, zero writes and discards set bits in every enabled
//!   bitmap (`mark`);
//! * close and inactivate store them (store.rs): new data clusters and
//!   tables, a new directory, then the header switches to it, then the old
//!   clusters are freed;
//! * `check` counts the directory, tables and data clusters as in use
//!   (refs.rs); the operations of `qemu-img bitmap` are in ops.rs.

pub mod dir;
pub mod mem;
mod ops;
mod refs;
pub(crate) mod state;
mod store;

use crate::layout::features;
use crate::layout::header::{Header, EXT_BITMAPS};
use crate::node::Qcow2Node;
use block_core::engine::codec::Endian;
// Tables and bitmap clusters past the end of the file read as zeros, as
// QEMU's file protocol reads them (the callers bound the sizes).
use block_core::engine::padded_read::{read_padded, read_u64s_padded};
use block_core::{BlockError, BlockNode, Result};
use dir::{BitmapsExt, DirEntry, TABLE_ALL_ONES, TABLE_OFFSET_MASK, TABLE_RESERVED_MASK};
use mem::DirtyBitmap;
use std::sync::Arc;

pub(crate) use dir::ext_of;
pub(crate) use state::{clusters_of, Bitmap, BitmapState, Bitmaps};

/// The reason QEMU gives for refusing a snapshot revert with bitmaps.
pub const ACTIVE_BITMAPS: &str = "Device has active dirty bitmaps";

fn bad(msg: impl Into<String>) -> BlockError {
    BlockError::corrupt("open", msg)
}

/// Replaces (or with `None` removes) the bitmaps extension and sets the
/// autoclear bit accordingly.
pub(crate) fn set_ext(h: &mut Header, ext: Option<BitmapsExt>) {
    let data = ext.map(|e| e.serialize());
    let pos = h
        .other_extensions
        .iter()
        .position(|(t, _)| *t == EXT_BITMAPS);
    match (pos, data) {
        (Some(p), Some(d)) => h.other_extensions[p].1 = d,
        (None, Some(d)) => {
            // QEMU writes the bitmaps extension before unknown ones.
            h.other_extensions.insert(0, (EXT_BITMAPS, d))
        }
        (Some(p), None) => {
            h.other_extensions.remove(p);
        }
        (None, None) => {}
    }
    if ext.is_some() {
        h.autoclear_features |= features::AUTOCLEAR_BITMAPS;
    } else {
        h.autoclear_features &= !features::AUTOCLEAR_BITMAPS;
    }
}

/// Reads and checks the directory the extension names.
pub(crate) fn read_directory(
    file: &Arc<dyn BlockNode>,
    h: &Header,
    ext: &BitmapsExt,
    file_len: u64,
) -> Result<Vec<DirEntry>> {
    let buf = read_directory_bytes(file, ext, file_len)?;
    dir::parse_directory(&buf, ext, h.cluster_size(), h.size)
}

/// Reads the first bytes of the directory the extension names: the part
/// inside the file and at most [`dir::DIR_ZERO_TAIL`] zero bytes after it
/// (the rest of a directory past the end of the file reads as zeros too;
/// the parser never needs it).
pub(crate) fn read_directory_bytes(
    file: &Arc<dyn BlockNode>,
    ext: &BitmapsExt,
    file_len: u64,
) -> Result<Vec<u8>> {
    if ext.dir_size == 0 {
        return Err(bad("Requested bitmap directory size is zero"));
    }
    if beyond_max_length(ext.dir_offset, ext.dir_size) {
        return Err(bad("Failed to read bitmap directory: Input/output error"));
    }
    let inside = file_len.saturating_sub(ext.dir_offset);
    let n = ext.dir_size.min(inside.saturating_add(dir::DIR_ZERO_TAIL));
    let mut buf = vec![0u8; n as usize];
    read_padded(&**file, file_len, ext.dir_offset, &mut buf)?;
    Ok(buf)
}

/// The largest byte offset QEMU's block layer reads at (`BDRV_MAX_LENGTH`,
/// `INT64_MAX` aligned down to 1 GiB): a read reaching past it fails with
/// EIO there, before any protocol sees it.
const MAX_READ_END: u64 = (i64::MAX as u64) & !((1 << 30) - 1);

/// True when reading `len` bytes at `off` reaches past [`MAX_READ_END`].
fn beyond_max_length(off: u64, len: u64) -> bool {
    off.checked_add(len).is_none_or(|e| e > MAX_READ_END)
}

/// QEMU's error for a bitmap table it cannot load.
fn table_error(name: &str) -> BlockError {
    bad(format!(
        "Could not read bitmap_table table from image for bitmap '{name}': Invalid argument"
    ))
}

/// Reads the bitmap table of `e` and checks its entries (QEMU's
/// `bitmap_table_load`).
pub(crate) fn read_table(
    file: &Arc<dyn BlockNode>,
    e: &DirEntry,
    cs: u64,
    file_len: u64,
) -> Result<Vec<u64>> {
    if beyond_max_length(e.table_offset, u64::from(e.table_size) * 8) {
        return Err(bad(format!(
            "Could not read bitmap_table table from image for bitmap '{}': Input/output error",
            e.name
        )));
    }
    let t = read_table_raw(file, e, file_len)?;
    if t.iter().any(|&x| !table_entry_valid(x, cs)) {
        return Err(table_error(&e.name));
    }
    Ok(t)
}

/// Reads the bitmap table of `e` unchecked (`DirEntry::check` bounded its
/// size; zeros past the end of the file).
pub(crate) fn read_table_raw(
    file: &Arc<dyn BlockNode>,
    e: &DirEntry,
    file_len: u64,
) -> Result<Vec<u64>> {
    read_u64s_padded(
        &**file,
        file_len,
        e.table_offset,
        e.table_size as usize,
        Endian::Big,
    )
}

/// True when a bitmap table entry is well-formed (QEMU's
/// `check_table_entry`): no reserved bits, and an offset (if any)
/// cluster-aligned and without the all-ones bit. An offset past the end
/// of the file is well-formed: it reads as zeros, and check reports it.
pub(crate) fn table_entry_valid(x: u64, cs: u64) -> bool {
    let off = x & TABLE_OFFSET_MASK;
    x & TABLE_RESERVED_MASK == 0 && (off == 0 || (x & TABLE_ALL_ONES == 0 && off % cs == 0))
}

/// Loads the bitmaps of an image as QEMU's `qcow2_load_dirty_bitmaps`
/// does: any error refuses the open, for check too (as `qemu-img check`
/// refuses such images). An extension without the autoclear bit is
/// dropped from `h` (with QEMU's warning). A bitmap in use on disk is not
/// loaded; its table is kept only when well-formed (else removing the
/// bitmap leaks its data clusters rather than freeing what a damaged table
/// names).
pub(crate) fn load(file: &Arc<dyn BlockNode>, h: &mut Header) -> Result<BitmapState> {
    let Some(ext) = ext_of(h) else {
        return Ok(BitmapState::default());
    };
    if h.autoclear_features & features::AUTOCLEAR_BITMAPS == 0 {
        if h.version < 3 {
            log::warn!("This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent");
        } else {
            log::warn!("a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent");
        }
        block_core::hint!(
            "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix."
        );
        set_ext(h, None);
        return Ok(BitmapState::default());
    }
    let ext = ext?;
    let flen = file.length()?;
    let cs = h.cluster_size();
    let entries = read_directory(file, h, &ext, flen)?;
    let mut list = Vec::with_capacity(entries.len());
    for e in entries {
        let mut data = DirtyBitmap::new(u32::from(e.granularity_bits), h.size, cs);
        let table = if e.in_use() {
            let t = read_table_raw(file, &e, flen)?;
            if t.iter().all(|&x| table_entry_valid(x, cs)) {
                t
            } else {
                log::debug!(
                    "qcow2: bitmap '{}' is in use and its table is damaged: removing it leaks its clusters",
                    e.name
                );
                Vec::new()
            }
        } else {
            let table = read_table(file, &e, cs, flen)?;
            // QEMU's load_bitmap_data: the table has exactly one entry per
            // bitmap data cluster.
            if table.len() as u64 != data.nchunks() {
                return Err(bad(format!(
                    "Could not read bitmap '{}' from image: Invalid argument",
                    e.name
                )));
            }
            for (ci, &x) in table.iter().enumerate() {
                let off = x & TABLE_OFFSET_MASK;
                if off != 0 {
                    let mut buf = vec![0u8; cs as usize];
                    read_padded(&**file, flen, off, &mut buf)?;
                    data.load_chunk(ci as u64, &buf);
                } else if x & TABLE_ALL_ONES != 0 {
                    data.set_bits(ci as u64 * cs * 8, (ci as u64 + 1) * cs * 8 - 1);
                }
            }
            table
        };
        list.push(Bitmap {
            name: e.name.clone(),
            gran_bits: u32::from(e.granularity_bits),
            enabled: e.flags & dir::FLAG_AUTO != 0,
            inconsistent: e.in_use(),
            data,
            disk: Some(e),
            disk_table: table,
        });
    }
    let st = BitmapState {
        list,
        ..BitmapState::default()
    };
    // No cluster may belong to two bitmap structures: the store frees
    // them all, and a shared one would be freed twice.
    let mut all = st.disk_clusters(Some(&ext), cs);
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    if all.len() != n {
        return Err(bad("a cluster is used twice by the bitmaps extension"));
    }
    Ok(st)
}

impl Qcow2Node {
    /// Marks a guest range dirty in the enabled bitmaps (every write, zero
    /// write and discard, before it runs).
    pub(crate) fn bitmaps_mark(&self, offset: u64, len: u64) {
        self.bitmaps.mark(offset, len);
    }

    /// Refuses bitmaps whose clusters overlap other metadata (the header,
    /// L1/L2 tables, refcount structures, snapshot tables): storing them
    /// would free those clusters.
    pub(crate) fn bitmaps_check_overlap(&self) -> Result<()> {
        let cs = self.geo().cs();
        let ext = ext_of(&self.meta_read().h).and_then(|r| r.ok());
        let clusters = self.bitmaps.lock().disk_clusters(ext.as_ref(), cs);
        let map = self.overlap.get();
        for off in clusters {
            if let Some(k) = map.check(off, cs, crate::layout::overlap::kind::BITMAP_DIRECTORY) {
                return Err(self.ctx(
                    bad(format!(
                        "bitmap cluster at {off:#x} overlaps with {}",
                        crate::layout::overlap::kind_name(k)
                    ))
                    .at(off),
                ));
            }
        }
        Ok(())
    }

    /// QEMU refuses to revert to a snapshot while the image has dirty
    /// bitmaps (they would not describe the reverted disk).
    pub(crate) fn bitmaps_snapshot_apply_check(&self) -> Result<()> {
        if self.bitmaps.lock().list.is_empty() {
            return Ok(());
        }
        Err(self.ctx(BlockError::new(
            block_core::ErrorKind::Busy,
            "snapshot_apply",
            ACTIVE_BITMAPS,
        )))
    }

    /// QEMU's `qcow2_truncate_bitmaps_check`: an inconsistent bitmap
    /// cannot be resized, so neither can the image.
    pub(crate) fn bitmaps_resize_check(&self) -> Result<()> {
        let st = self.bitmaps.lock();
        if let Some(b) = st.list.iter().find(|b| b.inconsistent) {
            return Err(self.ctx(BlockError::invalid(
                "resize",
                format!(
                    "Bitmap '{}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk",
                    b.name
                ),
            )));
        }
        Ok(())
    }

    /// After a resize: every bitmap covers the new size (bits past a new,
    /// smaller end are dropped; a grown area starts clean, as in QEMU).
    pub(crate) fn bitmaps_resized(&self, size: u64) {
        let mut st = self.bitmaps.lock();
        for b in st.list.iter_mut() {
            b.data.resize(size);
        }
        if !st.list.is_empty() {
            st.changed = true;
        }
    }

    /// The autoclear bits a writer keeps: raw data file, and bitmaps while
    /// the extension is loaded.
    pub(crate) fn autoclear_kept(&self, h: &Header) -> u64 {
        let mut kept = features::AUTOCLEAR_KEPT;
        if ext_of(h).is_some() {
            kept |= features::AUTOCLEAR_BITMAPS;
        }
        kept
    }

    /// `format-specific.data.bitmaps` of `qemu-img info`: the directory
    /// on disk, as QEMU reports it (`None`: no bitmaps).
    pub(crate) fn bitmaps_info(&self) -> Option<serde_json::Value> {
        let st = self.bitmaps.lock();
        let list: Vec<serde_json::Value> = st
            .list
            .iter()
            .filter_map(|b| b.disk.as_ref())
            .map(|e| {
                let mut flags = Vec::new();
                if e.flags & dir::FLAG_IN_USE != 0 {
                    flags.push("in-use");
                }
                if e.flags & dir::FLAG_AUTO != 0 {
                    flags.push("auto");
                }
                serde_json::json!({
                    "flags": flags,
                    "name": e.name,
                    "granularity": 1u64 << e.granularity_bits,
                })
            })
            .collect();
        if list.is_empty() {
            return None;
        }
        Some(serde_json::Value::Array(list))
    }
}
