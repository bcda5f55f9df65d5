//! The check: what a clean image, a crash, hostile entries and an unclean
//! close look like, and what the repairs do.

use super::*;
use crate::header::INUSE_MAGIC;
use block_core::{BlockNodeExt, CheckMode, CheckReport, Preallocation};

fn check(host: &Arc<TestHost>, mode: CheckMode) -> CheckReport {
    let flags = if mode == CheckMode::REPORT {
        OpenFlags::READ_ONLY.with(OpenFlags::CHECK)
    } else {
        OpenFlags::CHECK
    };
    let node = open(host, flags).unwrap();
    let r = node
        .check_control()
        .expect("the node offers check")
        .check(mode);
    r.unwrap()
}

/// An image with clusters 0 and 2 written (64 KiB clusters).
fn written() -> (Arc<TestHost>, Arc<MemFile>) {
    let (host, file) = create(&[("size", "1M"), ("cluster_size", "64k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(65536, 1)).unwrap();
    node.write_at(2 * 65536, &pattern(100, 2)).unwrap();
    drop(node);
    (host, file)
}

#[test]
fn a_written_image_is_clean() {
    let (host, file) = written();
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!((rep.corruptions, rep.leaks), (0, 0), "{rep:?}");
    assert_eq!(rep.allocated_clusters, Some(2));
    assert_eq!(rep.total_clusters, Some(16));
    assert_eq!(rep.image_end_offset, Some(3 * 65536));
    assert_eq!(file.length().unwrap(), 3 * 65536);
}

#[test]
fn space_after_the_last_cluster_is_a_leak_and_repair_truncates_it() {
    let (host, file) = written();
    // A crash after a data write, before its BAT entry.
    file.truncate(5 * 65536, Preallocation::Off).unwrap();
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!((rep.corruptions, rep.leaks), (0, 2), "{rep:?}");
    let rep = check(&host, CheckMode::FIX_LEAKS);
    assert_eq!((rep.leaks, rep.leaks_fixed), (0, 2), "{rep:?}");
    assert_eq!(file.length().unwrap(), 3 * 65536);
    assert_eq!(check(&host, CheckMode::REPORT).leaks, 0);
}

#[test]
fn entries_outside_the_image_are_unmapped_by_repair() {
    let (host, file) = written();
    poke_entry(&file, 5, 1000);
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!(rep.corruptions, 1, "{rep:?}");
    assert!(rep
        .findings
        .iter()
        .any(|f| f.message.contains("cluster 5 is outside image")));
    let rep = check(&host, CheckMode::FIX_ALL);
    assert_eq!((rep.corruptions, rep.corruptions_fixed), (0, 1), "{rep:?}");
    assert_eq!(stored_entry(&file, 5), 0);
    assert_eq!(check(&host, CheckMode::REPORT).corruptions, 0);
}

#[test]
fn duplicate_entries_get_their_own_copy_on_repair() {
    let (host, file) = written();
    poke_entry(&file, 7, stored_entry(&file, 0));
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!(rep.corruptions, 1, "{rep:?}");
    let rep = check(&host, CheckMode::FIX_ALL);
    assert_eq!(rep.corruptions_fixed, 1, "{rep:?}");
    let (a, b) = (stored_entry(&file, 0), stored_entry(&file, 7));
    assert_ne!(a, b);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut buf = vec![0u8; 65536];
    node.read_at(7 * 65536, &mut buf).unwrap();
    assert_eq!(buf, pattern(65536, 1), "the copy holds the data");
    drop(node);
    assert_eq!(check(&host, CheckMode::REPORT).corruptions, 0);
}

#[test]
fn an_unclean_close_is_reported_and_repaired() {
    let (host, file) = written();
    let mut h = stored_header(&file);
    h.inuse = INUSE_MAGIC;
    file.poke(0, &h.encode());
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!(rep.corruptions, 1, "{rep:?}");
    assert!(rep
        .findings
        .iter()
        .any(|f| f.message.contains("not closed correctly")));
    let rep = check(&host, CheckMode::FIX_ALL);
    assert_eq!(rep.corruptions_fixed, 1, "{rep:?}");
    assert_eq!(stored_header(&file).inuse, 0);
    // A plain read-write open repairs it too, as QEMU's does.
    file.poke(0, &h.encode());
    file.truncate(6 * 65536, Preallocation::Off).unwrap();
    drop(open(&host, OpenFlags::NONE).unwrap());
    assert_eq!(stored_header(&file).inuse, 0);
    assert_eq!(file.length().unwrap(), 3 * 65536, "leaks repaired");
}

#[test]
fn a_duplicate_larger_than_the_copy_piece_is_copied_whole() {
    let (host, file) = create(&[("size", "8M"), ("cluster_size", "3M")]);
    let data = pattern(3 << 20, 5);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &data).unwrap();
    drop(node);
    poke_entry(&file, 2, stored_entry(&file, 0));
    let rep = check(&host, CheckMode::FIX_ALL);
    assert_eq!(rep.corruptions_fixed, 1, "{rep:?}");
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut buf = vec![0u8; 2 << 20];
    node.read_at(6 << 20, &mut buf).unwrap();
    assert!(buf == data[..2 << 20], "the copy holds all of the data");
}

#[test]
fn a_format_extension_is_metadata_or_outside_the_image() {
    let (host, file) = written();
    let mut h = stored_header(&file);
    // The extension in a cluster after the data: used, no leak.
    file.truncate(4 * 65536, Preallocation::Off).unwrap();
    h.ext_off = 3 * 65536 / 512;
    file.poke(0, &h.encode());
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!((rep.corruptions, rep.leaks), (0, 0), "{rep:?}");
    // Writers are refused: the extension's bitmaps would go stale.
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert!(e.message.contains("read-only"), "{e}");
    // A hostile offset is a finding, not an overflow.
    h.ext_off = u64::MAX;
    file.poke(0, &h.encode());
    let rep = check(&host, CheckMode::REPORT);
    assert_eq!(rep.corruptions, 1, "{rep:?}");
}
