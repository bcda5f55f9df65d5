//! Bochs growing images made by `bximage` at run time, filled with data by
//! a small writer here that follows the format (catalog entry, extent
//! bitmap, sectors), then read by blk and by QEMU (`qemu-img convert -f
//! bochs`): both must read the same bytes, which must be the data written.
//! Hostile headers are refused with clean errors.

use blk_tests::bochs::{bximage, write_sectors};
use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, s};
use rand::Rng;
use std::path::Path;

/// blk's and qemu-img's raw conversions of `img` are `want`.
fn assert_reads(img: &Path, want: &[u8]) {
    let dir = img.parent().unwrap();
    let (b, q) = (dir.join("blk.raw"), dir.join("qemu.raw"));
    blk_ok(&["convert", "-f", "bochs", "-O", "raw", s(img), s(&b)]);
    qemu_img_ok(&["convert", "-f", "bochs", "-O", "raw", s(img), s(&q)]);
    let (b, q) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
    assert!(b == q, "{}: blk reads other bytes than qemu", img.display());
    assert!(b == want, "{}: not the data written", img.display());
}

#[test]
fn bximage_images_with_data_read_as_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    for (k, mb) in [10u32, 64].iter().enumerate() {
        let p = dir.path().join(format!("g{k}.img"));
        bximage(&p, *mb);
        let mut img = std::fs::read(&p).unwrap();
        let size = blk_ok(&["info", "--output=json", s(&p)]);
        let v: serde_json::Value = serde_json::from_str(&size).unwrap();
        let size = v["virtual-size"].as_u64().unwrap();
        let mut guest = vec![0u8; size as usize];
        let mut r = blk_tests::rng(70 + k as u64);
        for _ in 0..60 {
            let n = r.gen_range(1..=80u64);
            let sector = r.gen_range(0..size / 512 - n);
            let data = blk_tests::random_bytes(r.gen(), n as usize * 512);
            write_sectors(&mut img, sector, &data);
            let at = sector as usize * 512;
            guest[at..at + data.len()].copy_from_slice(&data);
        }
        std::fs::write(&p, &img).unwrap();
        assert_reads(&p, &guest);
        // Probed as bochs by both tools; the same info.
        let b: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&p)])).unwrap();
        let q: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&p)])).unwrap();
        for f in ["format", "virtual-size", "cluster-size", "backing-filename"] {
            assert_eq!(b[f], q[f], "{f}");
        }
        // Read-only, as in QEMU.
        let o = blk(&["io", "-c", "write 0 512", s(&p)]);
        assert_ne!(o.status.code(), Some(0));
        assert_eq!(std::fs::read(&p).unwrap(), img, "nothing written");
    }
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.img");
    bximage(&p, 10);
    let mut good = std::fs::read(&p).unwrap();
    write_sectors(&mut good, 7, &[5u8; 1024]);
    // (offset, value, blk's words, qemu-img refuses too)
    let cases: &[(usize, u32, &str, bool)] = &[
        (72, 0x10_0001, "Catalog size is too large", true),
        (72, 4, "Catalog size is too small for this disk size", true),
        (80, 0, "Extent size must be at least 512", true),
        (80, 5000, "is not a power of two", true),
        (80, 0x100_0000, "is too large", true),
        (68, 1 << 30, "catalog", false),
        (68, 0xffff_fff0, "catalog", false),
    ];
    for &(off, v, words, qemu_too) in cases {
        let mut b = good.clone();
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        let o = blk(&["info", "-f", "bochs", s(&p)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{words}: {err}");
        assert!(
            err.contains(words) && !err.contains("panicked"),
            "{words}: {err}"
        );
        let q = qemu_img(&["info", "-f", "bochs", s(&p)]);
        if qemu_too {
            assert!(
                String::from_utf8_lossy(&q.stderr).contains(words),
                "qemu: {words}"
            );
        }
    }
    // A catalog entry naming an extent far past the end reads as zeros.
    let mut b = good.clone();
    b[512..516].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let out = blk_ok(&["io", "-f", "bochs", "-r", "-c", "read -P 0 0 8k", s(&p)]);
    assert!(!out.contains("fail"), "{out}");
}

#[test]
fn mutated_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.img");
    bximage(&p, 10);
    let mut img = std::fs::read(&p).unwrap();
    write_sectors(&mut img, 3, &[0x11; 8192]);
    write_sectors(&mut img, 9000, &[0x22; 4096]);
    std::fs::write(&p, &img).unwrap();
    let rep = blk_tests::fuzz::run_on(&p, "bochs", 8, 200);
    assert!(rep.panics.is_empty(), "panics: {:#?}", rep.panics);
    assert!(rep.opened > 0 && rep.errors > 0, "{rep:?}");
}
