//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]).

use crate::header::{Header, ENDIAN, HEADER_LEN};
use crate::tables::COMPRESSED;
use crate::QcowDriver;
use block_core::testutil::{self, pattern, MemFile, TestHost};
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, ChildRole, ErrorKind, OpenFlags, ProbeInput, ReqFlags,
};
use std::io::IoSlice;
use std::sync::Arc;

const NAME: &str = "disk.qcow";

fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&QcowDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&QcowDriver, host, NAME, flags)
}

fn header(file: &MemFile) -> Header {
    Header::decode(&file.peek(0, HEADER_LEN)).unwrap()
}

/// The L2 entry of guest cluster `c` as stored (0 without an L2 table).
fn l2_entry(file: &MemFile, c: u64) -> u64 {
    let h = header(file);
    let (i1, i2) = (c / h.l2_entries(), c % h.l2_entries());
    let t = ENDIAN.u64(&file.peek(h.l1_table_offset + i1 * 8, 8), 0);
    if t == 0 {
        return 0;
    }
    ENDIAN.u64(&file.peek(t + i2 * 8, 8), 0)
}

#[test]
fn a_new_image_is_qemus_layout() {
    let (_, file) = create(&[("size", "10M")]);
    let h = header(&file);
    assert_eq!(&file.peek(0, 4), b"QFI\xfb");
    assert_eq!((h.version, h.cluster_bits, h.l2_bits), (1, 12, 9));
    assert_eq!((h.size, h.l1_table_offset, h.mtime), (10 << 20, 48, 0));
    // Five L1 entries, written as one whole sector.
    assert_eq!(file.contents().len(), 48 + 512);
    let probe = |head: &[u8]| {
        QcowDriver.probe(&ProbeInput {
            filename: NAME,
            head,
            tail: &[],
            file_size: 560,
        })
    };
    assert_eq!(probe(&file.peek(0, 512)), 100);
    assert_eq!(probe(&file.peek(0, 47)), 0, "a whole header is needed");
    let mut v2 = file.peek(0, 512);
    v2[7] = 2;
    assert_eq!(probe(&v2), 0);
    // Sizes are rounded up to sectors, as qemu-img does.
    let (_, file) = create(&[("size", "1000")]);
    assert_eq!(header(&file).size, 1024);
}

