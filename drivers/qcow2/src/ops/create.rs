//! Image creation with qemu-img's qcow2 options and QEMU's initial layout:
//! header at 0, refcount table at 1 cluster, refcount block at 2
//! clusters, then the L1 table allocated by the initial resize.

use crate::layout::compress;
use crate::layout::features;
use crate::layout::header::{Header, V2_HEADER_LEN, V3_HEADER_LEN};
use crate::meta::refcount::rc_set;
use crate::open;
use block_core::engine::encryption_options::{encryption_create_options, refuse_create_encryption};
use block_core::options::refuse_if;
use block_core::{
    engine, BlockError, ErrorKind, HostServices, OptDesc, OptType, OptionValues, Preallocation,
    Result,
};
use std::sync::Arc;

/// The create option schema (names as qemu-img), one row per option.
#[rustfmt::skip]
pub fn create_options() -> Vec<OptDesc> {
    use OptType::{Bool, Number, OneOf, Size, Text};
    let mut rows = block_core::declare(&[
        ("size", Size, None, "Virtual disk size"),
        ("compat", OneOf(&["0.10", "v2", "1.1", "v3"]), Some("1.1"), "Compatibility level (v2 [0.10] or v3 [1.1])"),
        ("backing_file", Text, None, "File name of a base image"),
        ("backing_fmt", Text, None, "Image format of the base image"),
        ("data_file", Text, None, "File name of an external data file"),
        ("data_file_raw", Bool, Some("off"), "The external data file must stay valid as a raw image"),
        ("cluster_size", Size, Some("65536"), "qcow2 cluster size"),
        ("preallocation", OneOf(&["off", "metadata", "falloc", "full"]), Some("off"),
            "Preallocation mode (allowed values: off, metadata, falloc, full)"),
        ("lazy_refcounts", Bool, Some("off"), "Postpone refcount updates"),
        ("refcount_bits", Number, Some("16"), "Width of a reference count entry in bits"),
        ("compression_type", OneOf(&["zlib", "zstd"]), Some("zlib"),
            "Compression method used for image cluster compression"),
        ("extended_l2", Bool, Some("off"), "Extended L2 tables"),
    ]);
    // Known (as qemu-img lists them) so that they are refused with QEMU's
    // messages; blk cannot encrypt (`refuse_create_encryption`).
    let secret = "ID of secret providing qcow AES key or LUKS passphrase";
    rows.extend(encryption_create_options(&["aes", "luks"], secret));
    rows
}

/// The cluster size checks create and measure share, worded as QEMU's,
/// as errors of operation `op`.
pub fn validate_cluster_size(op: &'static str, cs: u64, extended_l2: bool) -> Result<()> {
    let bad = !cs.is_power_of_two() || !(512..=(2 << 20)).contains(&cs);
    refuse_if(
        bad,
        op,
        "Cluster size must be a power of two between 512 and 2048k",
    )?;
    let msg = "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes";
    refuse_if(extended_l2 && cs < 16384, op, msg)
}

/// The refcount width checks create and measure share, worded as QEMU's
/// (`use` names the version option in the hint: QEMU's create and measure
/// word it differently), as errors of operation `op`.
pub fn validate_refcount_bits(op: &'static str, v3: bool, bits: u64, use_: &str) -> Result<()> {
    let msg = "Refcount width must be a power of two and may not exceed 64 bits";
    refuse_if(!bits.is_power_of_two() || bits > 64, op, msg)?;
    let msg = "Different refcount widths than 16 bits require compatibility level 1.1";
    let msg = format!("{msg} or above (use {use_} or greater)");
    refuse_if(!v3 && bits != 16, op, &msg)
}

/// True when the active L1 table of an image of `size` bytes with clusters
/// of `cs` bytes stays within QEMU's limit (create and measure check it).
pub fn l1_fits(size: u64, cs: u64, extended_l2: bool) -> bool {
    let l2_entries = cs / if extended_l2 { 16 } else { 8 };
    size.div_ceil(cs).div_ceil(l2_entries) * 8 <= crate::layout::header::MAX_L1_BYTES
}

/// QEMU's words for a data file that cannot be preallocated.
const NO_SPACE: &str =
    "Could not resize image: Allocating clusters failed: No space left on device";

