//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]), so no file system and no host are involved.

use crate::codec;
use crate::header::{Header, HEADER_SIZE};
use crate::{XorDriver, DRIVER_NAME};
use block_core::testutil::{ChildOp, InjectedError, MemFile, TestHost};
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ChildRole, ErrorKind, ExtentFlags, OpenFlags,
    OpenRequest, OptionValues, Preallocation, ProbeInput, ReqFlags, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;

const NAME: &str = "disk.img";

/// A deterministic byte pattern holding every byte value, 0 and the key too.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(131).wrapping_add(seed as u32 * 17) as u8)
        .collect()
}

fn create_options(pairs: &[(&str, &str)]) -> block_core::Result<OptionValues> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    OptionValues::parse(&XorDriver.create_options(), &pairs)
}

/// Creates an image through the driver; returns the host and its file.
fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    let host = Arc::new(TestHost::new());
    XorDriver
        .create(NAME, &create_options(pairs).unwrap(), host.clone())
        .unwrap();
    let file = host.created_file(NAME).expect("create made the file");
    (host, file)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    XorDriver.open(&OpenRequest::new(NAME, flags), host.clone())
}

#[test]
fn create_writes_the_header_and_a_new_image_reads_as_zeros() {
    let (host, file) = create(&[("size", "1M"), ("key", "33")]);
    assert_eq!(file.length().unwrap(), HEADER_SIZE + (1 << 20));
    let head: [u8; 512] = file.peek(0, 512).try_into().unwrap();
    assert_eq!(
        Header::decode(&head).unwrap(),
        Header {
            size: 1 << 20,
            key: 33
        }
    );
    // Only the header was written: the data is left to the file's holes.
    assert_eq!(file.stats().writes, 1);
    assert_eq!(file.requests()[0].len, HEADER_SIZE);

    let node = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(node.length().unwrap(), 1 << 20);
    let mut buf = vec![0xffu8; 1 << 20];
    node.read_at(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let info = node.info().unwrap();
    assert_eq!(info.format, DRIVER_NAME);
    assert_eq!(info.virtual_size, 1 << 20);
    assert_eq!(info.format_specific.unwrap()["data"]["key"], 33);
}

#[test]
fn data_is_stored_mapped_through_the_key_and_reads_back() {
    let (host, file) = create(&[("size", "256k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let data = pattern(100_000, 1);
    node.write_at(4097, &data).unwrap();

    let mut stored = file.peek(HEADER_SIZE + 4097, data.len());
    assert_ne!(stored, data, "the file does not hold the guest bytes");
    codec::apply(crate::driver::DEFAULT_KEY, &mut stored);
    assert_eq!(stored, data);

    let mut back = vec![0u8; data.len()];
    node.read_at(4097, &mut back).unwrap();
    assert_eq!(back, data);
    // The header is untouched.
    assert_eq!(&file.peek(0, 8), b"BLKXOR\0\0");
}

#[test]
fn vectored_requests_round_trip_and_every_chunk_carries_fua() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let a = pattern(3, 2);
    let b = pattern(150_000, 3); // more than one encode chunk
    let c = pattern(700, 4);
    file.clear_log();
    node.write_vectored(
        65_000,
        &[IoSlice::new(&a), IoSlice::new(&b), IoSlice::new(&c)],
        ReqFlags::FUA.with(ReqFlags::COMPRESSED),
    )
    .unwrap();
    assert_eq!(file.stats().bytes_written, 150_703);
    let writes = file.requests();
    assert!(writes.len() > 1, "a long write is encoded in chunks");
    for w in &writes {
        assert!(w.flags.contains(ReqFlags::FUA), "{w:?}");
        assert!(!w.flags.contains(ReqFlags::COMPRESSED), "{w:?}");
    }

    let mut x = vec![0u8; 100_000];
    let mut y = vec![0u8; 50_703];
    node.read_vectored(
        65_000,
        &mut [IoSliceMut::new(&mut x), IoSliceMut::new(&mut y)],
        ReqFlags::NONE,
    )
    .unwrap();
    let mut want = a.clone();
    want.extend_from_slice(&b);
    want.extend_from_slice(&c);
    x.extend_from_slice(&y);
    assert_eq!(x, want);
}

#[test]
fn requests_past_the_end_fail_without_touching_the_file() {
    let (host, file) = create(&[("size", "64k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    let mut buf = [0u8; 16];
    let e = node.read_at((64 << 10) - 8, &mut buf).unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutOfRange);
    assert_eq!(e.offset, Some((64 << 10) - 8));
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
fn a_damaged_header_or_short_file_is_refused_with_its_reason() {
    let good = Header { size: 8192, key: 9 }.encode();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0u8; 100], "shorter than the header"),
        (
            [&b"QFI\xfb"[..], &good[4..], &[0u8; 8192]].concat(),
            "bad magic",
        ),
        ([&good[..], &[0u8; 4096]].concat(), "ends before the data"),
    ];
    for (bytes, words) in cases {
        let host = Arc::new(TestHost::new());
        host.add_file(ChildRole::File, NAME, MemFile::with_data(&bytes));
        let e = open(&host, OpenFlags::NONE).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains(words), "{e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
    }
}

#[test]
fn child_errors_reach_the_caller() {
    let (host, file) = create(&[("size", "64k")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    file.inject_error(InjectedError {
        offset: HEADER_SIZE + 1000,
        op: Some(ChildOp::Read),
        kind: ErrorKind::Io,
    });
    let mut buf = [0u8; 4096];
    assert_eq!(node.read_at(0, &mut buf).unwrap_err().kind, ErrorKind::Io);
    node.write_at(0, &buf).unwrap();
    node.read_at(4096, &mut buf).unwrap();
}

#[test]
fn the_open_flags_reach_the_file_and_unknown_options_are_refused() {
    let (host, _file) = create(&[("size", "64k")]);
    let flags = OpenFlags::READ_ONLY.with(OpenFlags::FORCE_SHARE);
    open(&host, flags).unwrap();
    let opened = host.opened();
    let last = opened.last().unwrap();
    assert_eq!((last.role, last.flags), (ChildRole::File, flags));

    let mut req = OpenRequest::new(NAME, OpenFlags::NONE);
    req.options = vec![("frob".into(), "1".into())];
    let before = host.opened().len();
    let e = XorDriver.open(&req, host.clone()).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(
        e.message.contains("does not support the option 'frob'"),
        "{e}"
    );
    assert_eq!(
        host.opened().len(),
        before,
        "no child opened for a bad request"
    );
}

#[test]
fn create_options_are_checked_before_any_file_is_made() {
    for (pairs, words) in [
        (&[("key", "7")][..], "size must be given"),
        (&[("size", "1M"), ("key", "0")][..], "key 0 is not between"),
        (
            &[("size", "1M"), ("key", "256")][..],
            "key 256 is not between",
        ),
        (&[("size", "8E")][..], "larger than the format allows"),
    ] {
        let host = Arc::new(TestHost::new());
        let opts = create_options(pairs).unwrap();
        let e = XorDriver.create(NAME, &opts, host.clone()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
        assert!(e.message.contains(words), "{e}");
        assert!(host.created_file(NAME).is_none());
    }
    // The schema itself refuses unknown options and values of the wrong type.
    assert!(create_options(&[("frob", "1")]).is_err());
    assert!(create_options(&[("key", "lots")]).is_err());
}

#[test]
fn zeroes_and_discard_leave_holes_that_block_status_reports() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(512 << 10, 5)).unwrap();
    node.write_zeroes(64 << 10, 64 << 10, ZeroFlags::MAY_UNMAP)
        .unwrap();
    node.discard(256 << 10, 128 << 10).unwrap();
    let mut buf = vec![0xffu8; 64 << 10];
    node.read_at(64 << 10, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    node.read_at(256 << 10, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(file.stats().zeroes_or_discards, 2);

    // Walk the image: every extent is non-empty, names no file offset, and
    // ZERO extents read as zeros.
    let mut off = 0u64;
    let mut zero_at_300k = false;
    while off < 1 << 20 {
        let e = node.block_status(off, (1 << 20) - off).unwrap();
        assert!(e.length > 0 && off + e.length <= 1 << 20, "{e:?}");
        assert!(!e.flags.contains(ExtentFlags::OFFSET_VALID), "{e:?}");
        if e.flags.contains(ExtentFlags::ZERO) {
            let mut z = vec![0xffu8; e.length as usize];
            node.read_at(off, &mut z).unwrap();
            assert!(z.iter().all(|&b| b == 0), "ZERO extent at {off} holds data");
            zero_at_300k |= (off..off + e.length).contains(&(300 << 10));
        } else {
            assert!(e.flags.contains(ExtentFlags::DATA), "{e:?}");
        }
        off += e.length;
    }
    assert!(zero_at_300k, "the discarded range is a hole");
    assert!(node
        .block_status(0, 4096)
        .unwrap()
        .flags
        .contains(ExtentFlags::DATA));
}

#[test]
fn truncate_resizes_the_file_and_the_header() {
    let (host, file) = create(&[("size", "64k"), ("key", "200")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(60 << 10, &[0xabu8; 4096]).unwrap();
    node.truncate(1 << 20, Preallocation::Off).unwrap();
    assert_eq!(node.length().unwrap(), 1 << 20);
    assert_eq!(file.length().unwrap(), HEADER_SIZE + (1 << 20));
    let mut buf = vec![0xffu8; 8192];
    node.read_at(60 << 10, &mut buf).unwrap();
    assert!(buf[..4096].iter().all(|&b| b == 0xab));
    assert!(
        buf[4096..].iter().all(|&b| b == 0),
        "grown bytes read as zeros"
    );

    node.truncate(4096, Preallocation::Off).unwrap();
    assert_eq!(file.length().unwrap(), HEADER_SIZE + 4096);
    let reopened = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(reopened.length().unwrap(), 4096);
    assert_eq!(
        reopened.info().unwrap().format_specific.unwrap()["data"]["key"],
        200
    );
}

#[test]
fn invalidate_cache_rereads_a_header_another_opener_changed() {
    let (host, _file) = create(&[("size", "64k")]);
    let a = open(&host, OpenFlags::NONE).unwrap();
    let b = open(&host, OpenFlags::NONE).unwrap();
    b.truncate(128 << 10, Preallocation::Off).unwrap();
    assert_eq!(a.length().unwrap(), 64 << 10, "cached until invalidated");
    a.migration().unwrap().invalidate_cache().unwrap();
    assert_eq!(a.length().unwrap(), 128 << 10);
}

#[test]
fn concurrent_writers_of_disjoint_ranges_all_land() {
    let (host, _file) = create(&[("size", "1M")]);
    let node: Arc<dyn BlockNode> = Arc::from(open(&host, OpenFlags::NONE).unwrap());
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let node = node.clone();
            s.spawn(move || {
                for i in 0..16u64 {
                    let off = (u64::from(t) * 16 + i) * 16384;
                    node.write_at(off, &pattern(16384, t * 16 + i as u8))
                        .unwrap();
                }
            });
        }
    });
    let mut buf = vec![0u8; 16384];
    for n in 0..64u64 {
        node.read_at(n * 16384, &mut buf).unwrap();
        assert_eq!(buf, pattern(16384, n as u8), "block {n}");
    }
}

#[test]
fn probe_is_certain_of_the_magic_only() {
    fn probe(head: &[u8]) -> u32 {
        XorDriver.probe(&ProbeInput {
            head,
            tail: &[],
            file_size: 4096,
            filename: NAME,
        })
    }
    assert_eq!(probe(&Header { size: 0, key: 1 }.encode()), 100);
    assert_eq!(probe(b"BLKXO"), 0);
    assert_eq!(probe(&[0u8; 512]), 0);
}
