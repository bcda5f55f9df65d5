//! Unit tests of the raw format over block-core's in-memory file node and
//! test host services.

use crate::RawDriver;
use block_core::testutil::{ChildOp, InjectedError, MemFile, TestHost};
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ChildRole, ErrorKind, ExtentFlags, MeasureRequest,
    OpenFlags, OpenRequest, Operation, OptionValues, Preallocation, ProbeInput, ReqFlags,
    ZeroFlags,
};
use std::io::IoSlice;
use std::sync::Arc;

const NAME: &str = "disk.img";

/// A deterministic byte pattern (no two neighbouring 4 KiB blocks alike).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed as u32 * 7 + (i >> 12) as u32) as u8
        })
        .collect()
}

/// Opens raw with `options` over a MemFile holding `data`.
fn open_raw(
    data: &[u8],
    options: &[(&str, &str)],
    flags: OpenFlags,
) -> (
    Arc<TestHost>,
    Arc<MemFile>,
    block_core::Result<Box<dyn BlockNode>>,
) {
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::with_data(data));
    let mut req = OpenRequest::new(NAME, flags);
    req.options = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let node = RawDriver.open(&req, host.clone());
    (host, file, node)
}

#[test]
fn opens_its_file_child_with_the_request_flags() {
    let data = pattern(8192, 1);
    let flags = OpenFlags::READ_ONLY.with(OpenFlags::FORCE_SHARE);
    let (host, _file, node) = open_raw(&data, &[], flags);
    let node = node.unwrap();
    let opened = host.opened();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].role, ChildRole::File);
    assert_eq!(opened[0].filename, NAME);
    assert_eq!(opened[0].flags, flags);
    assert_eq!(node.length().unwrap(), 8192);
    assert_eq!(node.info().unwrap().format, "raw");
}

#[test]
fn the_window_maps_reads_and_writes_to_offset_in_the_child() {
    let data = pattern(64 << 10, 2);
    let (_host, file, node) = open_raw(
        &data,
        &[("offset", "4096"), ("size", "16k")],
        OpenFlags::NONE,
    );
    let node = node.unwrap();
    assert_eq!(node.length().unwrap(), 16 << 10);

    let mut buf = vec![0u8; 16 << 10];
    node.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, &data[4096..4096 + (16 << 10)]);

    node.write_at(100, b"window").unwrap();
    assert_eq!(file.peek(4196, 6), b"window");
    // Bytes outside the window are untouched.
    assert_eq!(file.peek(0, 4096), &data[..4096]);
    assert_eq!(file.peek(20480, 1024), &data[20480..21504]);

    let reqs = file.requests();
    let last = reqs.last().unwrap();
    assert_eq!((last.op, last.offset, last.len), (ChildOp::Write, 4196, 6));
}

#[test]
fn requests_past_the_window_fail_without_touching_the_child() {
    let data = pattern(32 << 10, 3);
    let (_host, file, node) = open_raw(
        &data,
        &[("offset", "512"), ("size", "8192")],
        OpenFlags::NONE,
    );
    let node = node.unwrap();
    file.clear_log();

    let mut buf = [0u8; 16];
    let e = node.read_at(8190, &mut buf).unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutOfRange);
    assert_eq!(e.op, Operation::Read);
    assert_eq!(e.offset, Some(8190));
    assert_eq!(e.file.as_deref(), Some(NAME));
    assert_eq!(
        e.to_string(),
        "disk.img: read at offset 8190: request of 16 bytes exceeds the image size 8192"
    );

    let e = node.write_at(8192, b"x").unwrap_err();
    assert_eq!(
        (e.kind, e.op.clone()),
        (ErrorKind::OutOfRange, Operation::Write)
    );
    let e = node.discard(4096, 8192).unwrap_err();
    assert_eq!(e.op, Operation::Discard);
    let e = node.write_zeroes(u64::MAX, 2, ZeroFlags::NONE).unwrap_err();
    assert_eq!(e.op, Operation::WriteZeroes);
    let e = node.block_status(9000, 1).unwrap_err();
    assert_eq!(e.op, Operation::BlockStatus);

    assert!(file.requests().is_empty(), "{:?}", file.requests());
    assert_eq!(file.contents(), data);
}

#[test]
fn a_window_past_the_file_is_refused_in_qemu_words() {
    let data = pattern(4096, 4);
    let (_, _, node) = open_raw(
        &data,
        &[("offset", "1024"), ("size", "4096")],
        OpenFlags::NONE,
    );
    let e = node.err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        "The sum of offset (1024) and size (4096) has to be smaller or equal to the actual size of the containing file (4096)"
    );
    let (_, _, node) = open_raw(&data, &[("offset", "8192")], OpenFlags::NONE);
    assert_eq!(
        node.err().unwrap().message,
        "offset 8192 is past the end of the file (4096)"
    );
    // Overflowing sums are refused, not wrapped.
    let (_, _, node) = open_raw(
        &data,
        &[("offset", "1"), ("size", "18446744073709551615")],
        OpenFlags::NONE,
    );
    assert_eq!(node.err().unwrap().kind, ErrorKind::InvalidInput);
}

