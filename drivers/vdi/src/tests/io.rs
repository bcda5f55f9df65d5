//! Guest I/O through the engine: where blocks go, what is written in which
//! order, and that everything reads back.

use super::*;
use crate::header::{UNALLOCATED, ZERO};
use block_core::testutil::{ChildOp, InjectedError};
use block_core::{BlockNodeExt, ErrorKind, ExtentFlags, ZeroFlags};

#[test]
fn a_new_dynamic_image_is_a_header_and_an_empty_map() {
    let (host, file) = create(&[("size", "5M")]);
    assert_eq!(file.length().unwrap(), 1024);
    let h = stored_header(&file);
    assert_eq!(
        (h.disk_size, h.blocks_in_image, h.blocks_allocated),
        (5 << 20, 5, 0)
    );
    assert_eq!((h.offset_bmap, h.offset_data), (512, 1024));
    for i in 0..5 {
        assert_eq!(stored_entry(&file, i), UNALLOCATED);
    }
    assert_eq!(file.peek(512 + 20, 4), [0; 4], "the map's padding is zero");
    let node = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(node.length().unwrap(), 5 << 20);
    let mut buf = vec![0xffu8; 5 << 20];
    node.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let e = node.block_status(0, 5 << 20).unwrap();
    assert!(e.flags.contains(ExtentFlags::ZERO), "{e:?}");
}

#[test]
fn a_static_image_numbers_every_block_and_holds_them_all() {
    let (host, file) = create(&[("size", "3000000"), ("static", "on")]);
    let h = stored_header(&file);
    assert_eq!((h.disk_size, h.image_type), (3_000_320, 2));
    assert_eq!(h.blocks_allocated, 3);
    assert_eq!(file.length().unwrap(), 1024 + 3 * BLOCK);
    for i in 0..3 {
        assert_eq!(stored_entry(&file, i), i as u32);
    }
    let node = open(&host, OpenFlags::NONE).unwrap();
    let data = pattern(100_000, 4);
    file.clear_log();
    node.write_at(BLOCK + 7, &data).unwrap();
    // In place: no map or header write.
    assert_eq!(file.stats().write_sizes, vec![100_000]);
    let mut back = vec![0u8; 100_000];
    node.read_at(BLOCK + 7, &mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(file.peek(1024 + BLOCK + 7, 100_000), data);
}

#[test]
fn written_blocks_are_appended_in_order_and_counted() {
    let (host, file) = create(&[("size", "8M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let a = pattern(1000, 1);
    let b = pattern(2 * BLOCK as usize, 2);
    node.write_at(5 * BLOCK + 10, &a).unwrap();
    file.clear_log();
    node.write_at(BLOCK, &b).unwrap();
    // Two whole blocks, a flush, two entries, the count.
    let w = file.stats().write_sizes;
    assert_eq!(w, vec![2 * BLOCK, 8, 4], "{w:?}");
    assert_eq!(stored_entry(&file, 5), 0);
    assert_eq!(stored_entry(&file, 1), 1);
    assert_eq!(stored_entry(&file, 2), 2);
    assert_eq!(stored_header(&file).blocks_allocated, 3);
    assert_eq!(file.length().unwrap(), 1024 + 3 * BLOCK);
    // Block 0 of the data area holds guest block 5, zero-filled around.
    let blk0 = file.peek(1024, BLOCK as usize);
    assert_eq!(blk0[10..1010], a[..]);
    assert!(blk0[..10].iter().chain(&blk0[1010..]).all(|&x| x == 0));
    // It all reads back after a reopen.
    drop(node);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut back = vec![0u8; 8 << 20];
    node.read_at(0, &mut back).unwrap();
    let mut expect = vec![0u8; 8 << 20];
    expect[5 * BLOCK as usize + 10..][..1000].copy_from_slice(&a);
    expect[BLOCK as usize..][..2 * BLOCK as usize].copy_from_slice(&b);
    assert!(back == expect);
    assert_eq!(
        node.write_at(0, b"x").unwrap_err().kind,
        ErrorKind::ReadOnly
    );
}

#[test]
fn zero_marked_blocks_read_as_zeros_and_are_allocated_when_written() {
    let (host, file) = create(&[("size", "2M")]);
    poke_entry(&file, 0, ZERO);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = vec![0xffu8; 4096];
    node.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    node.write_at(100, b"hello").unwrap();
    assert_eq!(stored_entry(&file, 0), 0);
    node.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[100..105], b"hello");
    assert!(buf[..100].iter().all(|&b| b == 0));
}

#[test]
fn zeroing_keeps_entries_and_costs_nothing_on_unallocated_blocks() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(2 * BLOCK as usize, 5)).unwrap();
    file.clear_log();
    node.write_zeroes(BLOCK - 10, BLOCK + 20, ZeroFlags::MAY_UNMAP)
        .unwrap();
    assert_eq!(stored_entry(&file, 1), 1);
    let mut buf = vec![0xffu8; 2 * BLOCK as usize];
    node.read_at(0, &mut buf).unwrap();
    let zero = (BLOCK - 10) as usize..2 * BLOCK as usize;
    assert!(buf[zero.clone()].iter().all(|&b| b == 0));
    assert_eq!(
        buf[..zero.start],
        pattern(2 * BLOCK as usize, 5)[..zero.start]
    );
    file.clear_log();
    node.write_zeroes(2 * BLOCK, 2 * BLOCK, ZeroFlags::NONE)
        .unwrap();
    assert!(file.requests().is_empty(), "{:?}", file.requests());
    assert_eq!(stored_header(&file).blocks_allocated, 2);
}

#[test]
fn a_failed_data_write_gives_its_block_back() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: 1024 + 5,
        op: Some(ChildOp::Write),
        kind: ErrorKind::Io,
    });
    assert_eq!(node.write_at(0, &[1; 10]).unwrap_err().kind, ErrorKind::Io);
    assert_eq!(stored_entry(&file, 0), UNALLOCATED);
    file.clear_errors();
    node.write_at(3 * BLOCK, &[2; 10]).unwrap();
    assert_eq!(stored_entry(&file, 3), 0, "block 0 was reused");
}

