//! The read-only snapshot view: the open options `snapshot.id` and
//! `snapshot.name` present an internal snapshot's disk, as QEMU's
//! `bdrv_snapshot_load_tmp` does for `qemu-img convert -l` and
//! `qemu-img measure -l`.
//!
//! As in QEMU, only the L1 table is switched (to the snapshot's); the
//! virtual size stays the image's current size (guest offsets past the
//! snapshot's L1 table read as unallocated), and the node must be
//! read-only.

use crate::layout::header::{MAX_HOST_OFFSET, MAX_L1_BYTES};
use crate::layout::snapshot::SnapshotSel;
use crate::node::Meta;
use block_core::engine::codec::{read_u64_table, Endian};
use block_core::{BlockError, BlockNode, ErrorKind, Result};
use std::sync::Arc;

/// Switches `ld` (as loaded) to the L1 table of the snapshot `sel` selects (read from
/// `file` and validated as QEMU's `qcow2_validate_table` does).
pub(crate) fn apply(file: &Arc<dyn BlockNode>, ld: &mut Meta, sel: &SnapshotSel) -> Result<()> {
    let op = "snapshot_load_tmp";
    let not_found = || BlockError::new(ErrorKind::NotFound, op, "Can't find snapshot");
    let idx = sel.find(&ld.snapshots).ok_or_else(not_found)?;
    let sn = &ld.snapshots[idx];
    let bytes = u64::from(sn.l1_size) * 8;
    if bytes > MAX_L1_BYTES {
        let msg = "Snapshot L1 table too large";
        return Err(BlockError::new(ErrorKind::OutOfRange, op, msg));
    }
    let cs = ld.h.cluster_size();
    let end = sn.l1_offset.checked_add(bytes);
    if sn.l1_offset % cs != 0 || end.is_none_or(|e| e >= MAX_HOST_OFFSET) {
        return Err(BlockError::invalid(op, "Snapshot L1 table offset invalid"));
    }
    ld.l1 = read_l1_table(&**file, op, sn.l1_offset, sn.l1_size)?;
    ld.h.l1_table_offset = sn.l1_offset;
    ld.h.l1_size = sn.l1_size;
    Ok(())
}

/// Reads the L1 table of `entries` entries at `offset` (a snapshot's) for
/// operation `op`, refusing one larger than the largest L1 table before
/// allocating.
pub(crate) fn read_l1_table(
    file: &dyn BlockNode,
    op: &'static str,
    offset: u64,
    entries: u32,
) -> Result<Vec<u64>> {
    let (what, max) = ("L1 table", MAX_L1_BYTES);
    read_u64_table(file, op, what, offset, entries.into(), Endian::Big, max)
}