/// Creates a qcow2 image.
pub fn create(filename: &str, o: &OptionValues, host: Arc<dyn HostServices>) -> Result<()> {
    let ctx = |e: BlockError| e.in_file(filename.to_string());
    refuse_create_encryption(o).map_err(ctx)?;
    let (backing_file, backing_fmt) = engine::create::backing_options(filename, o)?;
    let v3 = matches!(o.get("compat"), Some("1.1") | Some("v3") | None);
    let data_file = o.get_str("data_file").filter(|s| !s.is_empty());
    let data_file_raw = o.get_bool("data_file_raw");
    let (lazy, ext_l2) = (o.get_bool("lazy_refcounts"), o.get_bool("extended_l2"));
    let cs = o.get_size("cluster_size").map_err(ctx)?.unwrap_or(65536);
    let rbits = o.get_u64("refcount_bits").map_err(ctx)?.unwrap_or(16);
    let zstd = o.get("compression_type") == Some("zstd");
    let ctype = if zstd {
        compress::TYPE_ZSTD
    } else {
        compress::TYPE_ZLIB
    };
    let mut prealloc = o.get_preallocation();

    // The checks in the order of QEMU's qcow2_co_create, worded as its.
    let refuse = |bad: bool, msg: &str| refuse_if(bad, "create", msg).map_err(ctx);
    let v3_only = |bad: bool, what: &str| {
        let msg = format!("{what} compatibility level 1.1 and above (use version=v3 or greater)");
        refuse(bad && !v3, &msg)
    };
    v3_only(ext_l2, "Extended L2 entries are only supported with")?;
    validate_cluster_size("create", cs, ext_l2).map_err(ctx)?;
    v3_only(lazy, "Lazy refcounts only supported with")?;
    validate_refcount_bits("create", v3, rbits, "version=v3").map_err(ctx)?;
    let (has_df, non_zlib) = (data_file.is_some(), ctype != compress::TYPE_ZLIB);
    v3_only(has_df, "External data files are only supported with")?;
    refuse(data_file_raw && !has_df, "data-file-raw requires data-file")?;
    v3_only(non_zlib, "Non-zlib compression type is only supported with")?;
    if data_file_raw && prealloc == Preallocation::Off {
        prealloc = Preallocation::Metadata;
    }
    let both = backing_file.is_some() && prealloc != Preallocation::Off;
    let msg =
        "Backing file and preallocation can only be used at the same time if extended_l2 is on";
    refuse(both && !ext_l2, msg)?;
    let (bf, bfmt) = (backing_file.as_deref(), backing_fmt.as_deref());
    let size = engine::create::virtual_size(filename, o, bf, bfmt, &*host)?.div_ceil(512) * 512;

    let refcount_order = rbits.trailing_zeros();
    let bit = |on: bool, b: u64| if on { b } else { 0 };
    let mut h = Header {
        version: if v3 { 3 } else { 2 },
        cluster_bits: cs.trailing_zeros(),
        refcount_table_offset: cs,
        refcount_table_clusters: 1,
        incompatible_features: bit(ctype != 0, features::INCOMPAT_COMPRESSION)
            | bit(ext_l2, features::INCOMPAT_EXTL2)
            | bit(data_file.is_some(), features::INCOMPAT_DATA_FILE),
        compatible_features: bit(lazy, features::COMPAT_LAZY_REFCOUNTS),
        autoclear_features: bit(data_file_raw, features::AUTOCLEAR_DATA_FILE_RAW),
        refcount_order,
        header_length: if v3 { V3_HEADER_LEN } else { V2_HEADER_LEN },
        compression_type: ctype,
        backing_file,
        backing_format: backing_fmt,
        data_file: data_file.clone(),
        ..Header::default()
    };
    let hdr = h.serialize().map_err(ctx)?;
    // A size the L1 table cannot map fails here, before any file is
    // created or emptied (QEMU finds out only at its first resize, after
    // it has emptied the file).
    if !l1_fits(size, cs, ext_l2) {
        let msg = "Active L1 table would exceed its size limit";
        return Err(ctx(BlockError::new(ErrorKind::OutOfRange, "resize", msg)));
    }

    if let Some(df) = &data_file {
        // As qemu-img: the name as given (relative to the working
        // directory), which is also how an open finds it.
        let allocates = matches!(prealloc, Preallocation::Falloc | Preallocation::Full);
        let fmode = Some(prealloc).filter(|_| allocates).unwrap_or_default();
        host.create_file(df, size, fmode)
            .map_err(|e| match e.kind {
                // QEMU preallocates the data file in the image's first
                // resize, and words a lack of space so.
                ErrorKind::NoSpace if allocates => ctx(BlockError::new(e.kind, "", NO_SPACE)),
                _ => e,
            })?;
    }
    // Header at 0, refcount table at 1 cluster (its entry 0 -> the block at
    // 2 clusters), refcount block counting these three clusters.
    let c = cs as usize;
    let mut buf = vec![0u8; 3 * c];
    buf[..hdr.len()].copy_from_slice(&hdr);
    buf[c..c + 8].copy_from_slice(&(2 * cs).to_be_bytes());
    for i in 0..3 {
        rc_set(&mut buf[2 * c..], i, refcount_order, 1);
    }
    engine::create::write_new_image(&*host, filename, &buf, "qcow2")?;
    // Open the new image and size it (allocating the L1 table).
    let size_it = |f: &crate::Qcow2Node| f.truncate_impl(size, prealloc);
    engine::create::open_and_size(filename, host, open::open, size_it)
}
