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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::header::Header;

    fn header(l1: u64, rt: u64) -> Header {
        let mut h = Header::parse(&sample_cluster0(), 1 << 20).unwrap();
        h.l1_table_offset = l1;
        h.refcount_table_offset = rt;
        h
    }

    fn sample_cluster0() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        crate::layout::header::put_u32(&mut b, 0, crate::layout::header::MAGIC);
        crate::layout::header::put_u32(&mut b, 4, 2);
        crate::layout::header::put_u32(&mut b, 20, 9);
        crate::layout::header::put_u64(&mut b, 24, 1 << 20);
        crate::layout::header::put_u32(&mut b, 36, 32);
        crate::layout::header::put_u64(&mut b, 40, 3 * 512);
        crate::layout::header::put_u64(&mut b, 48, 512);
        crate::layout::header::put_u32(&mut b, 56, 1);
        b
    }

    #[test]
    fn tables_past_the_end_are_named() {
        assert_eq!(table_past_eof(&header(1536, 512), 4096, 0), None);
        assert!(table_past_eof(&header(1536, 8192), 4096, 0)
            .unwrap()
            .contains("refcount table"));
        assert!(table_past_eof(&header(8192, 512), 4096, 0)
            .unwrap()
            .contains("L1 table"));
        // The L1 table's last byte just past the end counts too.
        assert!(table_past_eof(&header(4096 - 64, 512), 4096, 0).is_some());
    }
}
