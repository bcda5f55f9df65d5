//! vdi images against qemu-img/qemu-io, both directions: what QEMU writes
//! blk reads byte for byte; what blk writes (create, io, convert) QEMU
//! checks clean and compares identical. Info and check as qemu-img's.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, rng, s};
use rand::Rng;
use std::path::Path;

/// Seeded guest writes as qemu-io/blk io commands over a disk of `size`
/// bytes: patterned writes (sector-aligned and not), zero writes and
/// discards.
fn commands(seed: u64, size: u64) -> Vec<String> {
    let mut r = rng(seed);
    let mut c = Vec::new();
    for i in 0..24 {
        let len = r.gen_range(1..600_000u64).min(size);
        let off = r.gen_range(0..=size - len);
        let (off, len) = if i % 3 == 0 {
            (off / 512 * 512, len.div_ceil(512) * 512)
        } else {
            (off, len)
        };
        let len = len.min(size - off);
        c.push(match i % 8 {
            5 => format!("write -z {off} {len}"),
            7 => format!("discard {} {}", off / 512 * 512, (len / 512).max(1) * 512),
            _ => format!("write -P {} {off} {len}", r.gen_range(1..=255u8)),
        });
    }
    c.retain(|cmd| {
        let last = cmd.split(' ').collect::<Vec<_>>();
        let (o, l): (u64, u64) = (
            last[last.len() - 2].parse().unwrap(),
            last[last.len() - 1].parse().unwrap(),
        );
        o + l <= size
    });
    c
}

fn io_args<'a>(cmds: &'a [String], img: &'a Path, fmt: &'a str) -> Vec<&'a str> {
    let mut a = vec!["-f", fmt];
    for c in cmds {
        a.push("-c");
        a.push(c);
    }
    a.push(s(img));
    a
}

/// blk's and qemu-img's raw conversions of `img` are the same bytes.
fn assert_reads_identically(img: &Path) {
    let dir = img.parent().unwrap();
    let b = dir.join("blk.raw");
    let q = dir.join("qemu.raw");
    blk_ok(&["convert", "-O", "raw", s(img), s(&b)]);
    qemu_img_ok(&["convert", "-O", "raw", s(img), s(&q)]);
    let (bb, qb) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
    assert_eq!(bb.len(), qb.len());
    assert!(
        bb == qb,
        "{}: blk reads other bytes than QEMU",
        img.display()
    );
}

/// QEMU checks `img` clean and finds it identical to `expect`.
fn assert_qemu_agrees(img: &Path, expect: &Path) {
    let out = qemu_img_ok(&["check", "-f", "vdi", s(img)]);
    assert!(out.contains("No errors were found"), "{out}");
    let out = qemu_img_ok(&["compare", "-f", "vdi", "-F", "raw", s(img), s(expect)]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn qemu_written_vdi_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (opts, size)) in [
        ("static=off", 7_340_032u64),
        ("static=on", 5_000_192),
        ("static=off", 3_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("q{k}.vdi"));
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "vdi",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        let size = size.div_ceil(512) * 512;
        let cmds = commands(k as u64 + 1, size);
        qemu_io_ok(&io_args(&cmds, &img, "vdi"));
        assert_reads_identically(&img);
        // Info as qemu-img's: the same keys and values for the image.
        let bi: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
        let qi: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
        for key in ["format", "virtual-size", "cluster-size", "format-specific"] {
            assert_eq!(bi[key], qi[key], "{key}");
        }
        assert_eq!(bi["cluster-size"], 1 << 20);
        // And blk checks it clean, as QEMU does.
        let bc = blk_ok(&["check", "--output=json", s(&img)]);
        let qc = qemu_img_ok(&["check", "--output=json", s(&img)]);
        let (bc, qc): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&bc).unwrap(),
            serde_json::from_str(&qc).unwrap(),
        );
        assert_eq!(bc["check-errors"], qc["check-errors"]);
        assert_eq!(bc.get("corruptions"), qc.get("corruptions"));
    }
}