#[test]
fn unknown_options_are_refused() {
    let (host, _, node) = open_raw(&[0; 512], &[("frob", "1")], OpenFlags::NONE);
    let e = node.err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        "Block format 'raw' does not support the option 'frob'"
    );
    assert!(
        host.opened().is_empty(),
        "no child is opened for a bad request"
    );
}

#[test]
fn without_a_size_the_length_follows_the_child() {
    let (_host, file, node) = open_raw(&pattern(4096, 5), &[("offset", "1024")], OpenFlags::NONE);
    let node = node.unwrap();
    assert_eq!(node.length().unwrap(), 3072);
    file.write_at(8192, &[1u8; 4096]).unwrap();
    assert_eq!(node.length().unwrap(), 12288 - 1024);
}

#[test]
fn truncate_resizes_the_child_unless_there_is_a_window() {
    let (_host, file, node) = open_raw(&pattern(4096, 6), &[], OpenFlags::NONE);
    let node = node.unwrap();
    node.truncate(1 << 20, Preallocation::Off).unwrap();
    assert_eq!(file.length().unwrap(), 1 << 20);
    assert_eq!(node.length().unwrap(), 1 << 20);

    let (_host, file, node) = open_raw(&pattern(4096, 6), &[("size", "2048")], OpenFlags::NONE);
    let e = node
        .unwrap()
        .truncate(8192, Preallocation::Off)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(e.op, Operation::Truncate);
    assert_eq!(
        e.message,
        "cannot resize a raw image with an offset or size window"
    );
    assert_eq!(file.length().unwrap(), 4096);
}

#[test]
fn block_status_passes_the_childs_through_the_window() {
    // 16 KiB child; only the block at 8 KiB holds data.
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::new(16384));
    file.poke(8192, &[9u8; 4096]);
    let mut req = OpenRequest::new(NAME, OpenFlags::NONE);
    req.options = vec![("offset".into(), "4096".into())];
    let node = RawDriver.open(&req, host).unwrap();

    let hole = node.block_status(0, 12288).unwrap();
    assert_eq!(hole.length, 4096);
    assert!(hole.flags.contains(ExtentFlags::ZERO));
    assert!(!hole.flags.contains(ExtentFlags::DATA));
    let data = node.block_status(4096, 8192).unwrap();
    assert_eq!(data.length, 4096);
    assert!(data.flags.contains(ExtentFlags::DATA));
    // The extent never exceeds the query.
    let short = node.block_status(4096, 100).unwrap();
    assert_eq!(short.length, 100);
}

#[test]
fn writes_drop_the_compressed_flag_and_keep_fua() {
    let (_host, file, node) = open_raw(&[0; 8192], &[], OpenFlags::NONE);
    let node = node.unwrap();
    let a = [1u8; 512];
    let b = [2u8; 512];
    node.write_vectored(
        1024,
        &[IoSlice::new(&a), IoSlice::new(&b)],
        ReqFlags::COMPRESSED.with(ReqFlags::FUA),
    )
    .unwrap();
    let w = *file.requests().last().unwrap();
    assert_eq!(w.op, ChildOp::Write);
    assert_eq!(w.iovecs, 2, "vectors reach the child unchanged");
    assert!(w.flags.contains(ReqFlags::FUA));
    assert!(!w.flags.contains(ReqFlags::COMPRESSED));
    node.flush().unwrap();
    assert_eq!(file.stats().flushes, 1);
}

#[test]
fn child_errors_reach_the_caller() {
    let (_host, file, node) = open_raw(&[0; 8192], &[("offset", "4096")], OpenFlags::NONE);
    let node = node.unwrap();
    file.inject_error(InjectedError {
        offset: 4096 + 100,
        op: Some(ChildOp::Read),
        kind: ErrorKind::Io,
    });
    let mut buf = [0u8; 512];
    assert_eq!(node.read_at(0, &mut buf).unwrap_err().kind, ErrorKind::Io);
    node.write_at(0, &buf).unwrap();
}

#[test]
fn create_asks_the_host_for_a_file_of_the_size() {
    let host = Arc::new(TestHost::new());
    let opts = OptionValues::parse(
        &RawDriver.create_options(),
        &[("size".to_string(), "1M".to_string())],
    )
    .unwrap();
    RawDriver.create("new.img", &opts, host.clone()).unwrap();
    let f = host.created_file("new.img").unwrap();
    assert_eq!(f.length().unwrap(), 1 << 20);
}

#[test]
fn probe_loses_to_every_format_and_measure_rounds_to_sectors() {
    let head = [0u8; 512];
    let input = ProbeInput {
        filename: NAME,
        head: &head,
        tail: &[],
        file_size: 512,
    };
    assert_eq!(RawDriver.probe(&input), 1);
    let m = RawDriver
        .measure(&MeasureRequest {
            virtual_size: 1000,
            ..MeasureRequest::default()
        })
        .unwrap();
    assert_eq!((m.required, m.fully_allocated), (1024, 1024));
}
