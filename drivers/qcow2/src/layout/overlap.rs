//! Metadata overlap checks: before any write to the image file, the target
//! range must not overlap metadata it is not meant to replace.

/// Kinds of metadata regions (bit flags, combined into ignore masks).
pub mod kind {
    /// The header cluster.
    pub const HEADER: u32 = 1;
    /// The active L1 table.
    pub const ACTIVE_L1: u32 = 2;
    /// Active L2 tables.
    pub const ACTIVE_L2: u32 = 4;
    /// The refcount table.
    pub const REFTABLE: u32 = 8;
    /// Refcount blocks.
    pub const REFBLOCK: u32 = 16;
    /// The snapshot table.
    pub const SNAPSHOT_TABLE: u32 = 32;
    /// Snapshot L1 tables.
    pub const INACTIVE_L1: u32 = 64;
    /// The bitmap directory.
    pub const BITMAP_DIRECTORY: u32 = 128;
}

/// A printable name of a region kind.
pub fn kind_name(k: u32) -> &'static str {
    match k {
        kind::HEADER => "qcow2_header",
        kind::ACTIVE_L1 => "active L1 table",
        kind::ACTIVE_L2 => "active L2 table",
        kind::REFTABLE => "refcount table",
        kind::REFBLOCK => "refcount block",
        kind::SNAPSHOT_TABLE => "snapshot table",
        kind::INACTIVE_L1 => "inactive L1 table",
        kind::BITMAP_DIRECTORY => "bitmap directory",
        _ => "metadata",
    }
}

/// Sorted, cluster-granular metadata regions of an image.
#[derive(Debug, Default, Clone)]
pub struct OverlapMap {
    /// (start, end, kind), sorted by start.
    regions: Vec<(u64, u64, u32)>,
    cluster_size: u64,
}

impl OverlapMap {
    /// An empty map for an image with `cluster_size`.
    pub fn new(cluster_size: u64) -> OverlapMap {
        OverlapMap {
            regions: Vec::new(),
            cluster_size,
        }
    }

    /// Adds a region of `len` bytes at `start`.
    pub fn add(&mut self, start: u64, len: u64, k: u32) {
        if len == 0 {
            return;
        }
        let cs = self.cluster_size;
        let s = start & !(cs - 1);
        let e = (start.saturating_add(len)).div_ceil(cs).saturating_mul(cs);
        self.regions.push((s, e, k));
    }

    /// Sorts the regions; call after the last `add`.
    pub fn finish(&mut self) {
        self.regions.sort_unstable();
    }

    /// The first region of a kind not in `ignore` overlapping
    /// `[offset, offset+len)`, as its kind.
    pub fn check(&self, offset: u64, len: u64, ignore: u32) -> Option<u32> {
        if len == 0 {
            return None;
        }
        let end = offset.saturating_add(len);
        // Regions are at most a few MiB long (the largest table is 32 MiB),
        // so any overlapping region starts after offset - 64 MiB.
        let lo = offset.saturating_sub(64 << 20);
        let first = self.regions.partition_point(|r| r.0 < lo);
        for &(s, e, k) in &self.regions[first..] {
            if s >= end {
                break;
            }
            if e > offset && k & ignore == 0 {
                return Some(k);
            }
        }
        None
    }
}