#[test]
fn a_block_written_but_never_linked_is_reused_after_a_crash() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &[7; 512]).unwrap();
    drop(node);
    // The crash: block 1's data reached the file, its entry did not.
    file.poke(1024 + BLOCK, &vec![9u8; BLOCK as usize]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(2 * BLOCK, &[3; 512]).unwrap();
    assert_eq!(stored_entry(&file, 2), 1);
    let mut buf = vec![0u8; 1024];
    node.read_at(2 * BLOCK, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 3) && buf[512..].iter().all(|&b| b == 0));
}

#[test]
fn invalidate_reads_what_another_process_wrote() {
    let (host, file) = create(&[("size", "2M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = [0u8; 4];
    node.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(buf, [0; 4]);
    // Another writer links guest block 1 to data block 0.
    file.poke(1024, &[0xab; 4]);
    file.poke(1024 + BLOCK - 1, &[0]);
    poke_entry(&file, 1, 0);
    file.poke(0x184, &1u32.to_le_bytes());
    node.migration().unwrap().invalidate_cache().unwrap();
    node.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(buf, [0xab; 4]);
}

#[test]
fn parallel_writers_get_distinct_blocks() {
    let (host, file) = create(&[("size", "16M")]);
    let node: Arc<dyn BlockNode> = open(&host, OpenFlags::NONE).unwrap().into();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                for k in 0..4u64 {
                    let guest = (u64::from(t) + 4 * k) * BLOCK + 100;
                    node.write_at(guest, &pattern(5000, t * 4 + k as u8))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut numbers: Vec<u32> = (0..16).map(|i| stored_entry(&file, i)).collect();
    for i in 0..16u64 {
        let mut back = vec![0u8; 5000];
        node.read_at(i * BLOCK + 100, &mut back).unwrap();
        assert_eq!(
            back,
            pattern(5000, ((i % 4) * 4 + i / 4) as u8),
            "block {i}"
        );
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (0..16).collect::<Vec<u32>>());
    assert_eq!(stored_header(&file).blocks_allocated, 16);
    assert_eq!(file.length().unwrap(), 1024 + 16 * BLOCK);
}
