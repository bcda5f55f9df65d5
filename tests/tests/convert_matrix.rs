//! `blk convert` between every pair of writable formats, with QEMU as the
//! judge: each result compares identical to the data with `qemu-img
//! compare`, passes `qemu-img check` where QEMU has a check for its
//! format, and `blk info`, `map`, `check` and `compare` work on it.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, random_bytes, s};
use std::path::{Path, PathBuf};

/// Every format blk writes and qemu-img reads.
const WRITABLE: &[&str] = &["raw", "qcow2", "qed", "vdi", "vpc", "parallels"];

/// The guest data: patterned runs, a zero run, unwritten gaps, and a
/// zero tail (vpc's geometry may round the disk size down).
fn reference(dir: &Path) -> PathBuf {
    let size = 6u64 << 20;
    let mut data = vec![0u8; size as usize];
    for (k, (off, len)) in [
        (0usize, 70_000usize),
        (1 << 20, 200_000),
        (3 << 20, 4096),
        ((3 << 20) + 65_536, 300_001),
    ]
    .into_iter()
    .enumerate()
    {
        data[off..off + len].copy_from_slice(&random_bytes(900 + k as u64, len));
    }
    let p = dir.join("ref.raw");
    std::fs::write(&p, &data).unwrap();
    p
}

/// QEMU's check of `img`: clean, or the format has no check.
fn assert_qemu_checks_clean(fmt: &str, img: &Path) {
    let out = qemu_img(&["check", "-f", fmt, s(img)]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("does not support checks") {
        return;
    }
    assert!(
        out.status.success() && text.contains("No errors were found"),
        "qemu-img check -f {fmt} {}: {text}",
        img.display()
    );
}

/// `qemu-img compare` finds `img` (of `fmt`) identical to the raw `data`.
fn assert_same_as(fmt: &str, img: &Path, data: &Path) {
    let out = qemu_img_ok(&["compare", "-f", fmt, "-F", "raw", s(img), s(data)]);
    assert!(out.contains("Images are identical"), "{fmt}: {out}");
}

#[test]
fn convert_between_every_pair_of_writable_formats() {
    let dir = tempfile::tempdir().unwrap();
    let data = reference(dir.path());
    // One source per format, made by blk from the raw data.
    let mut sources = Vec::new();
    for fmt in WRITABLE {
        let src = dir.path().join(format!("src.{fmt}"));
        blk_ok(&["convert", "-f", "raw", "-O", fmt, s(&data), s(&src)]);
        assert_qemu_checks_clean(fmt, &src);
        assert_same_as(fmt, &src, &data);
        sources.push((fmt, src));
    }
    for (from, src) in &sources {
        for to in WRITABLE {
            let out = dir.path().join(format!("{from}-to.{to}"));
            blk_ok(&["convert", "-f", from, "-O", to, s(src), s(&out)]);
            assert_qemu_checks_clean(to, &out);
            assert_same_as(to, &out, &data);
            // blk's own tools agree on the result.
            let cmp = blk_ok(&["compare", "-f", to, "-F", "raw", s(&out), s(&data)]);
            assert!(cmp.contains("Images are identical"), "{from}->{to}: {cmp}");
            std::fs::remove_file(&out).unwrap();
        }
    }
}

#[test]
fn info_map_check_and_compare_work_on_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = reference(dir.path());
    for fmt in WRITABLE {
        let img = dir.path().join(format!("img.{fmt}"));
        blk_ok(&["convert", "-f", "raw", "-O", fmt, s(&data), s(&img)]);
        // info names the format and a size, as qemu-img's does.
        let info: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
        let qinfo: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
        assert_eq!(info["format"], qinfo["format"], "{fmt}");
        assert_eq!(info["virtual-size"], qinfo["virtual-size"], "{fmt}");
        assert_eq!(info["cluster-size"], qinfo["cluster-size"], "{fmt}");
        // map: the data runs qemu-img maps as data, blk maps as data.
        let map: serde_json::Value =
            serde_json::from_str(&blk_ok(&["map", "--output=json", s(&img)])).unwrap();
        let data_bytes: u64 = map
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"] == true)
            .map(|e| e["length"].as_u64().unwrap())
            .sum();
        assert!(data_bytes >= 574_001, "{fmt}: {map}");
        // check: clean where the format has one, else the qemu-img message.
        let chk = blk(&["check", s(&img)]);
        let qchk = qemu_img(&["check", s(&img)]);
        assert_eq!(chk.status.code(), qchk.status.code(), "{fmt} check exit");
        // compare: identical to the data; a changed byte is found.
        let cmp = blk_ok(&["compare", "-F", "raw", s(&img), s(&data)]);
        assert!(cmp.contains("Images are identical"), "{fmt}: {cmp}");
        let mut other = std::fs::read(&data).unwrap();
        other[1 << 20] ^= 0x40;
        let odd = dir.path().join("odd.raw");
        std::fs::write(&odd, &other).unwrap();
        let cmp = blk(&["compare", "-F", "raw", s(&img), s(&odd)]);
        assert_eq!(cmp.status.code(), Some(1), "{fmt}: {cmp:?}");
        assert!(
            String::from_utf8_lossy(&cmp.stdout).contains("Content mismatch at offset 1048576"),
            "{fmt}: {cmp:?}"
        );
    }
}
