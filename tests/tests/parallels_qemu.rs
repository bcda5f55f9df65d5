//! Parallels images against qemu-img/qemu-io, both directions: what QEMU
//! writes (every create option, data, zero writes, discards; both magics)
//! blk reads byte-identically; what blk writes (`blk create` + `blk io`,
//! `blk convert -O parallels` from raw and qcow2) passes `qemu-img check`
//! and `qemu-img compare`; and blk's check agrees with QEMU's on damaged
//! images.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, s};
use rand::Rng;
use std::path::{Path, PathBuf};

/// The create-option sets exercised: (size, cluster_size or none).
const SHAPES: &[(&str, Option<&str>)] = &[
    ("5M", None),
    ("3000000", Some("64k")),
    ("2M", Some("4k")),
    ("1000000", Some("512")),
];

/// Seeded qemu-io commands over a disk of `size` bytes: pattern writes,
/// zero writes (with and without unmap) and discards.
fn io_commands(seed: u64, size: u64) -> Vec<String> {
    let mut r = blk_tests::rng(seed);
    let mut cmds = Vec::new();
    for k in 0..24 {
        let len = r.gen_range(1..200_000u64).min(size);
        let off = r.gen_range(0..=size - len);
        cmds.push(match k % 6 {
            4 => format!("write -z {off} {len}"),
            5 if k % 4 == 1 => format!("discard {off} {len}"),
            5 => format!("write -z -u {off} {len}"),
            _ => format!("write -P {} {off} {len}", r.gen_range(1..=255u8)),
        });
    }
    cmds
}

/// The image's bytes as `qemu-img convert -O raw` and `blk convert -O raw`
/// give them; asserts they are identical.
fn assert_same_raw(img: &Path, dir: &Path) {
    let q = dir.join("q.raw");
    let b = dir.join("b.raw");
    qemu_img_ok(&["convert", "-f", "parallels", "-O", "raw", s(img), s(&q)]);
    blk_ok(&["convert", "-f", "parallels", "-O", "raw", s(img), s(&b)]);
    let (qb, bb) = (std::fs::read(&q).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(qb.len(), bb.len(), "{}", img.display());
    assert!(
        qb == bb,
        "{}: blk reads other bytes than QEMU",
        img.display()
    );
}

fn qemu_image(dir: &Path, name: &str, size: &str, cluster: Option<&str>) -> PathBuf {
    let img = dir.join(name);
    let mut args = vec!["create", "-q", "-f", "parallels"];
    let opt = cluster.map(|c| format!("cluster_size={c}"));
    if let Some(o) = &opt {
        args.extend(["-o", o.as_str()]);
    }
    args.extend([s(&img), size]);
    qemu_img_ok(&args);
    img
}

fn virtual_size(img: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(img)])).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

fn qemu_io_all(img: &Path, cmds: &[String]) {
    let mut args = vec!["-f", "parallels"];
    for c in cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(img));
    qemu_io_ok(&args);
}

#[test]
fn qemu_written_images_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (n, &(size, cluster)) in SHAPES.iter().enumerate() {
        let img = qemu_image(dir.path(), &format!("q{n}.img"), size, cluster);
        assert_same_raw(&img, dir.path());
        let cmds = io_commands(100 + n as u64, virtual_size(&img));
        qemu_io_all(&img, &cmds);
        assert_same_raw(&img, dir.path());
        // blk's info agrees with QEMU's.
        let q: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
        for key in ["format", "virtual-size"] {
            assert_eq!(b[key], q[key], "{key}");
        }
        assert!(b.get("cluster-size").is_none() && b.get("format-specific").is_none());
    }
}

#[test]
fn sector_counting_images_read_identically() {
    // QEMU only creates the cluster-counting magic; turn its image into one
    // of the older kind (entries in sectors) and let both read it.
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path(), "old.img", "3M", Some("64k"));
    qemu_io_all(&img, &io_commands(7, 3 << 20));
    let mut b = std::fs::read(&img).unwrap();
    b[..16].copy_from_slice(b"WithoutFreeSpace");
    let tracks = u32::from_le_bytes(b[28..32].try_into().unwrap());
    let entries = u32::from_le_bytes(b[32..36].try_into().unwrap()) as usize;
    for i in 0..entries {
        let at = 64 + 4 * i;
        let e = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        b[at..at + 4].copy_from_slice(&(e * tracks).to_le_bytes());
    }
    std::fs::write(&img, &b).unwrap();
    assert_same_raw(&img, dir.path());
}

