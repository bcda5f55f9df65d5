//! Unit tests of the driver over block-core's test utilities: an in-memory
//! file ([`MemFile`], which records every request) handed out by test host
//! services ([`TestHost`]).

use crate::header::{Header, ENDIAN, F_NEED_CHECK, HEADER_LEN, ZERO_CLUSTER};
use crate::QedDriver;
use block_core::testutil::{self, pattern, ChildOp, MemFile, TestHost};
use block_core::{
    BlockDriver, BlockNode, BlockNodeExt, CheckMode, ChildRole, ErrorKind, OpenFlags, ProbeInput,
    ZeroFlags,
};
use std::sync::Arc;

const NAME: &str = "disk.qed";
const CS: u64 = 64 << 10;

fn create_in(host: &Arc<TestHost>, pairs: &[(&str, &str)]) -> block_core::Result<Arc<MemFile>> {
    testutil::create_in(&QedDriver, host, NAME, pairs)
}

fn create(pairs: &[(&str, &str)]) -> (Arc<TestHost>, Arc<MemFile>) {
    testutil::create_image(&QedDriver, NAME, pairs)
}

fn open(host: &Arc<TestHost>, flags: OpenFlags) -> block_core::Result<Box<dyn BlockNode>> {
    testutil::open_image(&QedDriver, host, NAME, flags)
}

fn header(file: &MemFile) -> Header {
    Header::decode(&file.peek(0, HEADER_LEN)).unwrap()
}

/// The L2 entry of guest cluster `c` as stored (0 without an L2 table).
fn l2_entry(file: &MemFile, c: u64) -> u64 {
    let h = header(file);
    let (i1, i2) = (c / h.entries(), c % h.entries());
    let t = ENDIAN.u64(&file.peek(h.l1_table_offset + i1 * 8, 8), 0);
    if t == 0 {
        return 0;
    }
    ENDIAN.u64(&file.peek(t + i2 * 8, 8), 0)
}

#[test]
fn a_new_image_is_qemus_layout() {
    let (_, file) = create(&[("size", "1M")]);
    let h = header(&file);
    assert_eq!(&file.peek(0, 4), b"QED\0");
    assert_eq!((h.cluster(), h.table_size, h.header_size), (CS, 4, 1));
    assert_eq!(
        (h.l1_table_offset, h.image_size, h.features),
        (CS, 1 << 20, 0)
    );
    assert_eq!(file.contents().len() as u64, 5 * CS);
    let head = ProbeInput {
        filename: NAME,
        head: &file.peek(0, 512),
        tail: &[],
        file_size: 5 * CS,
    };
    assert_eq!(QedDriver.probe(&head), 100);
}

#[test]
fn create_refuses_bad_options() {
    let host = Arc::new(TestHost::new());
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("size", "1M"), ("cluster_size", "1000")], "cluster size"),
        (&[("size", "1M"), ("cluster_size", "2k")], "cluster size"),
        (&[("size", "1M"), ("table_size", "3")], "table size"),
        (&[("size", "1M"), ("table_size", "32")], "table size"),
        (&[("size", "1000")], "multiple of 512"),
        (
            &[("size", "1P"), ("cluster_size", "4k"), ("table_size", "1")],
            "at most",
        ),
    ];
    for (pairs, words) in cases {
        let e = create_in(&host, pairs).err().unwrap();
        assert!(e.message.contains(words), "{words}: {e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
    }
}

