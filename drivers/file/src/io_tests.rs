//! Unit tests of the file protocol's I/O, resize, locking and block status
//! on real temporary files, opened through the driver with block-core's
//! test host services.

use crate::FileDriver;
use block_core::testutil::TestHost;
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ErrorKind, ExtentFlags, OpenFlags, OpenRequest,
    Operation, OptionValues, Preallocation, ReqFlags, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::path::Path;
use std::sync::Arc;

/// A deterministic pattern of `len` bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn open_file(path: &str, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    FileDriver.open(&OpenRequest::new(path, flags), Arc::new(TestHost::new()))
}

/// A sparse file of `size` bytes (made with std, so no block is allocated).
fn sparse_file(dir: &Path, size: u64) -> String {
    let p = dir.join("disk.img");
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn create_through_the_driver_rounds_to_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.img");
    let path = path.to_str().unwrap();
    let opts = OptionValues::parse(
        &FileDriver.create_options(),
        &[("size".to_string(), "1000".to_string())],
    )
    .unwrap();
    FileDriver
        .create(&format!("file:{path}"), &opts, Arc::new(TestHost::new()))
        .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), 1024);
    assert_eq!(
        open_file(path, OpenFlags::NONE).unwrap().length().unwrap(),
        1024
    );
}

#[test]
fn vectored_writes_and_reads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 1 << 20);
    let node = open_file(&path, OpenFlags::NONE).unwrap();
    let (a, b) = (pattern(3000, 1), pattern(5192, 2));
    node.write_vectored(4096, &[IoSlice::new(&a), IoSlice::new(&b)], ReqFlags::FUA)
        .unwrap();
    let (mut x, mut y) = (vec![0u8; 5000], vec![0u8; 3192]);
    node.read_vectored(
        4096,
        &mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)],
        ReqFlags::NONE,
    )
    .unwrap();
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert_eq!([x, y].concat(), want);
    assert_eq!(std::fs::read(&path).unwrap()[4096..12288], want[..]);
    node.flush().unwrap();
}

#[test]
fn reads_past_the_end_are_zeroes_and_overflow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("odd.img");
    std::fs::write(&p, pattern(700, 3)).unwrap();
    let node = open_file(p.to_str().unwrap(), OpenFlags::READ_ONLY).unwrap();
    // The length is whole sectors; the tail of the last one reads as zeros.
    assert_eq!(node.length().unwrap(), 1024);
    let mut buf = vec![0xffu8; 1024];
    node.read_at(0, &mut buf).unwrap();
    assert_eq!(buf[..700], pattern(700, 3)[..]);
    assert!(buf[700..].iter().all(|&b| b == 0));
    let e = node.read_at(u64::MAX - 1, &mut buf).unwrap_err();
    assert_eq!((e.kind, e.op), (ErrorKind::OutOfRange, Operation::Read));
}

#[test]
fn read_only_and_inactive_opens_refuse_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 65536);
    let before = std::fs::read(&path).unwrap();
    for (flags, why) in [
        (OpenFlags::READ_ONLY, "the file is open read-only"),
        (OpenFlags::INACTIVE, "image is inactive"),
    ] {
        let node = open_file(&path, flags).unwrap();
        let checks = [
            (node.write_at(0, b"x").unwrap_err(), Operation::Write),
            (node.discard(0, 4096).unwrap_err(), Operation::Discard),
            (
                node.write_zeroes(0, 4096, ZeroFlags::NONE).unwrap_err(),
                Operation::WriteZeroes,
            ),
            (
                node.truncate(0, Preallocation::Off).unwrap_err(),
                Operation::Truncate,
            ),
        ];
        for (e, op) in checks {
            assert_eq!(e.kind, ErrorKind::ReadOnly, "{e}");
            assert_eq!(e.op, op);
            assert_eq!(e.message, why);
            assert_eq!(e.file.as_deref(), Some(path.as_str()));
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn discard_and_write_zeroes_read_back_as_zeroes_and_keep_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 0);
    let data = pattern(256 << 10, 4);
    std::fs::write(&path, &data).unwrap();
    let node = open_file(&path, OpenFlags::NONE).unwrap();

    node.discard(64 << 10, 64 << 10).unwrap();
    node.write_zeroes(160 << 10, 8192, ZeroFlags::NONE).unwrap();
    node.write_zeroes(200 << 10, 4096, ZeroFlags::MAY_UNMAP)
        .unwrap();
    assert_eq!(node.length().unwrap(), 256 << 10);

    let mut want = data.clone();
    want[64 << 10..128 << 10].fill(0);
    want[160 << 10..(160 << 10) + 8192].fill(0);
    want[200 << 10..(200 << 10) + 4096].fill(0);
    let mut got = vec![0u8; 256 << 10];
    node.read_at(0, &mut got).unwrap();
    assert!(got == want, "contents differ");
    // The discarded range is a hole now.
    let e = node.block_status(64 << 10, 64 << 10).unwrap();
    assert!(e.flags.contains(ExtentFlags::ZERO), "{e:?}");
    assert_eq!(e.length, 64 << 10);
}

