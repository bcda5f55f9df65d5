//! Metadata overlap checks: before any write to the image file, the target
//! range must not overlap metadata it is not meant to replace. The map is
//! the engine's (block_core::engine::overlap); here are qcow2's region
//! kinds and their names.

pub use block_core::engine::overlap::{OverlapMap, SharedOverlapMap};

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
