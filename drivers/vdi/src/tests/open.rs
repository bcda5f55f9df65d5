//! Opening: damaged and hostile images are refused with their reason and
//! without allocating what the header asks for; create options and probing.

use super::*;
use crate::header::{TYPE_DYNAMIC, UNALLOCATED};
use block_core::testutil::ChildOp;
use block_core::{BlockNodeExt, ChildRole, ErrorKind, ProbeInput};

/// A valid 4 MiB dynamic image's bytes with the header changed by `edit`.
fn image_with(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut h = Header::new("create", 4 << 20, TYPE_DYNAMIC).unwrap();
    edit(&mut h);
    let mut bytes = h.encode().to_vec();
    bytes.resize(1024, 0xff);
    bytes
}

fn open_bytes(bytes: &[u8]) -> (Arc<MemFile>, block_core::Result<Box<dyn BlockNode>>) {
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::with_data(bytes));
    let r = open(&host, OpenFlags::NONE);
    (file, r)
}

#[test]
fn a_damaged_header_or_short_file_is_refused_with_its_reason() {
    let cases: Vec<(Vec<u8>, ErrorKind, &str)> = vec![
        (
            vec![0u8; 100],
            ErrorKind::Corrupt,
            "shorter than the VDI header",
        ),
        (
            image_with(|h| h.signature = 7),
            ErrorKind::Corrupt,
            "bad signature",
        ),
        // Block size 0 (a division by zero) and other sizes.
        (
            image_with(|h| h.block_size = 0),
            ErrorKind::Unsupported,
            "block size 0",
        ),
        (
            image_with(|h| h.block_size = 4096),
            ErrorKind::Unsupported,
            "block size 4096",
        ),
        (
            image_with(|h| h.disk_size = 5 << 20),
            ErrorKind::Unsupported,
            "has room",
        ),
        (
            image_with(|h| h.disk_size = u64::MAX),
            ErrorKind::Corrupt,
            "overflows",
        ),
        (
            image_with(|h| h.offset_bmap = 1 << 20),
            ErrorKind::Corrupt,
            "block map offset invalid",
        ),
        (
            image_with(|h| h.offset_bmap = u32::MAX - 511),
            ErrorKind::Corrupt,
            "block map",
        ),
        (
            image_with(|h| h.offset_bmap = 0),
            ErrorKind::Corrupt,
            "overlaps the header",
        ),
        (
            image_with(|h| h.offset_data = 512),
            ErrorKind::Corrupt,
            "inside the block map",
        ),
    ];
    for (bytes, kind, words) in cases {
        let (_, r) = open_bytes(&bytes);
        let e = r.err().unwrap();
        assert_eq!(e.kind, kind, "{words}: {e}");
        assert!(e.message.contains(words), "{words}: {e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
    }
}

/// A header claiming 2^32 - 1 blocks (a 16 GiB map) over a file just as
/// large (sparse): refused by the map limit before the map is allocated
/// or read.
#[test]
fn a_hostile_map_size_is_refused_before_anything_is_allocated() {
    let h = Header {
        disk_size: u64::from(u32::MAX) * BLOCK,
        blocks_in_image: u32::MAX,
        blocks_allocated: u32::MAX,
        ..Header::new("create", 0, TYPE_DYNAMIC).unwrap()
    };
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::new(1 << 44));
    file.poke(0, &h.encode());
    file.clear_log();
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains("too large"), "{e}");
    let reads: Vec<_> = file
        .requests()
        .into_iter()
        .filter(|r| r.op == ChildOp::Read)
        .collect();
    assert_eq!(reads.len(), 1, "only the header was read: {reads:?}");
    assert_eq!(reads[0].len, HEADER_SIZE);
}

/// A huge allocated count (past the blocks of the image) does not stop
/// the open, and new blocks stay within the image's block numbers.
#[test]
fn a_hostile_allocated_count_keeps_blocks_inside_the_image() {
    let (host, file) = create(&[("size", "2M")]);
    file.poke(0x184, &u32::MAX.to_le_bytes());
    let node = open(&host, OpenFlags::NONE).unwrap();
    // The count says every block number is taken: no room left.
    let e = node.write_at(0, b"x").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSpace, "{e}");
    assert_eq!(stored_entry(&file, 0), UNALLOCATED);
    assert_eq!(file.length().unwrap(), 1024, "nothing written");
}

