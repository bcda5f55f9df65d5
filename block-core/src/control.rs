//! Management capabilities a node may offer beside its I/O.
//!
//! [`crate::BlockNode`] is the I/O and info interface every node has. The
//! management operations only some formats have (internal snapshots,
//! check/repair, amend, the migration handoff, backing-file changes,
//! persistent bitmaps) are small traits of their own, reached through the
//! node's accessors (`BlockNode::snapshots()`, ...), which answer `None`
//! when the node does not offer the capability. Hosts ask once and either
//! call the trait or report the operation as unsupported; see
//! [`require`] for the usual "or unsupported" pattern.

use crate::error::{BlockError, Result};
use crate::info::{CheckReport, SnapshotInfo};
use crate::types::CheckMode;

/// Internal snapshots (qemu-img snapshot).
pub trait SnapshotControl: Send + Sync {
    /// Lists internal snapshots.
    fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>>;

    /// Creates an internal snapshot named `name`.
    fn snapshot_create(&self, name: &str) -> Result<()>;

    /// Reverts the disk to the snapshot with this ID or name.
    fn snapshot_apply(&self, id_or_name: &str) -> Result<()>;

    /// Deletes the snapshot with this ID or name.
    fn snapshot_delete(&self, id_or_name: &str) -> Result<()>;
}

/// Metadata consistency check and repair (qemu-img check).
pub trait CheckControl: Send + Sync {
    /// Checks (and with `mode`, repairs) the node's metadata.
    fn check(&self, mode: CheckMode) -> Result<CheckReport>;
}

/// Changing format options of an open image (qemu-img amend).
pub trait AmendControl: Send + Sync {
    /// Applies `key=value` pairs that the driver checks against its amend
    /// schema ([`crate::BlockDriver::amend_options`]).
    fn amend(&self, options: &[(String, String)]) -> Result<()>;
}

/// The migration handoff and cache invalidation (QEMU's
/// `bdrv_invalidate_cache`, `bdrv_inactivate`).
///
/// A node without this capability cannot take part in a handoff: the host
/// flushes it when the image is inactivated and refuses to activate it.
pub trait MigrationControl: Send + Sync {
    /// Drops every piece of cached mutable metadata and re-reads it from the
    /// children, which another process may have changed. Fails cleanly (and
    /// keeps the node unusable for writes) if the image changed in a way the
    /// driver cannot take.
    fn invalidate_cache(&self) -> Result<()>;

    /// Gives up ownership: writes back every cache, clears dirty state, and
    /// refuses writes until [`MigrationControl::activate`]. The host has
    /// flushed the node before it calls this, so the default does nothing.
    fn inactivate(&self) -> Result<()> {
        Ok(())
    }

    /// Takes ownership after a handoff (or after an inactive open): re-reads
    /// metadata and accepts writes. The default invalidates the cache.
    fn activate(&self) -> Result<()> {
        self.invalidate_cache()
    }
}

/// The backing-file reference a format stores, and emptying the image onto
/// its backing file (qemu-img rebase -u, commit).
pub trait BackingControl: Send + Sync {
    /// Rewrites the backing file name and format stored in the image
    /// (`None` removes the backing file). Does not reopen anything.
    fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()>;

    /// Drops every allocation of this image so that every range reads from
    /// the backing file (or as zeros without one), as after `commit`.
    fn make_empty(&self) -> Result<()> {
        Err(BlockError::unsupported("make_empty"))
    }
}

/// Persistent dirty bitmaps (qemu-img bitmap and queries).
pub trait BitmapControl: Send + Sync {
    /// One operation described in JSON, answered in JSON. The request is an
    /// object with `"op"` (`add`, `remove`, `clear`, `enable`, `disable`,
    /// `merge`, `get`, `list`) and its operands; see the qcow2 driver's
    /// `bitmap/ops.rs` and docs/abi.md.
    fn bitmap(&self, request: &str) -> Result<String>;
}

/// The capability, or an [`crate::ErrorKind::Unsupported`] error for `op`.
pub fn require<'a, T: ?Sized>(capability: Option<&'a T>, op: &str) -> Result<&'a T> {
    capability.ok_or_else(|| BlockError::unsupported(op))
}
