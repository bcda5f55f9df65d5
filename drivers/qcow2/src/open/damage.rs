//! Damage tolerance at open: tables that lie (partly) past the end of the
//! image file.
//!
//! QEMU reads a truncated file's missing bytes as zeros, so an image whose
//! refcount table, L1 table or snapshot table points past the end still
//! opens: the L1 entries read as unallocated, the refcount table as empty,
//! the snapshot entries as blank. `qemu-img info` and `convert` work and
//! `check` reports (and with `-r all` repairs) the damage. blk reads such
//! tables the same way, but only for read-only opens and for check: a
//! writable open of a damaged image is refused, since allocating through
//! an empty refcount table would overwrite data (docs/qcow2.md, "Damaged
//! images"). The padded reads are the engine's
//! (block_core::engine::padded_read).

use crate::layout::header::Header;

/// The first of the header's tables that extends past `file_len`, named as
/// in the open error, or `None` for an intact image.
pub(crate) fn table_past_eof(
    h: &Header,
    file_len: u64,
    snapshots_size: u64,
) -> Option<&'static str> {
    let past = |off: u64, len: u64| len > 0 && off.saturating_add(len) > file_len;
    let (rt, rt_clusters) = h.reftable_place();
    if past(rt, rt_clusters * h.cluster_size()) {
        return Some("the refcount table lies past the end of the file");
    }
    if past(h.l1_table_offset, u64::from(h.l1_size) * 8) {
        return Some("the active L1 table lies past the end of the file");
    }
    // Entries are padded to 8 bytes; the last one's padding need not be
    // in the file (QEMU writes the table unpadded at its end).
    if h.nb_snapshots > 0 && past(h.snapshots_offset, snapshots_size.saturating_sub(7)) {
        return Some("the snapshot table lies past the end of the file");
    }
    None
}

/// The error of a writable open refused because of `what`.
pub(crate) fn refuse_writable(what: &str) -> block_core::BlockError {
    block_core::BlockError::corrupt(
        "open",
        format!(
            "qcow2: Image is damaged ({what}); it can only be opened read-only or repaired with 'check -r all'"
        ),
    )
}
