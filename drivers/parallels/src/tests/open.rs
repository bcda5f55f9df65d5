//! Headers: what create writes, and hostile or damaged headers refused
//! with their reason before anything sized by them is allocated.

use super::*;
use crate::header::{INUSE_MAGIC, MAGIC_CLUSTERS, MAGIC_SECTORS};
use block_core::{BlockNodeExt, ErrorKind, ProbeInput};

/// The bytes of a 4 MiB image with 64 KiB clusters after `edit`.
fn image_with(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut h = Header::new("create", 4 << 20, 65536).unwrap();
    edit(&mut h);
    let mut b = vec![0u8; 65536];
    b[..64].copy_from_slice(&h.encode());
    b
}

fn open_bytes(bytes: &[u8]) -> block_core::Result<Box<dyn BlockNode>> {
    let host = Arc::new(TestHost::new());
    host.add_file(block_core::ChildRole::File, NAME, MemFile::with_data(bytes));
    open(&host, OpenFlags::READ_ONLY)
}

#[test]
fn create_writes_qemus_header() {
    let (_host, file) = create(&[("size", "3M")]);
    let b = file.peek(0, 64);
    assert_eq!(&b[..16], &MAGIC_CLUSTERS);
    let words: Vec<u32> = (16..56).step_by(4).map(|o| ENDIAN.u32(&b, o)).collect();
    // version, heads, cylinders, tracks, entries, sectors (lo, hi), inuse,
    // data_off, flags: what qemu-img writes for a 3 MiB image.
    assert_eq!(words, [2, 16, 12, 2048, 3, 6144, 0, 0, 2048, 0]);
    assert_eq!(ENDIAN.u64(&b, 56), 0);
    // The file holds the header and BAT, rounded up to the cluster.
    assert_eq!(file.length().unwrap(), 1 << 20);
    // Sizes and cluster sizes round up to sectors, as qemu-img's do.
    let (_h, f) = create(&[("size", "1000"), ("cluster_size", "1000")]);
    let h = stored_header(&f);
    assert_eq!((h.nb_sectors, h.tracks, h.bat_entries), (2, 2, 1));
}

#[test]
fn create_refuses_what_the_format_cannot_hold() {
    for (size, cluster, words) in [
        ("1M", "0", "between"),
        ("1M", "2G", "between"),
        ("2048G", "4k", "use a larger cluster_size"),
    ] {
        let host = Arc::new(TestHost::new());
        let o = create_options(&[("size", size), ("cluster_size", cluster)]).unwrap();
        let e = ParallelsDriver.create(NAME, &o, host.clone()).unwrap_err();
        assert!(e.message.contains(words), "{size} {cluster}: {e}");
        assert!(host.created_file(NAME).is_none(), "nothing is created");
    }
}

#[test]
fn hostile_headers_are_refused_with_their_reason() {
    let cases: Vec<(Vec<u8>, ErrorKind, &str)> = vec![
        (
            image_with(|h| h.tracks = 0),
            ErrorKind::Corrupt,
            "zero sectors",
        ),
        (
            image_with(|h| h.tracks = u32::MAX),
            ErrorKind::Corrupt,
            "too big",
        ),
        (
            image_with(|h| h.version = 3),
            ErrorKind::Unsupported,
            "version 3",
        ),
        // 2^32 - 1 entries: 16 GiB of BAT, refused by size alone.
        (
            image_with(|h| h.bat_entries = u32::MAX),
            ErrorKind::Corrupt,
            "BAT too large",
        ),
        // Plausible in size, but longer than the file.
        (
            image_with(|h| h.bat_entries = 1 << 20),
            ErrorKind::Corrupt,
            "BAT",
        ),
        (
            image_with(|h| h.bat_entries = 10),
            ErrorKind::Corrupt,
            "do not cover",
        ),
        (
            image_with(|h| h.data_off = 1 << 30),
            ErrorKind::Corrupt,
            "outside the file",
        ),
        (
            image_with(|h| (h.bat_entries, h.data_off) = (200, 1)),
            ErrorKind::Corrupt,
            "overlaps the BAT",
        ),
        (
            image_with(|h| h.nb_sectors = u64::MAX),
            ErrorKind::Corrupt,
            "too large a disk",
        ),
        (
            image_with(|_| ())[..40].to_vec(),
            ErrorKind::Corrupt,
            "shorter",
        ),
    ];
    for (bytes, kind, words) in cases {
        let e = open_bytes(&bytes)
            .err()
            .unwrap_or_else(|| panic!("{words}: opened"));
        assert_eq!(e.kind, kind, "{e}");
        assert!(e.message.contains(words), "{words}: {e}");
    }
    let mut bad = image_with(|_| ());
    bad[3] = b'x';
    assert!(open_bytes(&bad)
        .err()
        .unwrap()
        .message
        .contains("bad magic"));
    // The old magic's size is the low 32 bits only: a huge stored value is
    // not an error there.
    let mut old = image_with(|h| h.nb_sectors |= 1 << 40);
    old[..16].copy_from_slice(&MAGIC_SECTORS);
    assert_eq!(open_bytes(&old).unwrap().length().unwrap(), 4 << 20);
}