/// The same seeded writes through `blk io` on a parallels image and
/// through qemu-io on a raw file.
fn blk_and_raw_writes(img: &Path, raw: &Path, seed: u64, size: u64) {
    let mut cmds: Vec<String> = io_commands(seed, size)
        .into_iter()
        .filter(|c| !c.starts_with("discard"))
        .collect();
    // The disk's last sector: its cluster may end past the disk.
    cmds.push(format!("write -P 119 {} 512", size - 512));
    let mut args = vec!["io", "-f", "parallels"];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(img));
    blk_ok(&args);
    let mut args = vec!["-f", "raw"];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(raw));
    qemu_io_ok(&args);
}

/// `qemu-img check` passes on `img` (no errors, no leaks).
fn assert_qemu_check_clean(img: &Path) {
    let out = qemu_img(&["check", "-f", "parallels", s(img)]);
    assert!(
        out.status.success(),
        "qemu-img check {}: {}{}",
        img.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_identical(img: &Path, fmt: &str, other: &Path) {
    let out = qemu_img_ok(&["compare", "-f", "parallels", "-F", fmt, s(img), s(other)]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn blk_written_images_pass_qemu_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    for (n, &(size, cluster)) in SHAPES.iter().enumerate() {
        let img = dir.path().join(format!("b{n}.img"));
        let mut args = vec!["create", "-q", "-f", "parallels"];
        let opt = cluster.map(|c| format!("cluster_size={c}"));
        if let Some(o) = &opt {
            args.extend(["-o", o.as_str()]);
        }
        args.extend([s(&img), size]);
        blk_ok(&args);
        assert_qemu_check_clean(&img);
        // blk creates the header qemu-img creates.
        let q = qemu_image(dir.path(), "same.img", size, cluster);
        assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&q).unwrap());
        let vsize = virtual_size(&img);
        let raw = dir.path().join(format!("b{n}.raw"));
        qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), &vsize.to_string()]);
        blk_and_raw_writes(&img, &raw, 200 + n as u64, vsize);
        assert_qemu_check_clean(&img);
        assert_identical(&img, "raw", &raw);
        // And blk's own check agrees.
        blk_ok(&["check", "-f", "parallels", s(&img)]);
    }
}

#[test]
fn blk_convert_to_parallels_passes_qemu_check_and_compare() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "6M"]);
    qemu_io_all_raw(&raw, "raw", 300);
    let qcow2 = dir.path().join("src.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&qcow2), "6M"]);
    qemu_io_all_raw(&qcow2, "qcow2", 301);
    for (src, fmt) in [(&raw, "raw"), (&qcow2, "qcow2")] {
        for opts in ["cluster_size=1M", "cluster_size=64k"] {
            let out = dir.path().join(format!("{fmt}.img"));
            let _ = std::fs::remove_file(&out);
            blk_ok(&[
                "convert",
                "-f",
                fmt,
                "-O",
                "parallels",
                "-o",
                opts,
                s(src),
                s(&out),
            ]);
            assert_qemu_check_clean(&out);
            assert_identical(&out, fmt, src);
        }
    }
}

fn qemu_io_all_raw(img: &Path, fmt: &str, seed: u64) {
    let cmds: Vec<String> = io_commands(seed, 6 << 20)
        .into_iter()
        .filter(|c| c.starts_with("write -P"))
        .collect();
    let mut args = vec!["-f", fmt];
    for c in &cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(img));
    qemu_io_ok(&args);
}

