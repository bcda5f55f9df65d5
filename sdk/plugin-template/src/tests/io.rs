//! Guest I/O through the engine: where blocks go, what is written in which
//! order, and that everything reads back.

use super::*;
use block_core::testutil::{ChildOp, InjectedError};
use block_core::{BlockNodeExt, ErrorKind, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};

#[test]
fn create_writes_the_header_and_a_new_image_reads_as_zeros() {
    let (host, file) = create(&[("size", "1M")]);
    // Header and a 16-entry BAT; the BAT is left to the file's holes.
    assert_eq!(file.length().unwrap(), HEADER_SIZE + 16 * 4);
    let h = stored_header(&file);
    assert_eq!((h.size, h.block(), h.bat_entries), (1 << 20, BLOCK, 16));
    assert_eq!(file.stats().writes, 1);

    let node = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(node.length().unwrap(), 1 << 20);
    let mut buf = vec![0xffu8; 1 << 20];
    node.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let info = node.info().unwrap();
    assert_eq!(info.format, crate::DRIVER_NAME);
    assert_eq!(info.cluster_size, Some(BLOCK));
    let data = &info.format_specific.unwrap()["data"];
    assert_eq!(
        (
            data["bat-entries"].as_u64(),
            data["allocated-blocks"].as_u64()
        ),
        (Some(16), Some(0))
    );
    // The whole image is one unallocated (zero) extent.
    let e = node.block_status(0, 1 << 20).unwrap();
    assert_eq!((e.length, e.flags), (1 << 20, ExtentFlags::ZERO));
}

#[test]
fn a_write_appends_its_block_and_the_bat_entry_follows_the_data() {
    let (host, file) = create(&[("size", "1M"), ("cluster_size", "4k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    let data = pattern(100, 1);
    node.write_at(2 * 4096 + 10, &data).unwrap();
    // The BAT (256 entries) fits in block 0 with the header: the first data
    // block is block 1.
    assert_eq!(stored_entry(&file, 2), 1);
    assert_eq!(stored_entry(&file, 1), 0);
    let mut block = vec![0u8; 4096];
    block[10..110].copy_from_slice(&data);
    assert_eq!(file.peek(4096, 4096), block, "data with zero fill");
    // Data, then a flush, then the 4-byte BAT entry: crash order.
    let ops: Vec<(ChildOp, u64, u64)> = file
        .requests()
        .iter()
        .map(|r| (r.op, r.offset, r.len))
        .collect();
    assert_eq!(
        ops,
        vec![
            (ChildOp::Write, 4096, 4096),
            (ChildOp::Flush, 0, 0),
            (ChildOp::Write, HEADER_SIZE + 2 * 4, 4),
        ]
    );
    // An overwrite goes in place: no allocation, no BAT write.
    file.clear_log();
    node.write_at(2 * 4096, b"again").unwrap();
    assert_eq!(file.stats().write_sizes, vec![5]);
    let mut back = vec![0u8; 110];
    node.read_at(2 * 4096, &mut back).unwrap();
    assert_eq!(&back[..5], b"again");
    assert_eq!(&back[10..], &data[..]);
    // The next block goes after it.
    node.write_at(0, b"x").unwrap();
    assert_eq!(stored_entry(&file, 0), 2);
}

#[test]
fn one_long_write_is_one_allocation_and_reads_back_as_one_request() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let data = pattern(8 * BLOCK as usize, 2);
    file.clear_log();
    node.write_at(BLOCK, &data).unwrap();
    // Eight blocks appended contiguously: one data write, one BAT write.
    assert_eq!(file.stats().write_sizes, vec![8 * BLOCK, 8 * 4]);
    for i in 0..8 {
        assert_eq!(stored_entry(&file, 1 + i), 1 + i as u32);
    }
    file.clear_log();
    let mut a = vec![0u8; 1000];
    let mut b = vec![0u8; 8 * BLOCK as usize - 1000];
    node.read_vectored(
        BLOCK,
        &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
        ReqFlags::NONE,
    )
    .unwrap();
    assert_eq!(file.stats().read_sizes, vec![8 * BLOCK]);
    assert_eq!([a, b].concat(), data);
}

#[test]
fn vectored_fua_writes_reach_the_file_and_are_flushed() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let a = pattern(3, 2);
    let b = pattern(150_000, 3);
    file.clear_log();
    node.write_vectored(65_000, &[IoSlice::new(&a), IoSlice::new(&b)], ReqFlags::FUA)
        .unwrap();
    assert_eq!(file.requests().last().unwrap().op, ChildOp::Flush);
    let mut back = vec![0u8; 150_003];
    node.read_at(65_000, &mut back).unwrap();
    assert_eq!(back, [a, b].concat());
}

#[test]
fn requests_past_the_end_fail_without_touching_the_file() {
    let (host, file) = create(&[("size", "64k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    let mut buf = [0u8; 16];
    let e = node.read_at((64 << 10) - 8, &mut buf).unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutOfRange);
    assert_eq!(e.file.as_deref(), Some(NAME));
    for e in [
        node.write_at(64 << 10, b"x").unwrap_err(),
        node.write_zeroes(u64::MAX - 1, 4, ZeroFlags::NONE)
            .unwrap_err(),
        node.discard(1, 64 << 10).unwrap_err(),
        node.block_status(64 << 10, 1).unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::OutOfRange, "{e}");
    }
    assert!(file.requests().is_empty(), "{:?}", file.requests());
}

#[test]
fn a_failed_data_write_gives_its_block_back() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: BLOCK + 5,
        op: Some(ChildOp::Write),
        kind: ErrorKind::Io,
    });
    assert_eq!(node.write_at(0, &[1; 10]).unwrap_err().kind, ErrorKind::Io);
    assert_eq!(
        stored_entry(&file, 0),
        0,
        "no entry for a block never written"
    );
    file.clear_errors();
    node.write_at(3 * BLOCK, &[2; 10]).unwrap();
    assert_eq!(stored_entry(&file, 3), 1, "the block was reused");
}