#[test]
fn an_entry_past_the_end_of_the_file_fails_the_request() {
    let (host, file) = create(&[("size", "4M"), ("cluster_size", "64k")]);
    poke_entry(&file, 1, 0xffff);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut buf = [0u8; 512];
    let e = node.read_at(65536, &mut buf).unwrap_err();
    assert!(e.message.contains("past the end of the file"), "{e}");
    // Other clusters still read.
    node.read_at(0, &mut buf).unwrap();
}

#[test]
fn an_entry_naming_the_header_is_refused() {
    let (host, file) = create(&[("size", "4M"), ("cluster_size", "64k")]);
    file.truncate(1 << 20, block_core::Preallocation::Off)
        .unwrap();
    // Entries count clusters: 0 is unallocated, so name cluster 0 via the
    // sector-counting magic, entry 1 = sector 1 (inside the header's cluster).
    file.poke(0, &MAGIC_SECTORS);
    poke_entry(&file, 2, 1);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut buf = [0u8; 512];
    let e = node.read_at(2 * 65536, &mut buf).unwrap_err();
    assert!(e.message.contains("before the data area"), "{e}");
}

#[test]
fn probe_wants_a_magic_and_version_two() {
    let probe = |head: &[u8]| {
        ParallelsDriver.probe(&ProbeInput {
            filename: NAME,
            head,
            tail: &[],
            file_size: head.len() as u64,
        })
    };
    let good = image_with(|_| ());
    assert_eq!(probe(&good[..64]), 100);
    let mut old = good.clone();
    old[..16].copy_from_slice(&MAGIC_SECTORS);
    assert_eq!(probe(&old[..64]), 100);
    assert_eq!(probe(&good[..63]), 0);
    let v3 = image_with(|h| h.version = 3);
    assert_eq!(probe(&v3[..64]), 0);
    assert_eq!(probe(&[0u8; 512]), 0);
}

#[test]
fn the_inuse_flag_is_set_while_open_for_writing() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    assert_eq!(stored_header(&file).inuse, INUSE_MAGIC);
    drop(node);
    assert_eq!(stored_header(&file).inuse, 0);
    let node = open(&host, OpenFlags::READ_ONLY).unwrap();
    assert_eq!(stored_header(&file).inuse, 0);
    drop(node);
    // An inactive open leaves it alone until it is activated.
    let node = open(&host, OpenFlags::INACTIVE).unwrap();
    assert_eq!(stored_header(&file).inuse, 0);
    drop(node);
}

#[test]
fn a_handoff_clears_the_inuse_flag_and_activation_sets_it() {
    let (host, file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::INACTIVE).unwrap();
    let m = node.migration().expect("the node can be handed over");
    m.activate().unwrap();
    assert_eq!(stored_header(&file).inuse, INUSE_MAGIC);
    node.write_at(0, &[7u8; 512]).unwrap();
    m.inactivate().unwrap();
    assert_eq!(stored_header(&file).inuse, 0, "cleared for the next owner");
    assert!(
        node.write_at(0, &[8u8; 512]).is_err(),
        "inactive refuses writes"
    );
    drop(node);
    assert_eq!(stored_header(&file).inuse, 0);
}
