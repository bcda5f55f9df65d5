//! `amend` (`qemu-img amend`): the option schema and the changes QEMU's
//! qcow2 driver allows on an existing image, in QEMU's order: upgrade,
//! refcount width, data-file flags and name, backing check, lazy
//! refcounts, size, downgrade (which expands zero clusters).

use crate::layout::features::{
    AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, INCOMPAT_COMPRESSION, INCOMPAT_DIRTY,
};
use crate::node::Qcow2Node;
use block_core::{parse_size, BlockError, ErrorKind, OptDesc, OptType, Preallocation, Result};

/// The amend option schema (names and help as qemu-img's), one row per
/// option.
#[rustfmt::skip]
pub fn amend_options() -> Vec<OptDesc> {
    use OptType::{Bool, Number, OneOf, Size, Text};
    block_core::declare(&[
        ("size", Size, None, "Virtual disk size"),
        ("compat", OneOf(&["0.10", "v2", "1.1", "v3"]), None, "Compatibility level (v2 [0.10] or v3 [1.1])"),
        ("backing_file", Text, None, "File name of a base image"),
        ("backing_fmt", Text, None, "Image format of the base image"),
        ("data_file", Text, None, "File name of an external data file"),
        ("data_file_raw", Bool, None, "The external data file must stay valid as a raw image"),
        ("encrypt.new-secret", Text, None, "New secret to set in the matching keyslots. Empty string to erase"),
        ("encrypt.state", Text, None, "Select new state of affected keyslots (active/inactive)"),
        ("encrypt.old-secret", Text, None, "Select all keyslots that match this password"),
        ("encrypt.keyslot", Number, None, "Select a single keyslot to modify explicitly"),
        ("encrypt.iter-time", Number, None, "Time to spend in PBKDF in milliseconds"),
        ("lazy_refcounts", Bool, None, "Postpone refcount updates"),
        ("refcount_bits", Number, None, "Width of a reference count entry in bits"),
    ])
}

/// What an amend request asks for, parsed and checked like QEMU.
#[derive(Debug, Default)]
struct Request {
    version: Option<u32>,
    size: u64,
    backing_file: Option<String>,
    backing_fmt: Option<String>,
    data_file: Option<String>,
    data_file_raw: Option<bool>,
    lazy_refcounts: Option<bool>,
    refcount_bits: Option<u64>,
}

fn invalid(msg: impl Into<String>) -> BlockError {
    BlockError::invalid("amend", msg)
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(invalid(format!("Parameter '{name}' expects 'on' or 'off'"))),
    }
}

fn parse(options: &[(String, String)]) -> Result<Request> {
    let schema = amend_options();
    let create = crate::ops::create::create_options();
    for (k, _) in options {
        if schema.iter().any(|d| &d.name == k) {
            continue;
        }
        if create.iter().any(|d| &d.name == k) || k.starts_with("encrypt.") {
            return Err(invalid(format!(
                "Invalid parameter '{k}'\nThis option is only supported for image creation"
            )));
        }
        return Err(invalid(format!("Invalid parameter '{k}'")));
    }
    // Value syntax first (QEMU parses the option string before amending).
    let get = |name: &str| {
        options
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut r = Request::default();
    if let Some(v) = get("size") {
        r.size = parse_size(v).map_err(|_| {
            invalid(
                "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.",
            )
        })?;
    }
    if let Some(v) = get("data_file_raw") {
        r.data_file_raw = Some(parse_bool("data_file_raw", v)?);
    }
    if let Some(v) = get("lazy_refcounts") {
        r.lazy_refcounts = Some(parse_bool("lazy_refcounts", v)?);
    }
    if let Some(v) = get("refcount_bits") {
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| invalid("Parameter 'refcount_bits' expects a number"))?;
        r.refcount_bits = Some(n);
    }
    // Then the semantic checks of QEMU's option loop, in schema order.
    if let Some(c) = get("compat") {
        r.version = Some(match c {
            "0.10" | "v2" => 2,
            "1.1" | "v3" => 3,
            _ => return Err(invalid(format!("Unknown compatibility level {c}"))),
        });
    }
    r.backing_file = get("backing_file").map(str::to_string);
    r.backing_fmt = get("backing_fmt").map(str::to_string);
    r.data_file = get("data_file").map(str::to_string);
    if options.iter().any(|(k, _)| k.starts_with("encrypt.")) {
        return Err(invalid(
            "Can't amend encryption options - encryption not present",
        ));
    }
    if let Some(n) = r.refcount_bits {
        if n == 0 || n > 64 || !n.is_power_of_two() {
            return Err(invalid(
                "Refcount width must be a power of two and may not exceed 64 bits",
            ));
        }
    }
    Ok(r)
}

