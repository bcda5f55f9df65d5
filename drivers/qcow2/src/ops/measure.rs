//! `measure` (`qemu-img measure`): the file size a new qcow2 image needs,
//! computed exactly as QEMU's qcow2 driver does.

use crate::ops::create::{l1_fits, validate_cluster_size, validate_refcount_bits};
use block_core::engine::measure::{measure_clusters, MeasurePlan};
use block_core::engine::refcount_alloc::self_describing_layout;
use block_core::options::refuse_if;
use block_core::{BlockError, MeasureRequest, MeasureResult, OptionValues, Result};

/// The size of a fully preallocated image (header, L1, L2 tables,
/// refcount structures and every data cluster), as QEMU computes it: the
/// refcount table and blocks count all clusters and themselves (QEMU's
/// fixed-point iteration, the engine's `self_describing_layout`).
pub fn prealloc_size(total: u64, cluster_size: u64, refcount_order: u32, extended_l2: bool) -> u64 {
    let l2e = if extended_l2 { 16 } else { 8 };
    let aligned = total.div_ceil(cluster_size) * cluster_size;
    // The header, whole L2 tables for every cluster, whole L1 clusters.
    let l2_tables = (aligned / cluster_size).div_ceil(cluster_size / l2e);
    let l1_clusters = l2_tables.div_ceil(cluster_size / 8);
    let mut meta = (1 + l2_tables + l1_clusters) * cluster_size;
    let per_block = (cluster_size * 8) >> refcount_order;
    let clusters = (meta + aligned) / cluster_size;
    let (blocks, table) = self_describing_layout(clusters, per_block, cluster_size);
    meta += (blocks + table) * cluster_size;
    meta + aligned
}

/// Measures an image created with `req.options`: empty (`data_extents`
/// `None`, `qemu-img measure --size`) or holding the given data extents of
/// a source image of `req.virtual_size` bytes.
pub fn measure(req: &MeasureRequest) -> Result<MeasureResult> {
    // Enumerated values are checked below with QEMU's measure messages.
    let schema = crate::ops::create::create_options();
    let o = OptionValues::parse(&block_core::options::loosen_enums(&schema), &req.options)?;
    let cs = o.get_size("cluster_size")?.unwrap_or(65536);
    let plan = MeasurePlan::from_options(&o, &schema, cs)?;
    if let Some(v) = o.unlisted(&schema, "compat") {
        let msg = format!("Invalid compatibility level: '{v}'");
        return Err(BlockError::invalid("measure", msg));
    }
    // As QEMU's measure, only LUKS changes the answer (its header).
    block_core::engine::encryption_options::refuse_luks_measure(&o)?;
    let extended_l2 = o.get_bool("extended_l2");
    validate_cluster_size("measure", cs, extended_l2)?;
    let v3 = matches!(o.get("compat"), Some("1.1") | Some("v3") | None);
    let rbits = o.get_u64("refcount_bits")?.unwrap_or(16);
    validate_refcount_bits("measure", v3, rbits, "compat=1.1")?;
    let msg = "The image size is too large (try using a larger cluster size)";
    let check = |vs| refuse_if(!l1_fits(vs, cs, extended_l2), "measure", msg);
    let full = |vs| prealloc_size(vs, cs, rbits.trailing_zeros(), extended_l2);
    let mut r = measure_clusters(req, &plan, check, full)?;
    let bitmaps = req.source_bitmaps.as_ref().filter(|_| v3);
    r.bitmaps = bitmaps.map(|list| bitmaps_size(list, req.virtual_size, cs));
    Ok(r)
}

/// Bytes the bitmaps take in an image with clusters of `cs` bytes, as
/// QEMU estimates them: every data cluster allocated, the tables, and the
/// directory, each rounded to clusters.
pub fn bitmaps_size(list: &[block_core::MeasureBitmap], virtual_size: u64, cs: u64) -> u64 {
    let mut total = 0u64;
    let mut dir = 0u64;
    for b in list {
        let bytes = virtual_size.div_ceil(b.granularity.max(1)).div_ceil(8);
        let clusters = bytes.div_ceil(cs);
        total += clusters * cs + (clusters * 8).div_ceil(cs) * cs;
        dir += crate::bitmap::dir::entry_size(b.name.len(), 0);
    }
    total + dir.div_ceil(cs) * cs
}
