//! `amend` (`qemu-img amend`): the option schema and the changes QEMU's
//! qcow2 driver allows on an existing image, in QEMU's order: upgrade,
//! refcount width, data-file flags and name, backing check, lazy
//! refcounts, size, downgrade (which expands zero clusters).

use crate::layout::features::{
    AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, INCOMPAT_DIRTY,
};
use crate::layout::mapping::{ClusterType, L1E_OFFSET_MASK};
use crate::layout::snapshot::Snapshot;
use crate::node::Qcow2Node;
use block_core::engine::amend_options::parse_amend_options;
use block_core::engine::encryption_options::luks_amend_options;
use block_core::{
    AmendControl, BlockError, ErrorKind, OptDesc, OptionValues, Preallocation, Result,
};

/// The amend option schema (names and help as qemu-img's): the options
/// create shares with amend, without defaults, and LUKS key-slot changes.
pub fn amend_options() -> Vec<OptDesc> {
    let create = crate::ops::create::create_options();
    let common = |names: &[&str]| -> Vec<OptDesc> {
        let row = |n: &&str| create.iter().find(|d| d.name == *n);
        let no_default = |d: &OptDesc| OptDesc {
            default: None,
            ..d.clone()
        };
        names.iter().filter_map(row).map(no_default).collect()
    };
    let mut rows = common(&["size", "compat", "backing_file", "backing_fmt", "data_file"]);
    rows.extend(common(&["data_file_raw"]));
    rows.extend(luks_amend_options());
    rows.extend(common(&["lazy_refcounts", "refcount_bits"]));
    rows
}

fn invalid(msg: impl Into<String>) -> BlockError {
    BlockError::invalid("amend", msg)
}

/// Parses amend options as QEMU: the typed values (the engine's
/// `parse_amend_options`), then the checks of its option loop in schema
/// order. Returns the values and the requested version.
pub(crate) fn parse(options: &[(String, String)]) -> Result<(OptionValues, Option<u32>)> {
    let create = crate::ops::create::create_options();
    let o = parse_amend_options(&amend_options(), &create, options)?;
    let version = match o.get("compat") {
        None => None,
        Some("0.10" | "v2") => Some(2),
        Some("1.1" | "v3") => Some(3),
        Some(c) => return Err(invalid(format!("Unknown compatibility level {c}"))),
    };
    let encrypt = o.values.iter().any(|(k, _)| k.starts_with("encrypt."));
    let msg = "Can't amend encryption options - encryption not present";
    block_core::options::refuse_if(encrypt, "amend", msg)?;
    if let Some(n) = o.get_u64("refcount_bits")? {
        // The version check is the amend's own (against the image).
        crate::ops::create::validate_refcount_bits("amend", true, n, "")?;
    }
    Ok((o, version))
}

/// Sets or clears `flag` in the feature bits `bits`.
fn set_flag(bits: &mut u64, flag: u64, on: bool) {
    *bits = (*bits & !flag) | if on { flag } else { 0 };
}

impl AmendControl for Qcow2Node {
    /// Applies `qemu-img amend` options to the open image.
    fn amend(&self, options: &[(String, String)]) -> Result<()> {
        self.check_writable("amend")?;
        let (o, version) = parse(options).map_err(|e| self.ctx(e))?;
        let size = o.get_size("size")?.unwrap_or(0);
        let (backing_file, backing_fmt) = (o.get_str("backing_file"), o.get_str("backing_fmt"));
        let (data_file, data_file_raw) = (o.get_str("data_file"), o.get_flag("data_file_raw"));
        let (lazy_refcounts, refcount_bits) =
            (o.get_flag("lazy_refcounts"), o.get_u64("refcount_bits")?);
        let m = self.meta_read();
        let (old_version, has_data_file, raw_now) =
            (m.h.version, m.h.has_data_file(), m.h.data_file_raw());
        let lazy_now = m.h.lazy_refcounts();
        let backing_now = (m.h.backing_file.clone(), m.h.backing_format.clone());
        drop(m);
        let refuse = |bad: bool, msg: &str| bad.then(|| self.ctx(invalid(msg))).map_or(Ok(()), Err);
        let msg = "data-file can only be set for images that use an external data file";
        refuse(data_file.is_some() && !has_data_file, msg)?;
        let msg = "data-file-raw cannot be set on existing images";
        refuse(data_file_raw == Some(true) && !raw_now, msg)?;
        let new_version = version.unwrap_or(old_version);
        // Every refusal that the options alone decide comes before the
        // first change, so that a refused amend changes nothing.
        let msg = "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)";
        let v2 = new_version < 3;
        refuse(v2 && lazy_refcounts == Some(true) && !lazy_now, msg)?;
        let bits_now = u64::from(self.geo().refcount_bits());
        let msg = "Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)";
        let other_width = refcount_bits.is_some_and(|b| b != bits_now && b != 16);
        refuse(v2 && other_width, msg)?;
        let given = backing_file.is_some() || backing_fmt.is_some();
        let msg = "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.";
        refuse(given && (backing_file, backing_fmt) != backing_now, msg)?;
        if size != 0 {
            self.resize_precheck(size, Preallocation::Off)?;
        }
        self.bitmaps_before_change()?;

        // Upgrade first (some features need compat=1.1).
        if new_version > old_version {
            self.upgrade()?;
        }
        // The width a version-2 image may not have was refused above.
        if let Some(bits) = refcount_bits.filter(|&b| b != bits_now) {
            self.change_refcount_order(bits.trailing_zeros())?;
        }
        {
            let mut ws = self.wlock();
            {
                let mut m = self.meta_write();
                let raw = data_file_raw.unwrap_or(raw_now);
                set_flag(&mut m.h.autoclear_features, AUTOCLEAR_DATA_FILE_RAW, raw);
                if let Some(df) = &data_file {
                    m.h.data_file = Some(df.clone()).filter(|s| !s.is_empty());
                }
                m.header_dirty = true;
            }
            self.writeback(&mut ws, false)?;
        }
        if let Some(lazy) = lazy_refcounts {
            self.set_lazy_refcounts(lazy)?;
        }
        if size != 0 {
            self.truncate_impl(size, Preallocation::Off)?;
        }
        // Downgrade last (unsupported features can be removed before).
        if new_version < old_version {
            self.downgrade()?;
        }
        Ok(())
    }
}