#[test]
fn entries_past_the_image_fail_the_request() {
    let (host, file) = create(&[("size", "2M")]);
    poke_entry(&file, 1, 2);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut buf = [0u8; 8];
    file.clear_log();
    for e in [
        node.read_at(BLOCK, &mut buf).unwrap_err(),
        node.write_at(BLOCK, b"x").unwrap_err(),
    ] {
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains("past the 2 blocks"), "{e}");
    }
    assert!(
        file.requests().iter().all(|r| r.op != ChildOp::Write),
        "{:?}",
        file.requests()
    );
    // Block 0 is fine.
    node.read_at(0, &mut buf).unwrap();
}

#[test]
fn create_options_are_checked_before_any_file_is_made() {
    let host = Arc::new(TestHost::new());
    for (pairs, words) in [
        (vec![("size", "20T")], "larger than a vdi image can be"),
        (vec![("static", "on")], "size must be given"),
    ] {
        let e = VdiDriver
            .create(NAME, &create_options(&pairs).unwrap(), host.clone())
            .unwrap_err();
        assert!(e.message.contains(words), "{e}");
        assert!(host.created_file(NAME).is_none());
    }
    assert!(create_options(&[("size", "1M"), ("cluster_size", "64k")]).is_err());
    assert!(create_options(&[("size", "1M"), ("static", "maybe")]).is_err());
}

#[test]
fn differencing_images_and_other_versions_are_unsupported() {
    let mut b = image_with(|_| {});
    b[0x1b8] = 1;
    let e = open_bytes(&b).1.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("parent UUID"), "{e}");
    let b = image_with(|h| h.version = 0x0001_0000);
    let e = open_bytes(&b).1.err().unwrap();
    assert!(e.message.contains("version 1.0"), "{e}");
}

#[test]
fn probe_is_certain_of_the_signature_only() {
    fn probe(head: &[u8]) -> u32 {
        VdiDriver.probe(&ProbeInput {
            head,
            tail: &[],
            file_size: head.len() as u64,
            filename: "x",
        })
    }
    assert_eq!(probe(&image_with(|_| {})), 100);
    assert_eq!(probe(&image_with(|h| h.signature = 1)), 0);
    assert_eq!(probe(&[0; 0x42]), 0);
    assert_eq!(probe(b""), 0);
}

/// A VirtualBox-made image: its own text, a 0x190-byte header, the data
/// area on a 1 MiB boundary and an odd disk size (rounded up to a sector,
/// as QEMU rounds it). The fields blk does not interpret survive a write.
#[test]
fn virtualbox_layouts_and_odd_sizes_open_and_stay_intact() {
    let mut h = Header::new("create", 3 << 20, TYPE_DYNAMIC).unwrap();
    h.raw[..0x40].fill(0);
    h.raw[..40].copy_from_slice(b"<<< Oracle VM VirtualBox Disk Image >>>\n");
    h.raw[0x60..0x64].copy_from_slice(b"desc");
    h.header_size = 0x190;
    h.disk_size = (3 << 20) - 1000;
    h.offset_data = 1 << 20;
    let mut bytes = h.encode().to_vec();
    bytes.resize(1 << 20, 0);
    bytes[512..524].fill(0xff);
    let (file, r) = open_bytes(&bytes);
    let node = r.unwrap();
    assert_eq!(node.length().unwrap(), (3 << 20) - 512);
    node.write_at(2 * BLOCK + 3, b"abc").unwrap();
    assert_eq!(stored_entry(&file, 2), 0);
    assert_eq!(file.peek((1 << 20) + 3, 3), b"abc");
    assert_eq!(file.length().unwrap(), 2 << 20);
    let after = file.peek(0, HEADER_SIZE as usize);
    assert_eq!(after[..0x184], bytes[..0x184], "only the count changed");
    assert_eq!(after[0x184..0x188], 1u32.to_le_bytes());
    assert_eq!(after[0x188..], bytes[0x188..512]);
}