/// `check --output=json` of a tool, with its exit code.
fn check_json(tool: &str, img: &Path, repair: Option<&str>) -> (i32, serde_json::Value) {
    let mut args = vec!["check", "-f", "parallels", "--output=json"];
    if let Some(r) = repair {
        args.extend(["-r", r]);
    }
    args.push(s(img));
    let out = if tool == "qemu" {
        qemu_img(&args)
    } else {
        blk(&args)
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: {e}: {text}{err}"));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn blk_check_agrees_with_qemu_check_on_damaged_images() {
    let dir = tempfile::tempdir().unwrap();
    let base = qemu_image(dir.path(), "base.img", "5M", None);
    qemu_io_all(
        &base,
        &["write -P 1 0 1M".into(), "write -P 2 3M 100k".into()],
    );
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 2] = [
        ("unclean", |b| {
            b[44..48].copy_from_slice(&0x746F_6E59u32.to_le_bytes())
        }),
        ("leak", |b| b.resize(b.len() + (3 << 20), 0)),
    ];
    for (name, damage) in damages {
        let mut bytes = std::fs::read(&base).unwrap();
        damage(&mut bytes);
        let (q, b) = (dir.path().join("q.img"), dir.path().join("b.img"));
        std::fs::write(&q, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        let (qc, qv) = check_json("qemu", &q, None);
        let (bc, bv) = check_json("blk", &b, None);
        assert_eq!(bc, qc, "{name}: exit code");
        for key in [
            "corruptions",
            "leaks",
            "allocated-clusters",
            "total-clusters",
        ] {
            assert_eq!(bv.get(key), qv.get(key), "{name}: {key}\n{qv}\n{bv}");
        }
        // Both repair it, to images QEMU finds clean and reading the same.
        let (qc, _) = check_json("qemu", &q, Some("all"));
        let (bc, _) = check_json("blk", &b, Some("all"));
        assert_eq!((bc, qc), (0, 0), "{name}: repaired");
        assert_qemu_check_clean(&b);
        let out = qemu_img_ok(&[
            "compare",
            "-f",
            "parallels",
            "-F",
            "parallels",
            s(&b),
            s(&q),
        ]);
        assert!(out.contains("Images are identical"), "{name}: {out}");
    }
}

#[test]
fn blk_repairs_entries_outside_the_image_into_what_qemu_finds_clean() {
    // (qemu-img 10's own check aborts on such an image, so only blk's
    // verdict is asserted, and QEMU judges the repaired image.)
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path(), "o.img", "5M", None);
    qemu_io_all(
        &img,
        &["write -P 1 0 1M".into(), "write -P 2 3M 100k".into()],
    );
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[68..72].copy_from_slice(&0x99u32.to_le_bytes());
    std::fs::write(&img, &bytes).unwrap();
    let (code, v) = check_json("blk", &img, None);
    assert_eq!((code, &v["corruptions"]), (2, &serde_json::json!(1)), "{v}");
    let out = String::from_utf8_lossy(&blk(&["check", s(&img)]).stderr).into_owned();
    assert!(out.contains("ERROR cluster 1 is outside image"), "{out}");
    let (code, _) = check_json("blk", &img, Some("all"));
    assert_eq!(code, 0);
    assert_qemu_check_clean(&img);
    assert_same_raw(&img, dir.path());
}

#[test]
fn hostile_headers_fail_cleanly_in_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let base = qemu_image(dir.path(), "h.img", "5M", None);
    let good = std::fs::read(&base).unwrap();
    let cases: [(usize, u32, &str); 4] = [
        (28, 0, "zero sectors"),
        (32, u32::MAX, "BAT too large"),
        (48, u32::MAX, "outside the file"),
        (16, 3, "version 3"),
    ];
    for (at, value, words) in cases {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        std::fs::write(&base, &b).unwrap();
        for cmd in ["info", "check"] {
            let out = blk(&[cmd, "-f", "parallels", s(&base)]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{cmd} {words}: {err}");
            assert!(err.contains(words) && !err.contains("panicked"), "{err}");
        }
        assert_eq!(std::fs::read(&base).unwrap(), b, "nothing changed");
    }
}

#[test]
fn blk_check_reports_qemus_allocation_figures() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path(), "f.img", "2M", Some("64k"));
    // Out of order: the file holds guest clusters 16, 0, 8-11, 1.
    qemu_io_all(
        &img,
        &[
            "write -P 1 1M 64k".into(),
            "write -P 2 0 64k".into(),
            "write -P 3 512k 200k".into(),
            "write -P 4 64k 64k".into(),
        ],
    );
    let q = String::from_utf8_lossy(&qemu_img(&["check", s(&img)]).stdout).into_owned();
    let b = String::from_utf8_lossy(&blk(&["check", s(&img)]).stdout).into_owned();
    assert!(q.contains("fragmented"), "{q}");
    assert_eq!(b, q);
}
