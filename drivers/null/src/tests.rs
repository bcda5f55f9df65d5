//! Unit tests of the null protocol, opened through its driver with
//! block-core's test host services.

use crate::{NullDriver, DEFAULT_SIZE};
use block_core::testutil::TestHost;
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ErrorKind, ExtentFlags, OpenFlags, OpenRequest,
    Operation, Preallocation, ZeroFlags,
};
use std::io::IoSliceMut;
use std::sync::Arc;

fn open_null(options: &[(&str, &str)]) -> block_core::Result<Box<dyn BlockNode>> {
    let host = Arc::new(TestHost::new());
    let mut req = OpenRequest::new("null-co://", OpenFlags::NONE);
    req.options = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let node = NullDriver.open(&req, host.clone());
    assert!(host.opened().is_empty(), "null opens no child");
    node
}

#[test]
fn default_and_given_sizes() {
    assert_eq!(open_null(&[]).unwrap().length().unwrap(), DEFAULT_SIZE);
    let node = open_null(&[("size", "64M")]).unwrap();
    assert_eq!(node.length().unwrap(), 64 << 20);
    assert_eq!(node.info().unwrap().virtual_size, 64 << 20);
    assert_eq!(node.info().unwrap().format, "null-co");
    assert_eq!(
        open_null(&[("size", "lots")]).err().unwrap().kind,
        ErrorKind::InvalidInput
    );
}

#[test]
fn reads_return_zeroes_over_whatever_the_buffer_held() {
    for opts in [
        &[][..],
        &[("read-zeroes", "on")][..],
        &[("read-zeroes", "off")][..],
    ] {
        let node = open_null(opts).unwrap();
        let mut a = vec![0xa5u8; 4096];
        let mut b = vec![0x5au8; 512];
        node.read_vectored(
            12345,
            &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
            block_core::ReqFlags::NONE,
        )
        .unwrap();
        assert!(a.iter().chain(&b).all(|&x| x == 0), "{opts:?}");
    }
}

#[test]
fn writes_are_dropped() {
    let node = open_null(&[("size", "1M")]).unwrap();
    node.write_at(0, &[7u8; 4096]).unwrap();
    let mut buf = [1u8; 4096];
    node.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 4096]);
    node.discard(0, 4096).unwrap();
    node.write_zeroes(4096, 4096, ZeroFlags::MAY_UNMAP).unwrap();
    node.flush().unwrap();
    assert_eq!(node.allocated_size().unwrap(), 0);
    assert!(node.has_zero_init());
}

#[test]
fn requests_past_the_end_fail_with_op_and_offset() {
    let node = open_null(&[("size", "8192")]).unwrap();
    let mut buf = [0u8; 2];
    let e = node.read_at(8191, &mut buf).unwrap_err();
    assert_eq!(
        (e.kind, e.op.clone(), e.offset),
        (ErrorKind::OutOfRange, Operation::Read, Some(8191))
    );
    assert_eq!(e.to_string(), "read at offset 8191: request past the end");
    let e = node.write_at(8192, &buf).unwrap_err();
    assert_eq!(e.op, Operation::Write);
    let e = node.discard(u64::MAX, 2).unwrap_err();
    assert_eq!(e.op, Operation::Discard);
    let e = node.write_zeroes(4096, 8192, ZeroFlags::NONE).unwrap_err();
    assert_eq!(e.op, Operation::WriteZeroes);
    node.read_at(8190, &mut buf).unwrap();
}

#[test]
fn block_status_is_allocated_zeroes_mapped_in_place() {
    let node = open_null(&[("size", "1M")]).unwrap();
    let e = node.block_status(65536, 4096).unwrap();
    assert_eq!(e.length, 4096);
    assert_eq!(e.mapped_offset, 65536);
    assert!(e.flags.contains(ExtentFlags::ZERO));
    assert!(e.flags.contains(ExtentFlags::ALLOCATED));
    assert!(e.flags.contains(ExtentFlags::OFFSET_VALID));
    assert!(!e.flags.contains(ExtentFlags::DATA));
}

#[test]
fn truncate_sets_the_size() {
    let node = open_null(&[("size", "1M")]).unwrap();
    node.truncate(4096, Preallocation::Off).unwrap();
    assert_eq!(node.length().unwrap(), 4096);
    let mut buf = [0u8; 1];
    assert_eq!(
        node.read_at(4096, &mut buf).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    node.truncate(1 << 30, Preallocation::Off).unwrap();
    node.read_at(4096, &mut buf).unwrap();
}

#[test]
fn unknown_options_are_refused() {
    let e = open_null(&[("latency-ns", "5")]).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    // As QEMU's bdrv_open words it, with no operation prefix.
    assert_eq!(e.op, Operation::Unspecified);
    assert_eq!(
        e.message,
        "Block protocol 'null-co' doesn't support the option 'latency-ns'"
    );
}
