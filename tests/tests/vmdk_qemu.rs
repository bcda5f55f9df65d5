//! vmdk images (monolithicSparse) against qemu-img/qemu-io, both directions: what QEMU writes
//! blk reads byte for byte; what blk writes (create, io, convert) QEMU
//! checks clean and compares identical. Info and check as qemu-img's.

use blk_tests::{blk, blk_ok, qemu_img_ok, qemu_io_ok, rng, s};
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
    let out = qemu_img_ok(&["check", "-f", "vmdk", s(img)]);
    assert!(out.contains("No errors were found"), "{out}");
    let out = qemu_img_ok(&["compare", "-f", "vmdk", "-F", "raw", s(img), s(expect)]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn qemu_written_vmdk_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (k, (opts, size)) in [
        ("zeroed_grain=off", 7_340_032u64),
        ("zeroed_grain=on", 5_000_192),
        ("adapter_type=lsilogic", 3_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("q{k}.vmdk"));
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        let size = size.div_ceil(512) * 512;
        let cmds = commands(k as u64 + 1, size);
        qemu_io_ok(&io_args(&cmds, &img, "vmdk"));
        assert_reads_identically(&img);
        let bi: serde_json::Value =
            serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
        let qi: serde_json::Value =
            serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(&img)])).unwrap();
        for key in ["format", "virtual-size", "cluster-size"] {
            assert_eq!(bi[key], qi[key], "{key}");
        }
        let (bd, qd) = (
            &bi["format-specific"]["data"],
            &qi["format-specific"]["data"],
        );
        for key in ["cid", "parent-cid", "create-type"] {
            assert_eq!(bd[key], qd[key], "{key}");
        }
        assert_eq!(
            bd["extents"][0]["virtual-size"],
            qd["extents"][0]["virtual-size"]
        );
    }
}

#[test]
fn blk_written_vmdk_passes_qemu_check_and_vmdkinfo() {
    let dir = tempfile::tempdir().unwrap();
    for (k, opts) in ["zeroed_grain=on", "zeroed_grain=off,adapter_type=buslogic"]
        .into_iter()
        .enumerate()
    {
        let img = dir.path().join(format!("b{k}.vmdk"));
        let raw = dir.path().join(format!("b{k}.raw"));
        let size = 6_291_456u64;
        blk_ok(&[
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            opts,
            s(&img),
            &size.to_string(),
        ]);
        blk_ok(&["create", "-q", "-f", "raw", s(&raw), &size.to_string()]);
        let cmds: Vec<String> = commands(k as u64 + 10, size)
            .into_iter()
            .filter(|c| !c.starts_with("discard"))
            .collect();
        blk_ok(
            &io_args(&cmds, &img, "vmdk")
                .iter()
                .fold(vec!["io"], |mut v, a| {
                    v.push(a);
                    v
                }),
        );
        blk_ok(
            &io_args(&cmds, &raw, "raw")
                .iter()
                .fold(vec!["io"], |mut v, a| {
                    v.push(a);
                    v
                }),
        );
        assert_qemu_agrees(&img, &raw);
        let out = std::process::Command::new("vmdkinfo")
            .arg(&img)
            .output()
            .expect("vmdkinfo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("Monolithic sparse"));
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_vmdk_that_qemu_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let qcow2 = dir.path().join("src.qcow2");
    let mut data = blk_tests::random_bytes(5, 3 << 20);
    data[1 << 20..2 << 20].fill(0);
    std::fs::write(&raw, &data).unwrap();
    qemu_img_ok(&["convert", "-O", "qcow2", s(&raw), s(&qcow2)]);
    for src in [&raw, &qcow2] {
        let out = dir.path().join("out.vmdk");
        let _ = std::fs::remove_file(&out);
        blk_ok(&["convert", "-O", "vmdk", s(src), s(&out)]);
        assert_qemu_agrees(&out, &raw);
    }
}

#[test]
fn backing_file_reads_through() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.vmdk");
    let top = dir.path().join("top.vmdk");
    qemu_img_ok(&["create", "-q", "-f", "vmdk", s(&base), "2M"]);
    qemu_io_ok(&["-f", "vmdk", "-c", "write -P 9 0 2M", s(&base)]);
    blk_ok(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-b",
        s(&base),
        "-F",
        "vmdk",
        s(&top),
    ]);
    blk_ok(&["io", "-f", "vmdk", "-c", "write -P 3 65536 4096", s(&top)]);
    assert_reads_identically(&top);
    let qi = qemu_img_ok(&["info", "--output=json", s(&top)]);
    assert!(qi.contains("base.vmdk"), "{qi}");
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("h.vmdk");
    // (offset, bytes): grain size 0, not a power of two, huge table, GD
    // past the end, huge capacity, descriptor too big.
    let cases: [(u64, Vec<u8>); 6] = [
        (20, 0u64.to_le_bytes().to_vec()),
        (20, 100u64.to_le_bytes().to_vec()),
        (44, (1u32 << 30).to_le_bytes().to_vec()),
        (56, (1u64 << 40).to_le_bytes().to_vec()),
        (12, (u64::MAX / 4).to_le_bytes().to_vec()),
        (36, (1u64 << 40).to_le_bytes().to_vec()),
    ];
    for (off, bytes) in cases {
        qemu_img_ok(&["create", "-q", "-f", "vmdk", s(&img), "1M"]);
        let mut b = std::fs::read(&img).unwrap();
        b[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
        std::fs::write(&img, &b).unwrap();
        let o = blk(&["info", s(&img)]);
        assert_eq!(o.status.code(), Some(1), "{off}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("h.vmdk"), "{off}: {err}");
    }
    // A descriptor naming a file outside its directory is not followed.
    let d = dir.path().join("evil.vmdk");
    std::fs::write(&d, "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/shadow\" 0\n").unwrap();
    let o = blk(&["info", s(&d)]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn check_agrees_with_qemu_on_a_grain_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("c.vmdk");
    qemu_img_ok(&["create", "-q", "-f", "vmdk", s(&img), "4M"]);
    qemu_io_ok(&["-f", "vmdk", "-c", "write -P 5 0 128k", s(&img)]);
    let out = blk_ok(&["check", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
    // Point the second grain's entry (primary grain table) past the end.
    let mut b = std::fs::read(&img).unwrap();
    let gd = u64::from_le_bytes(b[56..64].try_into().unwrap()) as usize * 512;
    let gt = u32::from_le_bytes(b[gd..gd + 4].try_into().unwrap()) as usize * 512;
    b[gt + 4..gt + 8].copy_from_slice(&0x0010_0000u32.to_le_bytes());
    std::fs::write(&img, &b).unwrap();
    let q = blk_tests::qemu_img(&["check", "-f", "vmdk", "--output=json", s(&img)]);
    let o = blk(&["check", "--output=json", s(&img)]);
    // QEMU names the grain and fails the check; blk counts a corruption.
    assert!(String::from_utf8_lossy(&q.stderr).contains("sector 128 points after EOF"));
    assert_ne!(q.status.code(), Some(0));
    let bj: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(bj["corruptions"], 1, "{bj}");
    assert_eq!(o.status.code(), Some(2));
}
