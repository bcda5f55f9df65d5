//! Hostile images: refused or read with a clean error, never a panic.

use super::*;
use block_core::ErrorKind;

fn good(s: &Scratch) -> String {
    let img = s.path("h.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 1 0 128k", "write -c -P 2 512k 64k"]);
    img
}

fn l2_of(img: &str) -> u64 {
    u64::from_be_bytes(peek(img, 0x30000, 8).try_into().unwrap())
        & crate::layout::mapping::L1E_OFFSET_MASK
}

#[test]
fn header_fields_refused() {
    let cases: Vec<(u64, Vec<u8>)> = vec![
        (20, 8u32.to_be_bytes().to_vec()),
        (20, 0xffff_ffffu32.to_be_bytes().to_vec()),
        (36, 0x7fff_ffffu32.to_be_bytes().to_vec()),
        (40, 0x30001u64.to_be_bytes().to_vec()),
        (40, (1u64 << 60).to_be_bytes().to_vec()),
        (48, 0x12345u64.to_be_bytes().to_vec()),
        (56, 0xffff_ffffu32.to_be_bytes().to_vec()),
        (60, 0xffff_ffffu32.to_be_bytes().to_vec()),
        (64, 0x123u64.to_be_bytes().to_vec()),
        (96, 7u32.to_be_bytes().to_vec()),
        (100, 0x10008u32.to_be_bytes().to_vec()),
        (24, u64::MAX.to_be_bytes().to_vec()),
        (72, (1u64 << 33).to_be_bytes().to_vec()),
    ];
    for (off, bytes) in cases {
        let s = Scratch::new();
        let img = good(&s);
        poke(&img, off, &bytes);
        assert!(
            try_open(&img, OpenFlags::READ_ONLY).is_err(),
            "field at {off} accepted"
        );
    }
}

#[test]
fn unknown_feature_is_named() {
    let s = Scratch::new();
    let img = good(&s);
    poke(&img, 72, &(1u64 << 5).to_be_bytes());
    let e = try_open(&img, OpenFlags::READ_ONLY).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(
        e.message.contains("Unknown incompatible feature: 20"),
        "{}",
        e.message
    );
    // Named from the feature table when it has the bit.
    let table_pos = peek(&img, 0, 4096)
        .windows(9)
        .position(|w| w == b"dirty bit")
        .unwrap() as u64;
    poke(&img, table_pos - 1, &[5]);
    poke(&img, table_pos, b"frob");
    let e = try_open(&img, OpenFlags::READ_ONLY).unwrap_err();
    assert!(e.message.contains("frob"), "{}", e.message);
}

#[test]
fn bad_l2_entries_fail_reads_cleanly() {
    let s = Scratch::new();
    let img = good(&s);
    let l2 = l2_of(&img);
    // Unaligned data cluster offset.
    poke(&img, l2, &(0x8000_0000_0005_0200u64).to_be_bytes());
    // Compressed cluster past the end of the file.
    poke(
        &img,
        l2 + 8,
        &(0x4000_0000_1000_0000u64 | (200u64 << 54)).to_be_bytes(),
    );
    // Compressed with garbage sector count pointing at the header.
    poke(
        &img,
        l2 + 16,
        &(0x4000_0000_0000_0000u64 | (255u64 << 54)).to_be_bytes(),
    );
    let n = open(&img, OpenFlags::READ_ONLY);
    let mut b = vec![0u8; 65536];
    for c in 0..3u64 {
        let e = n.read_at(c * 65536, &mut b).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Corrupt | ErrorKind::Io), "{e}");
    }
    // The rest still reads.
    n.read_at(512 << 10, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 2));
}

#[test]
fn l2_pointing_at_metadata_sets_corrupt_bit() {
    let s = Scratch::new();
    let img = good(&s);
    let l2 = l2_of(&img);
    // Guest cluster 0 now maps onto the L1 table.
    poke(&img, l2, &(0x8000_0000_0003_0000u64).to_be_bytes());
    let n = open(&img, OpenFlags::NONE);
    let e = n.write_at(0, &[9u8; 512]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(e.message.contains("active L1 table"), "{}", e.message);
    // Reads still work; writes are refused from now on.
    let mut b = [0u8; 512];
    n.read_at(65536, &mut b).unwrap();
    assert!(n.write_at(65536, &[1u8; 10]).is_err());
    drop(n);
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json", &img])).unwrap();
    assert_eq!(v["format-specific"]["data"]["corrupt"], true);
    // A corrupt image opens read-only but not read-write.
    assert!(try_open(&img, OpenFlags::NONE).is_err());
    let n = open(&img, OpenFlags::READ_ONLY);
    n.read_at(65536, &mut b).unwrap();
    assert_eq!(b, [1u8; 512]);
    assert_eq!(
        n.info().unwrap().format_specific.unwrap()["data"]["corrupt"],
        true
    );
}

#[test]
fn extension_past_cluster_and_snapshot_table_bounds() {
    let s = Scratch::new();
    let img = good(&s);
    // First extension claims a huge length.
    poke(&img, 116, &0x00ff_ffffu32.to_be_bytes());
    assert!(try_open(&img, OpenFlags::READ_ONLY).is_err());
    let s = Scratch::new();
    let img = good(&s);
    qemu_img(&["snapshot", "-c", "x", &img]);
    let so = u64::from_be_bytes(peek(&img, 64, 8).try_into().unwrap());
    // Extra data size over the limit.
    poke(&img, so + 36, &5000u32.to_be_bytes());
    assert!(try_open(&img, OpenFlags::READ_ONLY).is_err());
    let s = Scratch::new();
    let img = good(&s);
    qemu_img(&["snapshot", "-c", "x", &img]);
    let so = u64::from_be_bytes(peek(&img, 64, 8).try_into().unwrap());
    // Snapshot L1 too large: validated when used, as in QEMU (qemu-img
    // info and qemu-io open it; loading the snapshot fails). A writable
    // open refuses it, so no snapshot operation can use it.
    poke(&img, so + 8, &0x0fff_ffffu32.to_be_bytes());
    assert!(try_open(&img, OpenFlags::READ_ONLY).is_ok());
    assert!(try_open(&img, OpenFlags::NONE).is_err());
    let mut req = OpenRequest::new(&img, OpenFlags::READ_ONLY);
    req.options.push(("snapshot.name".into(), "x".into()));
    let err = crate::open::open(&req, Arc::new(TestHost)).unwrap_err();
    assert!(err.message.contains("Snapshot L1 table too large"), "{err}");
}

#[test]
fn invalid_subcluster_bitmap() {
    let s = Scratch::new();
    let img = s.path("x.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        &img,
        "1M",
    ]);
    qemu_io(&img, &["write -P 1 0 64k"]);
    let l2 = l2_of(&img);
    // Allocated and zero bit both set for subcluster 0.
    poke(&img, l2 + 8, &(0x0000_0001_ffff_ffffu64).to_be_bytes());
    let n = open(&img, OpenFlags::READ_ONLY);
    let mut b = [0u8; 512];
    assert_eq!(n.read_at(0, &mut b).unwrap_err().kind, ErrorKind::Corrupt);
}