#[test]
fn truncate_grows_shrinks_and_allocates_the_first_block_of_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 0);
    let node = open_file(&path, OpenFlags::NONE).unwrap();
    node.truncate(1 << 20, Preallocation::Off).unwrap();
    assert_eq!(node.length().unwrap(), 1 << 20);
    // As QEMU's file-posix: the first 4 KiB are written, the rest a hole.
    let first = node.block_status(0, 1 << 20).unwrap();
    assert!(first.flags.contains(ExtentFlags::DATA), "{first:?}");
    assert_eq!(first.length, 4096);
    let rest = node.block_status(4096, (1 << 20) - 4096).unwrap();
    assert!(rest.flags.contains(ExtentFlags::ZERO), "{rest:?}");

    node.write_at(8192, b"tail").unwrap();
    node.truncate(8192, Preallocation::Off).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    node.truncate(16384, Preallocation::Full).unwrap();
    let mut buf = [1u8; 8192];
    node.read_at(8192, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 8192], "shrunk bytes do not come back");
}

#[test]
fn block_status_reports_holes_and_data_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 1 << 20);
    let node = open_file(&path, OpenFlags::NONE).unwrap();
    node.write_at(64 << 10, &pattern(4096, 5)).unwrap();

    let hole = node.block_status(0, 1 << 20).unwrap();
    assert!(hole.flags.contains(ExtentFlags::ZERO));
    assert!(!hole.flags.contains(ExtentFlags::DATA));
    assert_eq!(hole.length, 64 << 10);
    let data = node.block_status(64 << 10, 1 << 19).unwrap();
    assert!(data.flags.contains(ExtentFlags::DATA));
    assert!(data.flags.contains(ExtentFlags::OFFSET_VALID));
    assert_eq!(data.mapped_offset, 64 << 10);
    assert_eq!(data.length, 4096);
    // Past the end: zeroes, the queried length.
    let past = node.block_status(2 << 20, 512).unwrap();
    assert!(past.flags.contains(ExtentFlags::ZERO));
    assert_eq!(past.length, 512);
}

#[test]
fn a_second_writer_is_refused_and_a_shared_reader_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 65536);
    let first = open_file(&path, OpenFlags::NONE).unwrap();
    let e = open_file(&path, OpenFlags::NONE).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    assert!(e.message.starts_with("Failed to get \"write\" lock"), "{e}");
    // A plain reader does not share write either (QEMU's default).
    let e = open_file(&path, OpenFlags::READ_ONLY).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    assert!(
        e.message.starts_with("Failed to get shared \"write\" lock"),
        "{e}"
    );
    // force-share and locking=off open beside the writer.
    open_file(&path, OpenFlags::READ_ONLY.with(OpenFlags::FORCE_SHARE)).unwrap();
    let mut req = OpenRequest::new(path.as_str(), OpenFlags::NONE);
    req.options = vec![("locking".into(), "off".into())];
    FileDriver.open(&req, Arc::new(TestHost::new())).unwrap();
    // Closing the writer releases its locks.
    drop(first);
    open_file(&path, OpenFlags::NONE).unwrap();
}

#[test]
fn open_errors_name_the_file_in_qemu_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.img");
    let missing = missing.to_str().unwrap();
    let e = open_file(missing, OpenFlags::NONE).err().unwrap();
    assert_eq!(
        (e.kind, e.op.clone()),
        (ErrorKind::NotFound, Operation::Open)
    );
    assert_eq!(
        e.message,
        format!("Could not open '{missing}': No such file or directory")
    );
    assert_eq!(e.file.as_deref(), Some(missing));
    let mut req = OpenRequest::new(missing, OpenFlags::NONE);
    req.options = vec![
        ("aio".into(), "threads".into()),
        ("cache".into(), "x".into()),
    ];
    let e = FileDriver
        .open(&req, Arc::new(TestHost::new()))
        .err()
        .unwrap();
    assert_eq!(
        e.message,
        "Block protocol 'file' doesn't support the option 'cache'"
    );
}