#[test]
fn blk_created_images_are_laid_out_as_qemu_img_lays_them_out() {
    let dir = tempfile::tempdir().unwrap();
    for (opts, size) in [("static=off", "5M"), ("static=on", "3000000")] {
        let b = dir.path().join("b.vdi");
        let q = dir.path().join("q.vdi");
        blk_ok(&["create", "-q", "-f", "vdi", "-o", opts, s(&b), size]);
        qemu_img_ok(&["create", "-q", "-f", "vdi", "-o", opts, s(&q), size]);
        let (mut bb, mut qb) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
        // Only the random UUIDs (image, last snapshot) differ.
        assert_ne!(bb[0x188..0x1a8], qb[0x188..0x1a8]);
        bb[0x188..0x1a8].fill(0);
        qb[0x188..0x1a8].fill(0);
        assert!(bb == qb, "{opts}");
        std::fs::remove_file(&b).unwrap();
        std::fs::remove_file(&q).unwrap();
    }
}

#[test]
fn blk_written_vdi_passes_qemu_check_and_compares_identical() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (opts, size)) in [
        ("static=off", 9u64 << 20),
        ("static=on", 6_000_128),
        ("static=off", 3_000_064),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("b{k}.vdi"));
        let raw = dir.path().join(format!("b{k}.raw"));
        blk_ok(&[
            "create",
            "-q",
            "-f",
            "vdi",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        blk_ok(&["create", "-q", "-f", "raw", s(&raw), &size.to_string()]);
        let cmds = commands(100 + k as u64, size);
        blk_ok(
            &["io"]
                .into_iter()
                .chain(io_args(&cmds, &img, "vdi"))
                .collect::<Vec<_>>(),
        );
        // The same guest writes on raw, by QEMU: the expected content.
        // Discard keeps a vdi image's data (as in QEMU), so it is left out.
        let kept: Vec<String> = cmds
            .iter()
            .filter(|c| !c.starts_with("discard"))
            .cloned()
            .collect();
        qemu_io_ok(&io_args(&kept, &raw, "raw"));
        assert_qemu_agrees(&img, &raw);
        assert_reads_identically(&img);
        // The file holds whole blocks, the last one too, as QEMU's do.
        let b = std::fs::read(&img).unwrap();
        let u32_at = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
        assert_eq!(
            b.len() as u64,
            u32_at(0x158) + (u32_at(0x184) << 20),
            "{opts}"
        );
        // QEMU can go on writing what blk wrote, and blk reads it.
        qemu_io_ok(&["-f", "vdi", "-c", "write -P 0x77 1000000 2000000", s(&img)]);
        qemu_io_ok(&["-f", "raw", "-c", "write -P 0x77 1000000 2000000", s(&raw)]);
        assert_reads_identically(&img);
        let out = blk_ok(&["check", s(&img)]);
        assert!(out.contains("No errors were found"), "{out}");
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_vdi_that_qemu_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let qcow2 = dir.path().join("src.qcow2");
    let size = 6u64 << 20;
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), &size.to_string()]);
    qemu_io_ok(&io_args(&commands(7, size), &raw, "raw"));
    qemu_io_ok(&["-f", "raw", "-c", "write -z 1M 1M", s(&raw)]);
    qemu_img_ok(&["convert", "-O", "qcow2", s(&raw), s(&qcow2)]);
    for (src, opts) in [
        (&raw, "static=off"),
        (&qcow2, "static=off"),
        (&raw, "static=on"),
    ] {
        let out = dir.path().join("out.vdi");
        blk_ok(&["convert", "-O", "vdi", "-o", opts, s(src), s(&out)]);
        assert_qemu_agrees(&out, &raw);
        assert_reads_identically(&out);
        std::fs::remove_file(&out).unwrap();
    }
    // A dynamic conversion allocates no block the source leaves empty.
    let sparse = dir.path().join("sparse.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&sparse), "8M"]);
    qemu_io_ok(&["-f", "raw", "-c", "write -P 3 3M 4k", s(&sparse)]);
    let out = dir.path().join("sparse.vdi");
    blk_ok(&["convert", "-O", "vdi", s(&sparse), s(&out)]);
    assert_qemu_agrees(&out, &sparse);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1024 + (1 << 20));
}