#[test]
fn zeroing_and_discard_keep_the_entries_and_read_as_zeros() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(4 * BLOCK as usize, 5)).unwrap();
    file.clear_log();
    // Blocks 1 and 2 zeroed in the file; the two edges inside blocks 0 and
    // 3 too; nothing allocated, no BAT write.
    node.write_zeroes(BLOCK - 10, 2 * BLOCK + 20, ZeroFlags::MAY_UNMAP)
        .unwrap();
    assert!(
        file.requests().iter().all(|r| r.offset >= BLOCK),
        "{:?}",
        file.requests()
    );
    assert_eq!(stored_entry(&file, 1), 2);
    let mut buf = vec![0xffu8; 4 * BLOCK as usize];
    node.read_at(0, &mut buf).unwrap();
    let zero = (BLOCK - 10) as usize..(3 * BLOCK + 10) as usize;
    assert!(buf[zero.clone()].iter().all(|&b| b == 0));
    assert_eq!(
        buf[..zero.start],
        pattern(4 * BLOCK as usize, 5)[..zero.start]
    );
    // Zeroing an unallocated block costs nothing.
    file.clear_log();
    node.write_zeroes(8 * BLOCK, 2 * BLOCK, ZeroFlags::NONE)
        .unwrap();
    assert!(file.requests().is_empty());
    // Discard: the file space of whole blocks goes, the entries stay.
    node.discard(10, 2 * BLOCK).unwrap();
    assert_eq!(
        file.requests()
            .iter()
            .filter(|r| r.op == ChildOp::Discard)
            .count(),
        1
    );
    assert_eq!(stored_entry(&file, 1), 2);
    node.read_at(BLOCK, &mut buf[..BLOCK as usize]).unwrap();
    assert!(buf[..BLOCK as usize].iter().all(|&b| b == 0));
    // Zeroing a block with data leaves it allocated data (block status).
    let e = node.block_status(BLOCK, BLOCK).unwrap();
    assert!(
        e.flags
            .contains(ExtentFlags::DATA.with(ExtentFlags::OFFSET_VALID)),
        "{e:?}"
    );
    assert_eq!(e.mapped_offset, 2 * BLOCK);
}