impl Qcow2Node {
    /// Applies `qemu-img amend` options to the open image.
    pub(crate) fn amend_impl(&self, options: &[(String, String)]) -> Result<()> {
        self.check_writable("amend")?;
        let r = parse(options).map_err(|e| self.ctx(e))?;
        let (old_version, has_data_file, raw_now) = {
            let m = self.meta_read();
            (m.h.version, m.h.has_data_file(), m.h.data_file_raw())
        };
        if r.data_file.is_some() && !has_data_file {
            return Err(self.ctx(invalid(
                "data-file can only be set for images that use an external data file",
            )));
        }
        if r.data_file_raw == Some(true) && !raw_now {
            return Err(self.ctx(invalid("data-file-raw cannot be set on existing images")));
        }
        let new_version = r.version.unwrap_or(old_version);
        // Every refusal that the options alone decide comes before the
        // first change, so that a refused amend changes nothing.
        if new_version < 3 {
            let lazy_now = self.meta_read().h.lazy_refcounts();
            if r.lazy_refcounts == Some(true) && !lazy_now {
                return Err(self.ctx(invalid(
                    "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)",
                )));
            }
            let bits_now = u64::from(self.geo().refcount_bits());
            if r.refcount_bits.is_some_and(|b| b != bits_now && b != 16) {
                return Err(self.ctx(invalid(
                    "Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)",
                )));
            }
        }
        if r.backing_file.is_some() || r.backing_fmt.is_some() {
            let m = self.meta_read();
            if r.backing_file != m.h.backing_file || r.backing_fmt != m.h.backing_format {
                return Err(self.ctx(invalid(
                    "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.",
                )));
            }
        }
        if r.size != 0 {
            self.resize_precheck(r.size, Preallocation::Off)?;
        }
        self.bitmaps_before_change()?;

        // Upgrade first (some features need compat=1.1).
        if new_version > old_version {
            self.upgrade()?;
        }
        if let Some(bits) = r.refcount_bits {
            // The width a version-2 image may not have was refused above.
            if bits != u64::from(self.geo().refcount_bits()) {
                self.change_refcount_order(bits.trailing_zeros())?;
            }
        }
        {
            let mut ws = self.wlock();
            {
                let mut m = self.meta_write();
                let raw = r.data_file_raw.unwrap_or(raw_now);
                if raw {
                    m.h.autoclear_features |= AUTOCLEAR_DATA_FILE_RAW;
                } else {
                    m.h.autoclear_features &= !AUTOCLEAR_DATA_FILE_RAW;
                }
                if let Some(df) = &r.data_file {
                    m.h.data_file = Some(df.clone()).filter(|s| !s.is_empty());
                }
                m.header_dirty = true;
            }
            self.writeback(&mut ws, false)?;
        }
        if let Some(lazy) = r.lazy_refcounts {
            self.set_lazy_refcounts(lazy)?;
        }
        if r.size != 0 {
            self.truncate_impl(r.size, Preallocation::Off)?;
        }
        // Downgrade last (unsupported features can be removed before).
        if new_version < old_version {
            self.downgrade()?;
        }
        Ok(())
    }

    /// Sets or clears lazy refcounts (turning them on in a version-2 image
    /// was refused before the first change).
    fn set_lazy_refcounts(&self, lazy: bool) -> Result<()> {
        if lazy == self.meta_read().h.lazy_refcounts() {
            return Ok(());
        }
        let mut ws = self.wlock();
        if lazy {
            let mut m = self.meta_write();
            m.h.compatible_features |= COMPAT_LAZY_REFCOUNTS;
            m.header_dirty = true;
        } else {
            self.mark_clean(&mut ws)?;
            let mut m = self.meta_write();
            m.h.compatible_features &= !COMPAT_LAZY_REFCOUNTS;
            m.header_dirty = true;
        }
        self.writeback(&mut ws, false)
    }