#[test]
fn damaged_images_are_refused_by_blk_and_changed_by_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.vdi");
    qemu_img_ok(&["create", "-q", "-f", "vdi", s(&img), "4M"]);
    let good = std::fs::read(&img).unwrap();
    // QEMU refuses the first two; the third it opens, reading a map past
    // the end of the file as zeros (blk refuses it).
    for (at, bytes, words, qemu_opens) in [
        (0x178usize, 0u32.to_le_bytes(), "block size 0", false),
        (0x180, u32::MAX.to_le_bytes(), "too large", false),
        (0x154, 0x4000_0000u32.to_le_bytes(), "block map", true),
    ] {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&bytes);
        std::fs::write(&img, &b).unwrap();
        for args in [
            vec!["info", s(&img)],
            vec!["check", s(&img)],
            vec!["io", "-c", "write -P 1 0 512", s(&img)],
        ] {
            let o = blk(&args);
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(words), "{words}: {err}");
        }
        assert!(std::fs::read(&img).unwrap() == b, "unchanged");
        let q = qemu_img(&["info", "-f", "vdi", s(&img)]);
        assert_eq!(q.status.success(), qemu_opens, "{words}");
    }
}

#[test]
fn blk_check_reports_what_qemu_reports() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("c.vdi");
    qemu_img_ok(&["create", "-q", "-f", "vdi", s(&img), "4M"]);
    qemu_io_ok(&["-f", "vdi", "-c", "write -P 9 0 2M", s(&img)]);
    // Guest block 2 also names data block 1; the count says 2.
    let mut b = std::fs::read(&img).unwrap();
    b[0x208..0x20c].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&img, &b).unwrap();
    let q = qemu_img(&["check", "-f", "vdi", s(&img)]);
    let o = blk(&["check", s(&img)]);
    assert_eq!(o.status.code(), q.status.code());
    let (qe, be) = (
        String::from_utf8_lossy(&q.stderr).into_owned() + &String::from_utf8_lossy(&q.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout),
    );
    for words in [
        "block index 1 also used by 1",
        "allocated blocks mismatch, is 3, should be 2",
    ] {
        assert!(qe.contains(words), "qemu: {qe}");
        assert!(be.contains(words), "blk: {be}");
    }
}

#[test]
fn blk_repairs_a_wrong_allocated_count_so_that_qemu_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("r.vdi");
    qemu_img_ok(&["create", "-q", "-f", "vdi", s(&img), "4M"]);
    qemu_io_ok(&["-f", "vdi", "-c", "write -P 5 512k 2M", s(&img)]);
    // A crash between the map entries and the count.
    let mut b = std::fs::read(&img).unwrap();
    b[0x184..0x188].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&img, &b).unwrap();
    assert_eq!(
        qemu_img(&["check", "-f", "vdi", s(&img)]).status.code(),
        Some(2)
    );
    assert_eq!(blk(&["check", s(&img)]).status.code(), Some(2));
    // (qemu-img refuses to repair vdi images; blk repairs the count.)
    let o = blk(&["check", "-r", "all", s(&img)]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Repairing allocated blocks mismatch, is 3, should be 1"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 corruptions"));
    let out = qemu_img_ok(&["check", "-f", "vdi", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
    // Writes after the repair go to new blocks: nothing is overwritten.
    blk_ok(&["io", "-c", "write -P 6 3M 4k", s(&img)]);
    qemu_io_ok(&[
        "-f",
        "vdi",
        "-c",
        "read -P 5 512k 2M",
        "-c",
        "read -P 6 3M 4k",
        s(&img),
    ]);
    let out = qemu_img_ok(&["check", "-f", "vdi", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
}