#[test]
fn writes_read_back_and_leave_a_clean_consistent_image() {
    let (host, file) = create(&[("size", "8M"), ("cluster_size", "4k"), ("table_size", "1")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    let mut shadow = vec![0u8; 8 << 20];
    // Spans clusters and L2 tables (512 entries of 4 KiB: 2 MiB a table).
    for (k, &(off, len)) in [
        (1000u64, 9000usize),
        ((2 << 20) - 100, 300),
        (7 << 20, 4096),
    ]
    .iter()
    .enumerate()
    {
        let d = pattern(len, k as u8 + 1);
        n.write_at(off, &d).unwrap();
        shadow[off as usize..off as usize + len].copy_from_slice(&d);
    }
    // The need-check flag is on disk while allocating writes are unflushed.
    assert!(header(&file).features & F_NEED_CHECK != 0);
    let mut got = vec![0u8; 8 << 20];
    n.read_at(0, &mut got).unwrap();
    assert!(got == shadow);
    let rep = n.check_control().unwrap().check(CheckMode::REPORT).unwrap();
    assert_eq!((rep.corruptions, rep.leaks), (0, 0), "{rep:?}");
    assert_eq!(rep.allocated_clusters, Some(6));
    drop(n);
    assert_eq!(
        header(&file).features & F_NEED_CHECK,
        0,
        "a clean close clears it"
    );
    let n = open(&host, OpenFlags::READ_ONLY).unwrap();
    n.read_at(0, &mut got).unwrap();
    assert!(got == shadow);
}

#[test]
fn data_is_flushed_before_the_l2_entry_and_the_l2_table_before_the_l1_entry() {
    let (host, file) = create(&[("size", "4M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    file.clear_log();
    n.write_at(CS * 3, &pattern(512, 9)).unwrap();
    let reqs = file.requests();
    let pos = |pred: &dyn Fn(&block_core::testutil::RequestRecord) -> bool| {
        reqs.iter().position(pred).expect("request made")
    };
    let data = pos(&|r| r.op == ChildOp::Write && r.offset == 5 * CS);
    let l2 = pos(&|r| r.op == ChildOp::Write && r.offset == 6 * CS);
    let l1 = pos(&|r| r.op == ChildOp::Write && r.offset == CS);
    let flush_between = |a: usize, b: usize| reqs[a..b].iter().any(|r| r.op == ChildOp::Flush);
    assert!(data < l2 && l2 < l1, "{reqs:?}");
    assert!(flush_between(data, l2) && flush_between(l2, l1), "{reqs:?}");
    assert_eq!(l2_entry(&file, 3), 5 * CS);
}

#[test]
fn reads_and_partial_writes_go_through_the_backing_file() {
    let host = Arc::new(TestHost::new());
    let base = pattern(1 << 20, 3);
    host.add_file(ChildRole::Backing, "base.raw", MemFile::with_data(&base));
    let pairs = [("backing_file", "base.raw"), ("backing_fmt", "raw")];
    let file = create_in(&host, &pairs).unwrap();
    let h = header(&file);
    assert_eq!(
        h.image_size,
        1 << 20,
        "the size comes from the backing file"
    );
    assert_eq!(h.features, 5, "backing file, raw: no probing");
    assert_eq!(&file.peek(64, 8), b"base.raw");
    let n = open(&host, OpenFlags::NONE).unwrap();
    let info = n.info().unwrap();
    assert_eq!(info.backing_filename.as_deref(), Some("base.raw"));
    assert_eq!(info.backing_filename_format.as_deref(), Some("raw"));
    n.write_at(CS + 100, &[0xee; 10]).unwrap();
    n.write_zeroes(2 * CS, CS, ZeroFlags::NONE).unwrap();
    let mut want = base.clone();
    want[(CS + 100) as usize..(CS + 110) as usize].fill(0xee);
    want[2 * CS as usize..3 * CS as usize].fill(0);
    let mut got = vec![0u8; 1 << 20];
    n.read_at(0, &mut got).unwrap();
    assert!(got == want);
    assert_eq!(
        l2_entry(&file, 2),
        ZERO_CLUSTER,
        "a zero cluster hides the base"
    );
    let reqs = host.opened();
    let b = reqs.iter().find(|r| r.role == ChildRole::Backing).unwrap();
    assert_eq!(b.format.as_deref(), Some("raw"));
    drop(n);
    // Without the backing file the unallocated clusters read as zeros.
    let n = open(&host, OpenFlags::READ_ONLY.with(OpenFlags::NO_BACKING)).unwrap();
    n.read_at(0, &mut got).unwrap();
    assert!(got[..CS as usize].iter().all(|&b| b == 0));
    assert_eq!(
        &got[CS as usize..2 * CS as usize],
        &want[CS as usize..2 * CS as usize]
    );
}

/// An image's bytes with the header changed by `edit`.
fn image_with(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let (_, file) = create(&[("size", "1M")]);
    let mut h = header(&file);
    edit(&mut h);
    let mut b = file.contents();
    b[..HEADER_LEN].copy_from_slice(&h.encode());
    b
}

#[test]
fn hostile_headers_are_refused_without_big_allocations() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0u8; 40], "shorter than the QED header"),
        (image_with(|h| h.magic = 7), "bad magic"),
        (image_with(|h| h.cluster_size = 0), "cluster size"),
        (image_with(|h| h.cluster_size = 65537), "cluster size"),
        (image_with(|h| h.table_size = 0), "table size"),
        (image_with(|h| h.table_size = u32::MAX), "table size"),
        (image_with(|h| h.header_size = 0), "header size"),
        (image_with(|h| h.header_size = u32::MAX), "header size"),
        (image_with(|h| h.image_size = u64::MAX), "image size"),
        (image_with(|h| h.image_size = 1001), "image size"),
        (
            image_with(|h| h.l1_table_offset = 1 << 40),
            "L1 table offset invalid",
        ),
        (
            image_with(|h| h.l1_table_offset = u64::MAX - 4095),
            "L1 table",
        ),
        (
            image_with(|h| h.l1_table_offset = 100),
            "not cluster-aligned",
        ),
        (
            image_with(|h| h.l1_table_offset = 0),
            "overlaps the QED header",
        ),
        (
            image_with(|h| {
                h.features = 1;
                h.backing_filename_offset = 65000;
                h.backing_filename_size = 1000;
            }),
            "backing file name",
        ),
    ];
    for (bytes, words) in cases {
        let host = Arc::new(TestHost::new());
        host.add_file(ChildRole::File, NAME, MemFile::with_data(&bytes));
        let e = open(&host, OpenFlags::NONE).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains(words), "{words}: {e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
    }
    let bytes = image_with(|h| h.features = 1 << 40);
    let host = Arc::new(TestHost::new());
    host.add_file(ChildRole::File, NAME, MemFile::with_data(&bytes));
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}

/// 64 MiB clusters and 16-cluster tables ask for a 1 GiB L1 table: refused
/// by the table limit before it is allocated or read, even over a file
/// large enough to hold it (sparse).
#[test]
fn a_huge_table_is_refused_before_it_is_read() {
    let (_, file) = create(&[("size", "1M")]);
    let mut h = header(&file);
    h.cluster_size = 64 << 20;
    h.table_size = 16;
    h.l1_table_offset = 64 << 20;
    let host = Arc::new(TestHost::new());
    let big = host.add_file(ChildRole::File, NAME, MemFile::new(2 << 30));
    big.poke(0, &h.encode());
    big.clear_log();
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert!(e.message.contains("limit"), "{e}");
    assert!(
        big.stats().bytes_read <= HEADER_LEN as u64,
        "{:?}",
        big.stats()
    );
}

#[test]
fn entries_outside_the_file_are_corruption_errors_and_check_repairs_them() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &pattern(2 * CS as usize, 1)).unwrap();
    drop(n);
    let h = header(&file);
    let l2 = ENDIAN.u64(&file.peek(h.l1_table_offset, 8), 0);
    // Cluster 1 now points past the end of the file, cluster 2 into the header.
    file.poke(l2 + 8, &(1u64 << 40).to_le_bytes());
    file.poke(l2 + 16, &512u64.to_le_bytes());
    let n = open(&host, OpenFlags::NONE).unwrap();
    let mut b = vec![0u8; 512];
    let e = n.read_at(CS, &mut b).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    let e = n.write_at(2 * CS, &b).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    let check = n.check_control().unwrap();
    let rep = check.check(CheckMode::REPORT).unwrap();
    // The cluster that entry 1 named is now a leak.
    assert_eq!((rep.corruptions, rep.leaks), (2, 1), "{rep:?}");
    let rep = check.check(CheckMode::FIX_ALL).unwrap();
    assert_eq!((rep.corruptions, rep.corruptions_fixed), (0, 2), "{rep:?}");
    assert_eq!((l2_entry(&file, 1), l2_entry(&file, 2)), (0, 0));
    n.read_at(CS, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn a_writable_open_checks_an_image_left_needing_a_check() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &pattern(512, 1)).unwrap();
    drop(n);
    let mut h = header(&file);
    h.features |= F_NEED_CHECK;
    file.poke(0, &h.encode());
    let l2 = ENDIAN.u64(&file.peek(h.l1_table_offset, 8), 0);
    file.poke(l2 + 8, &(1u64 << 40).to_le_bytes());
    // Read-only: opened as it is.
    let ro = open(&host, OpenFlags::READ_ONLY).unwrap();
    assert!(!ro.info().unwrap().dirty_flag, "as qemu-img reports it");
    assert!(header(&file).need_check());
    drop(ro);
    assert_eq!(l2_entry(&file, 1), 1 << 40);
    // Writable: repaired and marked clean.
    let n = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(l2_entry(&file, 1), 0);
    assert_eq!(header(&file).features & F_NEED_CHECK, 0);
    let mut b = vec![0u8; 512];
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, pattern(512, 1));
}

