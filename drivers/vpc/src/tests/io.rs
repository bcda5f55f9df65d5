//! Guest I/O through the engine: where blocks go, the crash order of an
//! allocation, the footer copy following the last block, reopening.

use super::*;
use block_core::testutil::{ChildOp, InjectedError};
use block_core::{BlockNodeExt, ExtentFlags, ZeroFlags};

/// Offset of the first block in a new 100 MiB image (after the BAT).
const FIRST_BLOCK: u64 = 2048;

#[test]
fn a_new_image_reads_as_zeros() {
    let (host, _file) = create(&[("size", "8M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = vec![0xffu8; 8 << 20];
    node.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let e = node.block_status(0, 1 << 20).unwrap();
    assert!(e.flags.contains(ExtentFlags::ZERO), "{e:?}");
}

#[test]
fn an_allocation_writes_data_and_bitmap_then_the_entry_then_the_footer() {
    let (host, file) = create(&[("size", "100M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    let data = pattern(1000, 3);
    node.write_at(2 * BLOCK + 100, &data).unwrap();
    let bitmap_at = FIRST_BLOCK;
    let data_at = bitmap_at + 512;
    assert_eq!(stored_entry(&file, 2), (bitmap_at / 512) as u32);
    assert_eq!(stored_entry(&file, 1), u32::MAX);
    let ops: Vec<(ChildOp, u64, u64)> = (file.requests().iter())
        .map(|r| (r.op, r.offset, r.len))
        .collect();
    assert_eq!(
        ops,
        vec![
            (ChildOp::Write, data_at, BLOCK),
            (ChildOp::Write, bitmap_at, 512),
            (ChildOp::Flush, 0, 0),
            (ChildOp::Write, 1536 + 2 * 4, 4),
            (ChildOp::Write, data_at + BLOCK, 512),
        ]
    );
    assert!(file.peek(bitmap_at, 512).iter().all(|&b| b == 0xff));
    let mut block = vec![0u8; BLOCK as usize];
    block[100..1100].copy_from_slice(&data);
    assert_eq!(file.peek(data_at, BLOCK as usize), block);
    // The footer copy now follows the block, unchanged.
    assert_eq!(file.length().unwrap(), data_at + BLOCK + 512);
    assert_eq!(
        stored_footer(&file, data_at + BLOCK),
        stored_footer(&file, 0)
    );
    // An overwrite goes in place.
    file.clear_log();
    node.write_at(2 * BLOCK, b"again").unwrap();
    assert_eq!(file.stats().write_sizes, vec![5]);
    // The next block goes where the footer was.
    node.write_at(0, b"x").unwrap();
    assert_eq!(stored_entry(&file, 0), ((data_at + BLOCK) / 512) as u32);
}

#[test]
fn writes_read_back_after_reopen_in_both_subformats() {
    for sub in ["dynamic", "fixed"] {
        let (host, _file) = create(&[("size", "8M"), ("subformat", sub)]);
        let node = open(&host, OpenFlags::NONE).unwrap();
        let size = node.length().unwrap();
        let mut shadow = vec![0u8; size as usize];
        for (seed, (off, len)) in [
            (0u64, 4096usize),
            (3 << 20, 1 << 20),
            (size - 700, 700),
            (2_000_000, 300_000),
        ]
        .into_iter()
        .enumerate()
        {
            let d = pattern(len, seed as u8);
            node.write_at(off, &d).unwrap();
            shadow[off as usize..off as usize + len].copy_from_slice(&d);
        }
        node.write_zeroes(3 << 20, 4096, ZeroFlags::NONE).unwrap();
        shadow[3 << 20..(3 << 20) + 4096].fill(0);
        node.flush().unwrap();
        drop(node);
        let node = open(&host, OpenFlags::READ_ONLY).unwrap();
        let mut back = vec![0u8; size as usize];
        node.read_at(0, &mut back).unwrap();
        assert!(back == shadow, "{sub}");
        assert!(node.write_at(0, b"x").is_err(), "read-only");
    }
}

#[test]
fn a_fixed_image_maps_the_guest_onto_the_file() {
    let (host, file) = create(&[("size", "1M"), ("subformat", "fixed")]);
    let len = file.length().unwrap();
    assert_eq!(len, 1_079_296 + 512);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(5000, b"fixed").unwrap();
    assert_eq!(file.peek(5000, 5), b"fixed");
    assert_eq!(file.length().unwrap(), len, "the footer stays last");
    assert_eq!(
        stored_footer(&file, len - 512).fields.current_size,
        1_079_296
    );
    // Writing past the disk never reaches the footer.
    assert!(node.write_at(1_079_296 - 2, b"abc").is_err());
}

#[test]
fn a_failed_data_write_leaves_no_entry_and_the_footer_last() {
    let (host, file) = create(&[("size", "100M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: FIRST_BLOCK + 512 + 1,
        op: Some(ChildOp::Write),
        kind: block_core::ErrorKind::Io,
    });
    assert!(node.write_at(0, b"data").is_err());
    file.clear_errors();
    assert_eq!(stored_entry(&file, 0), u32::MAX);
    // The space is reused by the next write, and the image stays readable.
    node.write_at(0, b"data").unwrap();
    assert_eq!(stored_entry(&file, 0), (FIRST_BLOCK / 512) as u32);
    let end = file.length().unwrap();
    assert_eq!(stored_footer(&file, end - 512), stored_footer(&file, 0));
}

#[test]
fn invalidate_rereads_what_another_process_wrote() {
    let (host, _file) = create(&[("size", "8M")]);
    let a = open(&host, OpenFlags::NONE).unwrap();
    let b = open(&host, OpenFlags::NONE).unwrap();
    a.write_at(BLOCK, b"moved").unwrap();
    a.flush().unwrap();
    let mut buf = [0u8; 5];
    b.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(&buf, &[0; 5], "b still has the old BAT");
    b.migration().unwrap().invalidate_cache().unwrap();
    b.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(&buf, b"moved");
}

/// The image as a crash after the write to `fail_at` failed would leave
/// it: reopened from the file's bytes.
fn crash_at(fail_at: u64) -> (Arc<TestHost>, Arc<MemFile>, Vec<u8>) {
    let (host, file) = create(&[("size", "100M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, b"first").unwrap();
    file.inject_error(InjectedError {
        offset: fail_at,
        op: Some(ChildOp::Write),
        kind: block_core::ErrorKind::Io,
    });
    assert!(node.write_at(BLOCK, b"second").is_err());
    drop(node);
    let img = file.contents();
    let (host, file) = host_with(&img);
    (host, file, img)
}

#[test]
fn a_crash_before_the_bat_entry_leaves_the_block_unallocated() {
    // Block 1's BAT entry (the second block) is the write that fails.
    let (host, file, _img) = crash_at(1536 + 4);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = [0xffu8; 6];
    node.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(buf, [0; 6], "no entry names the written data");
    node.read_at(0, &mut buf[..5]).unwrap();
    assert_eq!(&buf[..5], b"first");
    // The leaked block's space is taken by the next allocation.
    let second = FIRST_BLOCK + BLOCK + 512;
    node.write_at(3 * BLOCK, b"third").unwrap();
    assert_eq!(stored_entry(&file, 3), (second / 512) as u32);
    let end = file.length().unwrap();
    assert_eq!(end, second + 512 + BLOCK + 512);
    assert_eq!(stored_footer(&file, end - 512), stored_footer(&file, 0));
}

#[test]
fn a_crash_before_the_footer_copy_keeps_the_data() {
    let second = FIRST_BLOCK + BLOCK + 512;
    // The footer copy after the second block is the write that fails.
    let (host, file, img) = crash_at(second + 512 + BLOCK);
    assert_eq!(img.len() as u64, second + 512 + BLOCK, "no trailing footer");
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = [0u8; 6];
    node.read_at(BLOCK, &mut buf).unwrap();
    assert_eq!(&buf, b"second");
    node.write_at(5 * BLOCK, b"again").unwrap();
    let end = file.length().unwrap();
    assert_eq!(stored_footer(&file, end - 512), stored_footer(&file, 0));
}
