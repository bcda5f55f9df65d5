//! Guest I/O through the engine: where clusters go, what is written in
//! which order, and that everything reads back.

use super::*;
use crate::header::MAGIC_SECTORS;
use block_core::testutil::{ChildOp, InjectedError};
use block_core::{BlockNodeExt, ErrorKind, ZeroFlags};

#[test]
fn a_write_appends_its_cluster_and_the_bat_entry_follows_the_data() {
    let (host, file) = create(&[("size", "1M"), ("cluster_size", "4k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    let data = pattern(100, 1);
    node.write_at(2 * 4096 + 10, &data).unwrap();
    // Header and 256 entries fit in cluster 0: the first data cluster is 1.
    assert_eq!(stored_entry(&file, 2), 1);
    assert_eq!(stored_entry(&file, 1), 0);
    let mut cluster = vec![0u8; 4096];
    cluster[10..110].copy_from_slice(&data);
    assert_eq!(file.peek(4096, 4096), cluster, "data with zero fill");
    // Data, then a flush, then the 4-byte BAT entry: crash order.
    let ops: Vec<(ChildOp, u64, u64)> = file
        .requests()
        .iter()
        .filter(|r| r.op != ChildOp::Read)
        .map(|r| (r.op, r.offset, r.len))
        .collect();
    assert_eq!(
        ops[..3],
        [
            (ChildOp::Write, 4096, 4096),
            (ChildOp::Flush, 0, 0),
            (ChildOp::Write, HEADER_SIZE + 8, 4),
        ]
    );
    let mut back = vec![0u8; 4096 * 3];
    node.read_at(4096, &mut back).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 0));
    assert_eq!(&back[4096..8192], &cluster[..]);
}

#[test]
fn random_writes_read_back_and_survive_a_reopen() {
    let (host, _file) = create(&[("size", "3M"), ("cluster_size", "64k")]);
    let size = 3 << 20;
    let mut shadow = vec![0u8; size];
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut seed = 7u64;
    for k in 0..40u8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 40) as usize % 200_000 + 1;
        let off = (seed >> 8) as usize % (size - len);
        let data = pattern(len, k);
        node.write_at(off as u64, &data).unwrap();
        shadow[off..off + len].copy_from_slice(&data);
    }
    node.write_zeroes(100_000, 300_000, ZeroFlags::MAY_UNMAP)
        .unwrap();
    shadow[100_000..400_000].fill(0);
    let mut back = vec![0u8; size];
    node.read_at(0, &mut back).unwrap();
    assert!(back == shadow, "read back");
    drop(node);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    back.fill(0xee);
    node.read_at(0, &mut back).unwrap();
    assert!(back == shadow, "read back after reopen");
}

#[test]
fn the_sector_counting_magic_is_written_in_sectors() {
    let (host, file) = create(&[("size", "1M"), ("cluster_size", "4k")]);
    file.poke(0, &MAGIC_SECTORS);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(4096 * 3, &pattern(4096, 3)).unwrap();
    // Cluster 1 of the file is sector 8.
    assert_eq!(stored_entry(&file, 3), 8);
    assert_eq!(file.peek(4096, 4096), pattern(4096, 3));
}

#[test]
fn a_failed_data_write_gives_its_cluster_back() {
    let (host, file) = create(&[("size", "1M"), ("cluster_size", "4k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: 4096,
        op: Some(ChildOp::Write),
        kind: ErrorKind::Io,
    });
    node.write_at(0, &pattern(4096, 1)).unwrap_err();
    assert_eq!(stored_entry(&file, 0), 0, "no entry for failed data");
    file.clear_errors();
    node.write_at(8192, &pattern(4096, 2)).unwrap();
    assert_eq!(stored_entry(&file, 2), 1, "the cluster was reused");
}

#[test]
fn read_only_opens_refuse_writes() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    file.clear_log();
    assert!(node.write_at(0, &[1u8; 512]).is_err());
    assert_eq!(file.stats().writes, 0);
}

#[test]
fn invalidate_rereads_what_another_opener_wrote() {
    let (host, _file) = create(&[("size", "1M"), ("cluster_size", "4k")]);
    let reader = open(&host, OpenFlags::READ_ONLY).unwrap();
    let writer = open(&host, OpenFlags::NONE).unwrap();
    writer.write_at(4096, &pattern(4096, 9)).unwrap();
    let mut buf = vec![0u8; 4096];
    reader.read_at(4096, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0), "stale BAT");
    reader.migration().unwrap().invalidate_cache().unwrap();
    reader.read_at(4096, &mut buf).unwrap();
    assert_eq!(buf, pattern(4096, 9));
}

#[test]
fn a_last_cluster_past_the_disk_end_lies_wholly_in_the_file() {
    // 1 MiB + 512 bytes in 64 KiB clusters: the last cluster holds one
    // guest sector.
    let (host, file) = create(&[("size", "1049088"), ("cluster_size", "64k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(1 << 20, &pattern(512, 4)).unwrap();
    let at = u64::from(stored_entry(&file, 16)) * 65536;
    assert_eq!(file.length().unwrap(), at + 65536);
    assert_eq!(file.peek(at, 512), pattern(512, 4));
    assert!(file.peek(at + 512, 65536 - 512).iter().all(|&b| b == 0));
}
