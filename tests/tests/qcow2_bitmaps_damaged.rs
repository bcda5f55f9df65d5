//! qcow2 bitmap structures that are damaged (tables and data past the end of
//! the file, bad directory entries, duplicate names) and the zero-size
//! image: open, check, info and repair as QEMU 10 does them, and repair never
//! frees what the bitmap structures name.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};

mod bitmaps_common;
use bitmaps_common::{blk_plugins, outcome, qemu_bitmaps};

/// Offsets in a qcow2 file with one bitmap: the bitmaps extension's data,
/// the first directory entry, and that bitmap's table.
struct BitmapLayout {
    ext: usize,
    dir: usize,
    table: usize,
}

fn bitmap_layout(d: &[u8]) -> BitmapLayout {
    let be64 = |at: usize| u64::from_be_bytes(d[at..at + 8].try_into().unwrap()) as usize;
    let hdr_len = u32::from_be_bytes(d[100..104].try_into().unwrap()) as usize;
    let mut p = hdr_len;
    loop {
        let magic = u32::from_be_bytes(d[p..p + 4].try_into().unwrap());
        let len = u32::from_be_bytes(d[p + 4..p + 8].try_into().unwrap()) as usize;
        assert_ne!(magic, 0, "no bitmaps extension");
        if magic == 0x2385_2875 {
            let ext = p + 8;
            let dir = be64(ext + 16);
            return BitmapLayout {
                ext,
                dir,
                table: be64(dir),
            };
        }
        p += 8 + len.div_ceil(8) * 8;
    }
}

/// The damaged variants of a QEMU image with one bitmap `b0` holding
/// data: bitmap table entries (reserved bits, unaligned, past the end of
/// the file), directory entries (reserved flags, bad type, unaligned table,
/// table past the end, extra data, a damaged table of a bitmap in use),
/// and the extension (reserved field, zero or too many bitmaps, directory
/// unaligned, past the end, of size zero, too large, too short, bad
/// length).
fn damaged_bitmap_images(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let base = dir.join("base.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "16M"]);
    qemu_img_ok(&["bitmap", "--add", s(&base), "b0"]);
    qemu_io_ok(&["-c", "write -P 1 0 1M", s(&base)]);
    let data = std::fs::read(&base).unwrap();
    let l = bitmap_layout(&data);
    let past_eof = ((data.len() as u64 + (1 << 20)) & !0xffff).to_be_bytes();
    let put = |d: &mut Vec<u8>, at: usize, b: &[u8]| d[at..at + b.len()].copy_from_slice(b);
    let or_u64 = |d: &mut Vec<u8>, at: usize, v: u64| {
        let x = u64::from_be_bytes(d[at..at + 8].try_into().unwrap()) | v;
        d[at..at + 8].copy_from_slice(&x.to_be_bytes());
    };
    let or_u32 = |d: &mut Vec<u8>, at: usize, v: u32| {
        let x = u32::from_be_bytes(d[at..at + 4].try_into().unwrap()) | v;
        d[at..at + 4].copy_from_slice(&x.to_be_bytes());
    };
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&'static str, Damage)> = vec![
        (
            "table-entry-reserved",
            Box::new(move |d| or_u64(d, l.table, 2)),
        ),
        (
            "table-entry-unaligned",
            Box::new(move |d| or_u64(d, l.table, 0x200)),
        ),
        (
            "table-entry-past-eof",
            Box::new(move |d| put(d, l.table, &past_eof)),
        ),
        (
            "dir-reserved-flags",
            Box::new(move |d| or_u32(d, l.dir + 12, 0x10)),
        ),
        (
            "dir-extra-data-flag",
            Box::new(move |d| or_u32(d, l.dir + 12, 4)),
        ),
        ("dir-bad-type", Box::new(move |d| d[l.dir + 16] = 2)),
        (
            "dir-table-unaligned",
            Box::new(move |d| put(d, l.dir, &((l.table as u64) + 512).to_be_bytes())),
        ),
        (
            "dir-table-zero",
            Box::new(move |d| put(d, l.dir, &0u64.to_be_bytes())),
        ),
        (
            "dir-table-past-eof",
            Box::new(move |d| put(d, l.dir, &past_eof)),
        ),
        (
            "dir-extra-data",
            Box::new(move |d| put(d, l.dir + 20, &8u32.to_be_bytes())),
        ),
        (
            "dir-table-far",
            Box::new(move |d| put(d, l.dir, &(1u64 << 60).to_be_bytes())),
        ),
        (
            "dir-in-use-table-damaged",
            Box::new(move |d| {
                or_u32(d, l.dir + 12, 1);
                or_u64(d, l.table, 2);
            }),
        ),
        (
            "ext-reserved",
            Box::new(move |d| put(d, l.ext + 4, &1u32.to_be_bytes())),
        ),
        (
            "ext-zero-bitmaps",
            Box::new(move |d| put(d, l.ext, &0u32.to_be_bytes())),
        ),
        (
            "ext-more-bitmaps",
            Box::new(move |d| put(d, l.ext, &2u32.to_be_bytes())),
        ),
        (
            "ext-dir-unaligned",
            Box::new(move |d| put(d, l.ext + 16, &((l.dir as u64) + 8).to_be_bytes())),
        ),
        (
            "ext-dir-offset-huge",
            Box::new(move |d| put(d, l.ext + 16, &0x7fff_ffff_ffff_0000u64.to_be_bytes())),
        ),
        (
            "ext-dir-past-eof",
            Box::new(move |d| put(d, l.ext + 16, &past_eof)),
        ),
        (
            "ext-dir-size-zero",
            Box::new(move |d| put(d, l.ext + 8, &0u64.to_be_bytes())),
        ),
        (
            "ext-dir-size-big",
            Box::new(move |d| put(d, l.ext + 8, &(1024 * 65535 + 8u64).to_be_bytes())),
        ),
        (
            "ext-dir-size-short",
            Box::new(move |d| put(d, l.ext + 8, &16u64.to_be_bytes())),
        ),
        (
            "ext-length",
            Box::new(move |d| put(d, l.ext - 4, &16u32.to_be_bytes())),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, f)| {
            let mut d = data.clone();
            f(&mut d);
            let p = dir.join(format!("{name}.qcow2"));
            std::fs::write(&p, &d).unwrap();
            (name, p)
        })
        .collect()
}

