//! Opening: damaged and hostile images are refused with their reason and
//! without allocating what the header asks for; create options and probing.

use super::*;
use block_core::testutil::ChildOp;
use block_core::{BlockNodeExt, ChildRole, ErrorKind, ProbeInput};

/// A valid 1 MiB image's bytes with the header changed by `edit`.
fn image_with(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut h = Header::new("create", 1 << 20, BLOCK).unwrap();
    edit(&mut h);
    let mut bytes = h.encode().to_vec();
    bytes.resize((HEADER_SIZE + 64) as usize, 0);
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
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0u8; 100], "shorter than the header"),
        (image_with(|h| h.magic = 7), "bad magic"),
        (image_with(|h| h.block_size = 1000), "block size 1000"),
        (image_with(|h| h.size = 2 << 20), "do not cover"),
        (image_with(|h| h.bat_offset = 1 << 20), "BAT offset invalid"),
        (image_with(|h| h.bat_offset = 100), "not sector-aligned"),
        (image_with(|h| h.bat_offset = 0), "overlaps the header"),
    ];
    for (bytes, words) in cases {
        let (_, r) = open_bytes(&bytes);
        let e = r.err().unwrap();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains(words), "{words}: {e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
    }
}

/// A header claiming a BAT of 2^32 - 1 entries (16 GiB of memory) over a
/// file just as large (sparse): refused by the BAT limit before the BAT is
/// allocated or read.
#[test]
fn a_hostile_bat_size_is_refused_before_anything_is_allocated() {
    let h = Header {
        size: u64::from(u32::MAX) * (2 << 20),
        block_size: 2 << 20,
        bat_entries: u32::MAX,
        ..Header::new("create", 0, 4096).unwrap()
    };
    let host = Arc::new(TestHost::new());
    let file = host.add_file(ChildRole::File, NAME, MemFile::new(1 << 40));
    file.poke(0, &h.encode());
    file.clear_log();
    let e = open(&host, OpenFlags::NONE).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
    assert!(e.message.contains("BAT too large"), "{e}");
    // The header was read, and nothing else.
    let reads: Vec<_> = file
        .requests()
        .into_iter()
        .filter(|r| r.op == ChildOp::Read)
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0].len, HEADER_SIZE);
}

#[test]
fn entries_naming_metadata_or_space_past_the_file_fail_the_request() {
    let (host, file) = create(&[("size", "1M")]);
    // Block 0 is the header and the BAT; block 9 is past the end.
    for (entry, words) in [(0u32, ""), (9, "past the end of the file")] {
        poke_entry(&file, 1, entry);
        let node = open(&host, OpenFlags::NONE).unwrap();
        let mut buf = [0u8; 8];
        if entry == 0 {
            node.read_at(BLOCK, &mut buf).unwrap();
            continue;
        }
        let before = file.contents();
        let e = node.write_at(BLOCK, b"guest").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
        assert!(e.message.contains(words), "{e}");
        assert_eq!(e.file.as_deref(), Some(NAME));
        assert!(node.read_at(BLOCK, &mut buf).is_err());
        assert_eq!(file.contents(), before, "nothing written");
    }
    // A BAT that moved into the data area: an entry naming its block.
    let (host, file) = create(&[("size", "64k"), ("cluster_size", "4k")]);
    open(&host, OpenFlags::NONE)
        .unwrap()
        .truncate(8 << 20, block_core::Preallocation::Off)
        .unwrap();
    poke_entry(&file, 0, 1);
    let node = open(&host, OpenFlags::NONE).unwrap();
    let e = node.write_at(0, b"over the BAT").unwrap_err();
    assert!(e.message.contains("overlaps the BAT"), "{e}");
}

#[test]
fn create_options_are_checked_before_any_file_is_made() {
    for (pairs, words) in [
        (&[("cluster_size", "4k")][..], "size must be given"),
        (
            &[("size", "1M"), ("cluster_size", "3k")][..],
            "power of two",
        ),
        (
            &[("size", "1M"), ("cluster_size", "4M")][..],
            "between 4096 and 2097152",
        ),
        (&[("size", "2T")][..], "use a larger cluster_size"),
    ] {
        let host = Arc::new(TestHost::new());
        let opts = create_options(pairs).unwrap();
        let e = BatDriver.create(NAME, &opts, host.clone()).unwrap_err();
        assert!(e.message.contains(words), "{e}");
        assert!(host.created_file(NAME).is_none());
    }
    // With larger blocks the same size fits.
    let (_, file) = create(&[("size", "2T"), ("cluster_size", "2M")]);
    assert_eq!(stored_header(&file).bat_entries, 1 << 20);
    // The schema itself refuses unknown options and values of the wrong type.
    assert!(create_options(&[("frob", "1")]).is_err());
    assert!(create_options(&[("cluster_size", "lots")]).is_err());
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
    let e = BatDriver.open(&req, host.clone()).err().unwrap();
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
fn probe_is_certain_of_the_magic_only() {
    fn probe(head: &[u8]) -> u32 {
        BatDriver.probe(&ProbeInput {
            head,
            tail: &[],
            file_size: 4096,
            filename: NAME,
        })
    }
    assert_eq!(
        probe(&Header::new("create", 0, 4096).unwrap().encode()),
        100
    );
    assert_eq!(probe(b"BLKBA"), 0);
    assert_eq!(probe(&[0u8; 512]), 0);
}