#[test]
fn entries_naming_the_l1_table_are_refused_so_writes_never_land_on_it() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[5; 512]).unwrap();
    drop(n);
    let h = header(&file);
    let l2 = ENDIAN.u64(&file.peek(h.l1_table_offset, 8), 0);
    file.poke(l2 + 8, &(h.l1_table_offset + CS).to_le_bytes());
    let before = file.contents();
    let n = open(&host, OpenFlags::NONE).unwrap();
    let e = n.write_at(CS, &[6; 512]).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    drop(n);
    assert!(file.peek(0, before.len()) == before, "nothing changed");
}

#[test]
fn a_crash_leaves_need_check_set_and_the_next_writable_open_clears_it() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(CS, &pattern(4096, 2)).unwrap();
    n.flush().unwrap();
    // No clean close: the flag stays on disk.
    std::mem::forget(n);
    assert!(header(&file).need_check());
    let n = open(&host, OpenFlags::NONE).unwrap();
    assert!(!header(&file).need_check());
    let mut b = vec![0u8; 4096];
    n.read_at(CS, &mut b).unwrap();
    assert_eq!(b, pattern(4096, 2));
}

#[test]
fn a_handoff_marks_the_image_clean_and_activation_rereads_it() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[1; 512]).unwrap();
    let mig = n.migration().unwrap();
    mig.inactivate().unwrap();
    assert!(!header(&file).need_check());
    assert!(
        n.write_at(0, &[2; 512]).is_err(),
        "an inactive node refuses writes"
    );
    // Another process writes cluster 3 meanwhile.
    let other = open(&host, OpenFlags::NONE).unwrap();
    other.write_at(3 * CS, &[7; 512]).unwrap();
    drop(other);
    mig.activate().unwrap();
    let mut b = vec![0u8; 512];
    n.read_at(3 * CS, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 7));
    n.write_at(0, &[2; 512]).unwrap();
}

#[test]
fn leaked_clusters_are_reported_and_the_image_grows() {
    let (host, file) = create(&[("size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[1; 512]).unwrap();
    // A crash after a cluster's data but before its entry: one more cluster.
    let end = file.contents().len() as u64;
    file.poke(end, &vec![7u8; CS as usize]);
    n.migration().unwrap().invalidate_cache().unwrap();
    let rep = n
        .check_control()
        .unwrap()
        .check(CheckMode::FIX_ALL)
        .unwrap();
    assert_eq!((rep.leaks, rep.corruptions), (1, 0), "{rep:?}");
    assert_eq!(rep.fragmented_clusters, Some(0));
    // Growing keeps the data and shows zeros after the old end.
    n.truncate(2 << 20, block_core::Preallocation::Off).unwrap();
    assert_eq!(n.length().unwrap(), 2 << 20);
    assert_eq!(header(&file).image_size, 2 << 20);
    let mut b = vec![9u8; 512];
    n.read_at(1 << 20, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    let e = n
        .truncate(1 << 19, block_core::Preallocation::Off)
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
}