/// `qemu-img check`/`info` on damaged bitmap structures: what QEMU refuses
/// to open (exit 1, its message) blk refuses alike, what QEMU opens
/// (references past the end of the file, a damaged table of a bitmap in
/// use) gives the same report, linked in and (check) through the plugin
/// libraries; read-only commands change nothing.
#[test]
fn damaged_bitmaps_check_and_info_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    for (name, img) in damaged_bitmap_images(dir.path()) {
        let before = std::fs::read(&img).unwrap();
        for args in [
            &["check"][..],
            &["check", "--output=json"],
            &["info"],
            &["info", "--output=json"],
        ] {
            let mut a = args.to_vec();
            a.push(s(&img));
            let q = outcome(&qemu_img(&a), s(&img));
            let b = outcome(&blk(&a), s(&img));
            assert_eq!(q, b, "{name}: {a:?}");
            if args == ["check"] {
                // The same through the plugin libraries.
                assert_eq!(
                    q,
                    outcome(&blk_plugins(&a), s(&img)),
                    "{name}: plugins {a:?}"
                );
            }
        }
        assert_eq!(std::fs::read(&img).unwrap(), before, "{name} changed");
    }
}

/// Repair of an image whose bitmap names clusters past the end of the
/// file or has a damaged table while in use: blk frees nothing the
/// bitmap structures name (the bitmap stays, QEMU still reads it), and a
/// check QEMU fails fails alike without touching the image.
#[test]
fn repair_keeps_damaged_bitmap_structures() {
    let dir = tempfile::tempdir().unwrap();
    for (name, img) in damaged_bitmap_images(dir.path()) {
        if !matches!(
            name,
            "table-entry-past-eof" | "dir-table-past-eof" | "dir-in-use-table-damaged"
        ) {
            continue;
        }
        let before = std::fs::read(&img).unwrap();
        let q = img.with_extension("q.qcow2");
        std::fs::copy(&img, &q).unwrap();
        let qo = qemu_img(&["check", "-r", "all", s(&q)]);
        let bo = blk(&["check", "-r", "all", s(&img)]);
        assert_eq!(qo.status.code(), bo.status.code(), "{name}");
        if name == "dir-in-use-table-damaged" {
            assert_eq!(outcome(&qo, s(&q)), outcome(&bo, s(&img)), "{name}");
            assert_eq!(std::fs::read(&img).unwrap(), before, "{name} changed");
        }
        // The bitmap is still there for QEMU, the clusters it names are
        // still allocated (no refcount errors besides the past-EOF ones).
        assert_eq!(qemu_bitmaps(&img).len(), 1, "{name}");
        let c = String::from_utf8_lossy(&qemu_img(&["check", s(&img)]).stdout).into_owned();
        assert!(!c.contains("refcount=0 reference=1"), "{name}: {c}");
        assert!(!c.contains("Leaked"), "{name}: {c}");
    }
}

