//! Raw images and the file protocol against qemu-img/qemu-io, both directions,
//! plus probing rules.

use blk_tests::{qemu_img_ok, qemu_io_ok, s};
use block_core::{ErrorKind, ExtentFlags};
use plugin_host::{Host, OpenOptions};

fn host() -> Host {
    Host::builder().env_plugin_path(false).build().unwrap()
}

#[test]
fn qemu_written_raw_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("q.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "4M"]);
    qemu_io_ok(&[
        "-f",
        "raw",
        "-c",
        "write -P 0x5a 1M 64k",
        "-c",
        "write -P 0x11 3M 4k",
        s(&img),
    ]);
    let h = host();
    let i = h.open(s(&img), &OpenOptions::default()).unwrap();
    assert_eq!(i.format(), "raw");
    let mut buf = vec![0u8; 4 << 20];
    i.read(0, &mut buf).unwrap();
    assert_eq!(buf, std::fs::read(&img).unwrap());
    assert!(buf[1 << 20..(1 << 20) + 65536].iter().all(|&b| b == 0x5a));
    // Holes are reported as zero, data as data. (QEMU allocates the first
    // block of a new raw file, so look at a hole further in.)
    let e = i.block_status(2 << 20, 4096).unwrap();
    assert!(e.flags.contains(ExtentFlags::ZERO), "{e:?}");
    let e = i.block_status(1 << 20, 4096).unwrap();
    assert!(e.flags.contains(ExtentFlags::DATA), "{e:?}");
}

#[test]
fn blk_written_raw_compares_equal_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("b.raw");
    let expect = dir.path().join("expect.raw");
    let h = host();
    h.create("raw", s(&img), "", Some(4 << 20), None).unwrap();
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let mut shadow = vec![0u8; 4 << 20];
    let mut r = blk_tests::rng(7);
    use rand::Rng;
    for _ in 0..50 {
        let len = r.gen_range(1..100_000usize);
        let off = r.gen_range(0..(4 << 20) - len);
        let data = blk_tests::random_bytes(r.gen(), len);
        i.write(off as u64, &data).unwrap();
        shadow[off..off + len].copy_from_slice(&data);
    }
    i.write_zeroes(100_000, 300_000, block_core::ZeroFlags::MAY_UNMAP)
        .unwrap();
    shadow[100_000..400_000].fill(0);
    i.flush().unwrap();
    std::fs::write(&expect, &shadow).unwrap();
    let out = qemu_img_ok(&["compare", "-f", "raw", "-F", "raw", s(&img), s(&expect)]);
    assert!(out.contains("Images are identical"), "{out}");
    let info = qemu_img_ok(&["info", "--output=json", s(&img)]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["virtual-size"], 4 << 20);
}

#[test]
fn probed_raw_refuses_a_planted_qcow2_header() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("guest.raw");
    let h = host();
    h.create("raw", s(&img), "", Some(1 << 20), None).unwrap();
    let before = std::fs::read(&img).unwrap();
    // Probed (no -f): writing a qcow2 header into sector 0 is refused.
    let i = h.open(s(&img), &OpenOptions::default()).unwrap();
    let mut hdr = vec![0u8; 512];
    hdr[..4].copy_from_slice(b"QFI\xfb");
    hdr[7] = 3;
    let e = i.write(0, &hdr).unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("qcow2"), "{e}");
    // A split write that completes the magic is refused too.
    i.write(0, b"QF").unwrap();
    let e = i.write(2, b"I\xfb\0\0\0\x03").unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    i.write(0, b"\0\0").unwrap();
    // Ordinary writes to sector 0 are fine.
    i.write(0, &[0x33; 512]).unwrap();
    drop(i);
    // With an explicit format the write is the user's decision.
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                ..Default::default()
            },
        )
        .unwrap();
    i.write(0, &hdr).unwrap();
    drop(i);
    assert_ne!(before, std::fs::read(&img).unwrap());
}

#[test]
fn explicit_format_wins_and_protocols_are_never_probed() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&img), "1M"]);
    let h = host();
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(i.format(), "raw");
    assert_eq!(
        i.length().unwrap(),
        std::fs::metadata(&img).unwrap().len().div_ceil(512) * 512
    );
    drop(i);
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("file".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(i.format(), "file");
    let e = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("nosuch".into()),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("Unknown driver 'nosuch'"), "{e}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let h = host();
    let e = h
        .open("/nonexistent/dir/img.raw", &OpenOptions::default())
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("/nonexistent/dir/img.raw"), "{e}");
}

#[test]
fn raw_offset_and_size_window() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("w.raw");
    let mut data = vec![0u8; 1 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i / 4096) as u8;
    }
    std::fs::write(&img, &data).unwrap();
    let h = host();
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                options: vec![
                    ("offset".into(), "64k".into()),
                    ("size".into(), "128k".into()),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(i.length().unwrap(), 128 << 10);
    let mut b = vec![0u8; 4096];
    i.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 16));
    assert!(i.read(128 << 10, &mut b).is_err());
    drop(i);
    let e = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                options: vec![("offset".into(), "1M".into()), ("size".into(), "4k".into())],
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
}

#[test]
fn odd_sized_raw_files_have_qemus_sector_rounded_length() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("odd.raw");
    std::fs::write(&img, vec![0x61u8; 1000]).unwrap();
    let q: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
    let h = host();
    let i = h.open(s(&img), &OpenOptions::default()).unwrap();
    assert_eq!(i.length().unwrap(), q["virtual-size"].as_u64().unwrap());
    let mut b = vec![0xffu8; 512];
    i.read(512, &mut b).unwrap();
    assert!(b[..488].iter().all(|&x| x == 0x61) && b[488..].iter().all(|&x| x == 0));
}