impl Qcow2Node {
    /// Sets or clears lazy refcounts (turning them on in a version-2 image
    /// was refused before the first change).
    fn set_lazy_refcounts(&self, lazy: bool) -> Result<()> {
        if lazy == self.meta_read().h.lazy_refcounts() {
            return Ok(());
        }
        let mut ws = self.wlock();
        if !lazy {
            self.mark_clean(&mut ws)?;
        }
        {
            let mut m = self.meta_write();
            set_flag(&mut m.h.compatible_features, COMPAT_LAZY_REFCOUNTS, lazy);
            m.header_dirty = true;
        }
        self.writeback(&mut ws, false)
    }

    /// Version 2 → 3: snapshots get v3 extra data (disk size).
    fn upgrade(&self) -> Result<()> {
        let mut ws = self.wlock();
        let (needs, list) = {
            let m = self.meta_read();
            let needs = m.snapshots.iter().any(|s| s.disk_size.is_none());
            let size = Some(m.h.size);
            let fill = |s: &Snapshot| Snapshot {
                disk_size: s.disk_size.or(size),
                ..s.clone()
            };
            (needs, m.snapshots.iter().map(fill).collect())
        };
        if needs {
            self.store_snapshots(&mut ws, list)?;
        }
        {
            let mut m = self.meta_write();
            m.h.version = 3;
            m.header_dirty = true;
            let mut g = self.geo();
            g.version = 3;
            self.set_geo(g);
        }
        self.writeback(&mut ws, false)
    }

    /// Version 3 → 2, refusing what version 2 cannot express, as QEMU.
    fn downgrade(&self) -> Result<()> {
        let unsupported = |m: &str| self.ctx(BlockError::new(ErrorKind::Unsupported, "amend", m));
        let refuse = |bad: bool, msg: &str| bad.then(|| unsupported(msg)).map_or(Ok(()), Err);
        let (has_data_file, snapshots_bad) = {
            let m = self.meta_read();
            let bad = |s: &Snapshot| {
                s.vm_state_size > u64::from(u32::MAX) || s.disk_size.is_some_and(|d| d != m.h.size)
            };
            (m.h.has_data_file(), m.snapshots.iter().any(bad))
        };
        let msg = "compat=0.10 requires refcount_bits=16";
        refuse(self.geo().refcount_order != 4, msg)?;
        let msg = "Cannot downgrade an image with a data file";
        refuse(self.data_file.is_some() || has_data_file, msg)?;
        let msg = "Internal snapshots prevent downgrade of image";
        refuse(snapshots_bad, msg)?;
        let mut ws = self.wlock();
        if self.dirty_set.load(std::sync::atomic::Ordering::Acquire)
            || self.meta_read().h.incompatible_features & INCOMPAT_DIRTY != 0
        {
            self.mark_clean(&mut ws)?;
        }
        let incompat = self.meta_read().h.incompatible_features & !INCOMPAT_DIRTY;
        let bits = incompat & !INCOMPAT_COMPRESSION;
        let msg = format!("Cannot downgrade an image with incompatible features {bits:#x} set");
        refuse(bits != 0, &msg)?;
        {
            let mut m = self.meta_write();
            m.h.compatible_features = 0;
            m.h.autoclear_features = 0;
        }
        self.expand_zero_clusters(&mut ws)?;
        let msg =
            "Cannot downgrade an image with zstd compression type and existing compressed clusters";
        let zstd = incompat & INCOMPAT_COMPRESSION != 0;
        refuse(zstd && self.has_compressed_clusters()?, msg)?;
        {
            let mut m = self.meta_write();
            m.h.version = 2;
            m.h.incompatible_features = 0;
            m.h.compression_type = 0;
            m.header_dirty = true;
            let mut g = self.geo();
            g.version = 2;
            g.compression_type = 0;
            self.set_geo(g);
        }
        self.writeback(&mut ws, true)
    }

    /// True when an active L2 entry is compressed.
    fn has_compressed_clusters(&self) -> Result<bool> {
        let g = self.geo();
        let l1 = self.meta_read().l1.clone();
        for off in l1.iter().map(|e| e & L1E_OFFSET_MASK).filter(|&o| o != 0) {
            let compressed = |e: &u64| g.cluster_type(*e) == ClusterType::Compressed;
            if self.l2_entries(off)?.iter().any(compressed) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