    /// Version 2 → 3: snapshots get v3 extra data (disk size).
    fn upgrade(&self) -> Result<()> {
        let mut ws = self.wlock();
        let (needs, list) = {
            let m = self.meta_read();
            let mut list = m.snapshots.clone();
            let mut needs = false;
            for s in &mut list {
                if s.disk_size.is_none() {
                    s.disk_size = Some(m.h.size);
                    needs = true;
                }
            }
            (needs, list)
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
        let fail =
            |msg: String| Err(self.ctx(BlockError::new(ErrorKind::Unsupported, "amend", msg)));
        if self.geo().refcount_order != 4 {
            return fail("compat=0.10 requires refcount_bits=16".into());
        }
        if self.data_file.is_some() || self.meta_read().h.has_data_file() {
            return fail("Cannot downgrade an image with a data file".into());
        }
        {
            let m = self.meta_read();
            let bad = m.snapshots.iter().any(|s| {
                s.vm_state_size > u64::from(u32::MAX) || s.disk_size.is_some_and(|d| d != m.h.size)
            });
            if bad {
                drop(m);
                return fail("Internal snapshots prevent downgrade of image".into());
            }
        }
        let mut ws = self.wlock();
        if self.dirty_set.load(std::sync::atomic::Ordering::Acquire)
            || self.meta_read().h.incompatible_features & INCOMPAT_DIRTY != 0
        {
            self.mark_clean(&mut ws)?;
        }
        let incompat = self.meta_read().h.incompatible_features & !INCOMPAT_DIRTY;
        if incompat & !INCOMPAT_COMPRESSION != 0 {
            return fail(format!(
                "Cannot downgrade an image with incompatible features {:#x} set",
                incompat & !INCOMPAT_COMPRESSION
            ));
        }
        {
            let mut m = self.meta_write();
            m.h.compatible_features = 0;
            m.h.autoclear_features = 0;
        }
        self.expand_zero_clusters(&mut ws)?;
        if incompat & INCOMPAT_COMPRESSION != 0 {
            if self.has_compressed_clusters()? {
                return fail(
                    "Cannot downgrade an image with zstd compression type and existing compressed clusters"
                        .into(),
                );
            }
            let mut m = self.meta_write();
            m.h.incompatible_features &= !INCOMPAT_COMPRESSION;
            m.h.compression_type = 0;
        }
        {
            let mut m = self.meta_write();
            m.h.version = 2;
            m.h.incompatible_features = 0;
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
        let es = g.l2_entry_size() as usize;
        let l1 = self.meta_read().l1.clone();
        for e in l1 {
            let off = e & crate::layout::mapping::L1E_OFFSET_MASK;
            if off == 0 {
                continue;
            }
            let t = self.l2_table(off)?;
            let d = t.read();
            for i in 0..g.l2_entries() as usize {
                let entry = crate::layout::header::get_u64(&d, i * es);
                if g.cluster_type(entry) == crate::layout::mapping::ClusterType::Compressed {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Request> {
        let v: Vec<(String, String)> = s
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        parse(&v)
    }

    #[test]
    fn parse_like_qemu() {
        let e = p("cluster_size=4k").unwrap_err();
        assert!(
            e.message.contains("only supported for image creation"),
            "{e}"
        );
        let e = p("foo=bar").unwrap_err();
        assert_eq!(e.message, "Invalid parameter 'foo'");
        let e = p("lazy_refcounts=maybe").unwrap_err();
        assert_eq!(
            e.message,
            "Parameter 'lazy_refcounts' expects 'on' or 'off'"
        );
        let e = p("refcount_bits=3").unwrap_err();
        assert!(e
            .message
            .starts_with("Refcount width must be a power of two"));
        let e = p("compat=0.9").unwrap_err();
        assert_eq!(e.message, "Unknown compatibility level 0.9");
        let r = p("compat=v2,size=1M,refcount_bits=64").unwrap();
        assert_eq!(
            (r.version, r.size, r.refcount_bits),
            (Some(2), 1 << 20, Some(64))
        );
    }
}