/// A bitmap on a zero-size image: QEMU cannot store it (its table would be
/// empty) and loses it at close, failing the command; blk does the same,
/// leaving the image byte for byte as QEMU leaves it, and opening and
/// closing that image with blk (writing nothing) keeps check and info as
/// QEMU reports them.
#[test]
fn bitmap_on_a_zero_size_image_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("zq.qcow2");
    let b = dir.path().join("zb.qcow2");
    for p in [&q, &b] {
        qemu_img_ok(&["create", "-q", "-f", "qcow2", s(p), "0"]);
    }
    let qo = qemu_img(&["bitmap", "--add", s(&q), "b0"]);
    let bo = blk(&["bitmap", "--add", s(&b), "b0"]);
    assert_eq!(qo.status.code(), Some(1));
    assert_eq!(bo.status.code(), Some(1));
    let be = String::from_utf8_lossy(&bo.stderr).into_owned();
    assert!(be.contains("Lost persistent bitmaps"), "{be}");
    assert!(
        be.contains("Error while closing the image: Invalid argument"),
        "{be}"
    );
    assert_eq!(std::fs::read(&q).unwrap(), std::fs::read(&b).unwrap());
    let reference = std::fs::read(&q).unwrap();
    blk_ok(&["io", "-c", "quit", s(&q)]);
    let open = format!("open {}", s(&q));
    blk_ok(&["io", "-c", &open, "-c", "close"]);
    for args in [&["check"][..], &["info"], &["info", "--output=json"]] {
        let mut a = args.to_vec();
        a.push(s(&q));
        let after = outcome(&qemu_img(&a), s(&q));
        let mut a2 = args.to_vec();
        a2.push(s(&b));
        assert_eq!(after, outcome(&qemu_img(&a2), s(&b)), "{a:?}");
        assert_eq!(after, outcome(&blk(&a), s(&q)), "{a:?}");
    }
    assert_eq!(std::fs::read(&q).unwrap(), reference);
}

/// Two directory entries of the same name: QEMU refuses the image at open
/// ("Bitmap already exists"), check and info alike; so does blk.
#[test]
fn duplicate_bitmap_names_refused_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("two.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "16M"]);
    qemu_img_ok(&["bitmap", "--add", s(&img), "b0"]);
    qemu_img_ok(&["bitmap", "--add", s(&img), "b1"]);
    let mut d = std::fs::read(&img).unwrap();
    let l = bitmap_layout(&d);
    // The second entry (24 bytes, name "b0" padded to 8) is named "b1".
    let second = l.dir + 32;
    assert_eq!(&d[second + 24..second + 26], b"b1");
    d[second + 24..second + 26].copy_from_slice(b"b0");
    std::fs::write(&img, &d).unwrap();
    for cmd in ["check", "info"] {
        let a = [cmd, s(&img)];
        let q = outcome(&qemu_img(&a), s(&img));
        assert_eq!(q.1, 1, "{q:?}");
        assert!(q.0.contains("Bitmap already exists: b0"), "{q:?}");
        assert_eq!(q, outcome(&blk(&a), s(&img)), "{a:?}");
    }
    assert_eq!(std::fs::read(&img).unwrap(), d);
}