#[test]
fn block_status_reports_data_at_its_file_offset_and_holes_as_zero() {
    let (host, _file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(3 * BLOCK, &pattern(2 * BLOCK as usize, 6))
        .unwrap();
    let e = node.block_status(0, 1 << 20).unwrap();
    assert_eq!((e.length, e.flags), (3 * BLOCK, ExtentFlags::ZERO));
    let e = node.block_status(3 * BLOCK, (1 << 20) - 3 * BLOCK).unwrap();
    assert_eq!(e.length, 2 * BLOCK, "two contiguous blocks merge");
    assert!(e.flags.contains(ExtentFlags::ALLOCATED));
    assert_eq!(e.mapped_offset, BLOCK);
}

#[test]
fn growing_uses_the_reserved_bat_space_then_moves_the_bat() {
    let (host, file) = create(&[("size", "64k"), ("cluster_size", "4k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(60 << 10, &[0xab; 4096]).unwrap();
    // 16 entries to 256: still inside block 0 after the header.
    node.truncate(1 << 20, Preallocation::Off).unwrap();
    let h = stored_header(&file);
    assert_eq!(
        (h.size, h.bat_entries, h.bat_offset),
        (1 << 20, 256, HEADER_SIZE)
    );
    // 256 entries to 2048: the BAT moves to two new blocks at the end.
    node.truncate(8 << 20, Preallocation::Off).unwrap();
    let h = stored_header(&file);
    assert_eq!((h.bat_entries, h.bat_offset), (2048, 2 * 4096));
    assert_eq!(stored_entry(&file, 15), 1);
    let mut buf = vec![0xffu8; 8192];
    node.read_at(60 << 10, &mut buf).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0xab));
    assert!(
        buf[4096..].iter().all(|&b| b == 0),
        "grown bytes read as zeros"
    );
    // New blocks go after the moved BAT, and all of it survives a reopen.
    node.write_at(7 << 20, b"end").unwrap();
    assert_eq!(stored_entry(&file, (7 << 20) / 4096), 4);
    let again = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut end = [0u8; 3];
    again.read_at(7 << 20, &mut end).unwrap();
    assert_eq!(&end, b"end");
    // Shrinking is refused and changes nothing.
    let e = node.truncate(4096, Preallocation::Off).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    assert_eq!(node.length().unwrap(), 8 << 20);
}

#[test]
fn invalidate_rereads_what_another_opener_wrote() {
    let (host, _file) = create(&[("size", "1M")]);
    let a = open(&host, OpenFlags::NONE).unwrap();
    let b = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = [0u8; 4];
    a.read_at(BLOCK, &mut buf).unwrap();
    b.write_at(BLOCK, b"new!").unwrap();
    b.truncate(2 << 20, Preallocation::Off).unwrap();
    assert_eq!(a.length().unwrap(), 1 << 20, "cached until invalidated");
    a.migration().unwrap().invalidate_cache().unwrap();
    assert_eq!(a.length().unwrap(), 2 << 20);
    a.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(&buf, b"new!");
}

#[test]
fn read_only_opens_refuse_writes_before_the_file_sees_them() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    file.clear_log();
    assert_eq!(
        node.write_at(0, b"x").unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    assert_eq!(
        node.truncate(2 << 20, Preallocation::Off).unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    assert!(file.requests().is_empty());
}

#[test]
fn child_errors_reach_the_caller() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &[1; 4096]).unwrap();
    file.inject_error(InjectedError {
        offset: BLOCK + 1000,
        op: Some(ChildOp::Read),
        kind: ErrorKind::Io,
    });
    let mut buf = [0u8; 4096];
    assert_eq!(node.read_at(0, &mut buf).unwrap_err().kind, ErrorKind::Io);
    // Unallocated blocks do not read the file.
    node.read_at(BLOCK, &mut buf).unwrap();
}

#[test]
fn concurrent_writers_all_land_and_allocate_each_block_once() {
    let (host, file) = create(&[("size", "4M")]);
    let node: Arc<dyn BlockNode> = Arc::from(open(&host, OpenFlags::NONE).unwrap());
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let node = node.clone();
            s.spawn(move || {
                for i in 0..16u64 {
                    // Two writers per block: halves of the same block.
                    let off = i * BLOCK + u64::from(t) * 16384;
                    node.write_at(off, &pattern(16384, t * 16 + i as u8))
                        .unwrap();
                }
            });
        }
    });
    let mut buf = vec![0u8; 16384];
    for i in 0..16u64 {
        for t in 0..4u8 {
            node.read_at(i * BLOCK + u64::from(t) * 16384, &mut buf)
                .unwrap();
            assert_eq!(buf, pattern(16384, t * 16 + i as u8), "block {i} part {t}");
        }
    }
    let mut named: Vec<u32> = (0..16).map(|i| stored_entry(&file, i)).collect();
    named.sort_unstable();
    assert_eq!(
        named,
        (1..=16).collect::<Vec<u32>>(),
        "16 blocks, each once"
    );
}

#[test]
fn a_failed_bat_write_leaves_the_block_unnamed_and_not_reused() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: HEADER_SIZE + 4 * 2,
        op: Some(ChildOp::Write),
        kind: ErrorKind::Io,
    });
    assert_eq!(
        node.write_at(2 * BLOCK, b"lost").unwrap_err().kind,
        ErrorKind::Io
    );
    let mut b = [0xffu8; 4];
    node.read_at(2 * BLOCK, &mut b).unwrap();
    assert_eq!(b, [0; 4], "the block is not linked");
    file.clear_errors();
    node.write_at(5 * BLOCK, b"kept").unwrap();
    // The entry may have reached the disk in spite of the error: the block
    // is never handed out again (at worst it is a leak `check` reports).
    assert_eq!(stored_entry(&file, 5), 2);
}