#[test]
fn writes_append_l2_tables_and_clusters_as_qemu() {
    let (host, file) = create(&[("size", "10M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let data = pattern(2048, 1);
    node.write_at(1024, &data).unwrap();
    let big = pattern(8192, 2);
    node.write_at(3 << 20, &big).unwrap();
    node.flush().unwrap();
    // L2 table at 4 KiB, its cluster after it; then the next L2 table and
    // two contiguous clusters.
    assert_eq!(ENDIAN.u64(&file.peek(48, 8), 0), 0x1000);
    assert_eq!(l2_entry(&file, 0), 0x2000);
    assert_eq!(ENDIAN.u64(&file.peek(56, 8), 0), 0x3000);
    assert_eq!(l2_entry(&file, 768), 0x4000);
    assert_eq!(l2_entry(&file, 769), 0x5000);
    drop(node);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut back = vec![0u8; 4096];
    node.read_at(0, &mut back).unwrap();
    assert!(back[..1024].iter().all(|&b| b == 0));
    assert_eq!(&back[1024..3072], &data[..]);
    let mut back = vec![0u8; 8192];
    node.read_at(3 << 20, &mut back).unwrap();
    assert_eq!(back, big);
    // Zero writes are data, as QEMU's qcow has no zero clusters.
    drop(node);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_zeroes(5 << 20, 4096, block_core::ZeroFlags::NONE)
        .unwrap();
    assert_ne!(l2_entry(&file, 1280), 0);
    let mut z = vec![1u8; 4096];
    node.read_at(5 << 20, &mut z).unwrap();
    assert!(z.iter().all(|&b| b == 0));
}

#[test]
fn a_backing_file_shows_through_and_clusters_are_sectors() {
    let host = Arc::new(TestHost::new());
    let base = pattern(1 << 20, 9);
    host.add_file(ChildRole::Backing, "base.raw", MemFile::with_data(&base));
    let pairs = [("backing_file", "base.raw"), ("backing_fmt", "raw")];
    let file = testutil::create_in(&QcowDriver, &host, NAME, &pairs).unwrap();
    let h = header(&file);
    assert_eq!((h.cluster_bits, h.l2_bits, h.size), (9, 12, 1 << 20));
    assert_eq!((h.backing_file_offset, h.backing_file_size), (48, 8));
    assert_eq!(h.l1_table_offset, 56);
    assert_eq!(&file.peek(48, 8), b"base.raw");
    let node = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(
        node.info().unwrap().backing_filename.as_deref(),
        Some("base.raw")
    );
    node.write_at(1000, &[7u8; 100]).unwrap();
    let mut back = vec![0u8; 4096];
    node.read_at(0, &mut back).unwrap();
    let mut want = base[..4096].to_vec();
    want[1000..1100].fill(7);
    assert_eq!(back, want, "copy-on-write keeps the base around the write");
    // Without the backing file the unallocated clusters read as zeros.
    drop(node);
    let node = open(&host, OpenFlags::NO_BACKING.with(OpenFlags::READ_ONLY)).unwrap();
    let mut back = vec![1u8; 512];
    node.read_at(4096, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn compressed_clusters_round_trip_and_are_rewritten_on_partial_writes() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut data = vec![0u8; 8192];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i / 100) as u8;
    }
    node.write_vectored(0, &[IoSlice::new(&data)], ReqFlags::COMPRESSED)
        .unwrap();
    let e = l2_entry(&file, 0);
    assert_ne!(e & COMPRESSED, 0);
    // Sector-aligned, right after the L2 table; the next one a sector on.
    assert_eq!(e & ((1 << 51) - 1), 0x2000);
    assert_eq!(l2_entry(&file, 1) & ((1 << 51) - 1), 0x2200);
    let mut back = vec![0u8; 8192];
    node.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);
    // Incompressible data is stored plainly.
    let mut x: u64 = 1;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    node.write_vectored(8192, &[IoSlice::new(&noise)], ReqFlags::COMPRESSED)
        .unwrap();
    assert_eq!(l2_entry(&file, 2) & COMPRESSED, 0);
    // A partial write of a compressed cluster makes it plain, old bytes kept.
    node.write_at(100, &[0xee; 10]).unwrap();
    assert_eq!(l2_entry(&file, 0) & COMPRESSED, 0);
    data[100..110].fill(0xee);
    node.read_at(0, &mut back).unwrap();
    assert_eq!(back, data);
    let st = node.block_status(4096, 4096).unwrap();
    assert!(st.flags.contains(block_core::ExtentFlags::COMPRESSED));
}

/// A change to an image's bytes.
type Patch = Box<dyn FnOnce(&mut Vec<u8>)>;

fn hostile(patch: impl FnOnce(&mut Vec<u8>)) -> block_core::BlockError {
    let (_, file) = create(&[("size", "10M")]);
    let mut b = file.contents();
    patch(&mut b);
    let host = Arc::new(TestHost::new());
    host.add_file(ChildRole::File, NAME, MemFile::with_data(&b));
    open(&host, OpenFlags::READ_ONLY).err().expect("refused")
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let cases: Vec<(Patch, &str)> = vec![
        (Box::new(|b| b[32] = 8), "Cluster size must be between"),
        (Box::new(|b| b[32] = 17), "Cluster size must be between"),
        (Box::new(|b| b[33] = 5), "L2 table size must be between"),
        (Box::new(|b| b[33] = 14), "L2 table size must be between"),
        (
            Box::new(|b| b[36..40].copy_from_slice(&[0, 0, 0, 2])),
            "invalid encryption",
        ),
        (
            Box::new(|b| b[24..32].copy_from_slice(&[0xff; 8])),
            "Image too large",
        ),
        (
            Box::new(|b| b[24..32].copy_from_slice(&1u64.to_be_bytes())),
            "too small",
        ),
        // Larger than the L1 table QEMU allows.
        (
            Box::new(|b| b[24..32].copy_from_slice(&(1u64 << 60).to_be_bytes())),
            "Image too large",
        ),
        // A big but allowed size: the L1 table must then lie in the file.
        (
            Box::new(|b| b[24..32].copy_from_slice(&(1u64 << 45).to_be_bytes())),
            "L1 table",
        ),
        (
            Box::new(|b| b[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes())),
            "L1 table",
        ),
        (
            Box::new(|b| b[40..48].copy_from_slice(&u64::MAX.to_be_bytes())),
            "L1 table",
        ),
        (
            Box::new(|b| {
                b[8..16].copy_from_slice(&48u64.to_be_bytes());
                b[16..20].copy_from_slice(&5000u32.to_be_bytes());
            }),
            "Backing file name too long",
        ),
        (
            Box::new(|b| {
                b[8..16].copy_from_slice(&(1u64 << 40).to_be_bytes());
                b[16..20].copy_from_slice(&10u32.to_be_bytes());
            }),
            "past the end",
        ),
        (Box::new(|b| b[7] = 2), "does not support qcow version 2"),
        (Box::new(|b| b[0] = b'X'), "Image not in qcow format"),
        (Box::new(|b| b.truncate(20)), "Image not in qcow format"),
    ];
    for (patch, words) in cases {
        let e = hostile(patch);
        assert!(e.message.contains(words), "{words}: {e}");
    }
}

#[test]
fn hostile_table_entries_are_corruption_errors() {
    let (host, file) = create(&[("size", "10M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &[1u8; 8192]).unwrap();
    drop(node);
    let l2 = ENDIAN.u64(&file.peek(48, 8), 0);
    let read = |file: &MemFile| {
        let host = Arc::new(TestHost::new());
        host.add_file(ChildRole::File, NAME, MemFile::with_data(&file.contents()));
        let node = open(&host, OpenFlags::READ_ONLY).unwrap();
        let mut b = vec![0u8; 8192];
        node.read_at(0, &mut b).map(|_| b)
    };
    for bad in [0x10u64, 0x2001, COMPRESSED | 0x20, COMPRESSED | (5 << 51)] {
        let f = MemFile::with_data(&file.contents());
        f.poke(l2, &bad.to_be_bytes());
        let e = read(&f).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{bad:#x}: {e}");
    }
    // An L1 entry naming the header or a table past the end.
    for bad in [0u64.wrapping_add(8), 1 << 40] {
        let f = MemFile::with_data(&file.contents());
        f.poke(48, &bad.to_be_bytes());
        let e = read(&f).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{bad:#x}: {e}");
    }
    // A compressed cluster that does not inflate to a cluster.
    let f = MemFile::with_data(&file.contents());
    f.poke(l2, &(COMPRESSED | (100 << 51) | 0x2000).to_be_bytes());
    f.poke(0x2000, &[0xffu8; 100]);
    assert_eq!(read(&f).unwrap_err().kind, ErrorKind::Corrupt);
}

#[test]
fn encrypted_images_are_described_but_not_read() {
    let (_, file) = create(&[("size", "1M")]);
    file.poke(36, &1u32.to_be_bytes());
    let host = Arc::new(TestHost::new());
    host.add_file(ChildRole::File, NAME, MemFile::with_data(&file.contents()));
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert!(e.message.contains("encrypt.key-secret"), "{e}");
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(node.info().unwrap().virtual_size, 1 << 20);
    let mut b = [0u8; 512];
    let e = node.read_at(0, &mut b).unwrap_err();
    assert!(e.message.contains("encrypt.key-secret"), "{e}");
    // Create refuses encryption.
    let host = Arc::new(TestHost::new());
    let pairs = [("size", "1M"), ("encryption", "on")];
    let e = testutil::create_in(&QcowDriver, &host, NAME, &pairs).err();
    assert!(e.unwrap().message.contains("encrypt.key-secret"));
}

#[test]
fn make_empty_and_invalidate() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(65536, 3)).unwrap();
    // Another process writes through its own open: invalidate sees it.
    let other = open(&host, OpenFlags::NONE).unwrap();
    other.write_at(2 << 20, &[5u8; 4096]).unwrap();
    other.flush().unwrap();
    drop(other);
    node.migration().unwrap().invalidate_cache().unwrap();
    let mut b = vec![0u8; 4096];
    node.read_at(2 << 20, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 5));
    let bc = node.backing_control().expect("backing control");
    assert_eq!(
        bc.change_backing_file(Some("x"), None).unwrap_err().kind,
        ErrorKind::Unsupported
    );
    bc.make_empty().unwrap();
    assert_eq!(file.contents().len(), 48 + 2 * 8);
    node.read_at(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    node.write_at(0, &[4u8; 512]).unwrap();
    assert_eq!(l2_entry(&file, 0), 0x2000);
}
