//! qed images against qemu-img/qemu-io, both directions: what QEMU writes
//! (every create option, pattern writes, zero writes, discards, a backing
//! chain) blk reads byte for byte as QEMU does; what blk writes (`blk
//! create` + `blk io`, `blk convert -O qed` from raw and qcow2, on top of a
//! backing file) passes `qemu-img check` and compares identical.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, s};
use rand::Rng;
use std::path::Path;

/// `n` seeded qemu-io commands: pattern writes, zero writes and discards
/// at random places of a `size`-byte disk.
fn qemu_io_commands(seed: u64, size: u64, n: usize) -> Vec<String> {
    let mut r = blk_tests::rng(seed);
    (0..n)
        .map(|_| {
            let len = r.gen_range(1..=256u64) * 512;
            let off = r.gen_range(0..(size - len) / 512) * 512;
            match r.gen_range(0..6) {
                0 => format!("write -z {off} {len}"),
                1 => format!("discard {off} {len}"),
                _ => format!("write -P {} {off} {len}", r.gen_range(1..=255)),
            }
        })
        .collect()
}

fn qemu_io(fmt: &str, img: &Path, cmds: &[String]) {
    let mut args = vec!["-f", fmt];
    for c in cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(img));
    qemu_io_ok(&args);
}

/// blk's and qemu-img's raw conversions of `img` are the same bytes.
fn assert_reads_as_qemu(img: &Path) {
    let dir = img.parent().unwrap();
    let (b, q) = (dir.join("blk.raw"), dir.join("qemu.raw"));
    blk_ok(&["convert", "-O", "raw", s(img), s(&b)]);
    qemu_img_ok(&["convert", "-O", "raw", s(img), s(&q)]);
    let (b, q) = (std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
    assert_eq!(b.len(), q.len(), "{}", img.display());
    assert!(b == q, "{}: blk reads other bytes than qemu", img.display());
}

/// The info fields qemu-img reports for qed, from both tools.
fn assert_info_as_qemu(img: &Path) {
    let fields = [
        "format",
        "virtual-size",
        "cluster-size",
        "dirty-flag",
        "backing-filename",
        "backing-filename-format",
        "format-specific",
    ];
    let b: serde_json::Value =
        serde_json::from_str(&blk_ok(&["info", "--output=json", s(img)])).unwrap();
    let q: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(img)])).unwrap();
    for f in fields {
        assert_eq!(b[f], q[f], "{f} of {}", img.display());
    }
}

/// `blk map` and `qemu-img map` describe `img` the same way (data, zero
/// and unallocated extents, file offsets, depth in the chain).
fn assert_map_as_qemu(img: &Path) {
    let b = blk_ok(&["map", "--output=json", s(img)]);
    let q = qemu_img_ok(&["map", "--output=json", s(img)]);
    let b: serde_json::Value = serde_json::from_str(&b).unwrap();
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(b, q, "map of {}", img.display());
}

/// `qemu-img check` finds nothing wrong with `img`.
fn assert_qemu_check_passes(img: &Path) {
    let out = qemu_img_ok(&["check", "-f", "qed", "--output=json", s(img)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["check-errors"], 0, "{out}");
    assert!(v["corruptions"].is_null() || v["corruptions"] == 0, "{out}");
    assert!(v["leaks"].is_null() || v["leaks"] == 0, "{out}");
}

#[test]
fn qemu_written_images_read_identically_for_every_create_option() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("", 4u64 << 20),
        ("cluster_size=4k", 3 << 20),
        ("cluster_size=4k,table_size=2", 9 << 20),
        ("cluster_size=128k,table_size=16", 6 << 20),
        ("table_size=8", (5 << 20) + 512),
    ];
    for (k, (opts, size)) in cases.iter().enumerate() {
        let img = dir.path().join(format!("q{k}.qed"));
        let mut args = vec!["create", "-f", "qed"];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        let size_arg = size.to_string();
        args.extend([s(&img), size_arg.as_str()]);
        qemu_img_ok(&args);
        qemu_io("qed", &img, &qemu_io_commands(k as u64 + 1, *size, 40));
        assert_reads_as_qemu(&img);
        assert_info_as_qemu(&img);
        assert_map_as_qemu(&img);
        let out = blk_ok(&["check", s(&img)]);
        assert!(out.contains("No errors were found"), "{opts}: {out}");
    }
}

#[test]
fn a_qemu_backing_chain_reads_through_to_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let top = dir.path().join("top.qed");
    qemu_img_ok(&["create", "-f", "raw", s(&base), "3M"]);
    qemu_io("raw", &base, &qemu_io_commands(11, 3 << 20, 30));
    qemu_img_ok(&[
        "create",
        "-f",
        "qed",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&top),
        "4M",
    ]);
    qemu_io("qed", &top, &qemu_io_commands(12, 4 << 20, 30));
    assert_reads_as_qemu(&top);
    assert_info_as_qemu(&top);
    assert_map_as_qemu(&top);
    // A qed base under a qed top (the base format probed).
    let mid = dir.path().join("mid.qed");
    let top2 = dir.path().join("top2.qed");
    qemu_img_ok(&["create", "-f", "qed", "-b", "top.qed", "-F", "qed", s(&mid)]);
    qemu_io("qed", &mid, &qemu_io_commands(13, 4 << 20, 20));
    qemu_img_ok(&[
        "create",
        "-f",
        "qed",
        "-b",
        "mid.qed",
        "-F",
        "qed",
        s(&top2),
    ]);
    qemu_io("qed", &top2, &qemu_io_commands(14, 4 << 20, 20));
    assert_reads_as_qemu(&top2);
    assert_map_as_qemu(&top2);
}

/// Seeded `blk io` writes and zero writes on `img` (a `size`-byte disk),
/// mirrored into `shadow`.
fn blk_writes(img: &Path, seed: u64, size: u64, shadow: &mut [u8]) {
    let mut r = blk_tests::rng(seed);
    let mut args: Vec<String> = vec!["io".into()];
    for _ in 0..40 {
        let len = r.gen_range(1..=300u64) * 512;
        let off = r.gen_range(0..(size - len) / 512) * 512;
        let range = off as usize..(off + len) as usize;
        if r.gen_range(0..5) == 0 {
            args.extend(["-c".into(), format!("write -z {off} {len}")]);
            shadow[range].fill(0);
        } else {
            let p = r.gen_range(1..=255u8);
            args.extend(["-c".into(), format!("write -P {p} {off} {len}")]);
            shadow[range].fill(p);
        }
    }
    args.push(s(img).into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    blk_ok(&args);
}

#[test]
fn blk_written_images_pass_qemu_check_and_compare_identical() {
    let dir = tempfile::tempdir().unwrap();
    for (k, opts) in [
        "",
        "cluster_size=4k,table_size=2",
        "cluster_size=256k,table_size=16",
    ]
    .iter()
    .enumerate()
    {
        let size = 6u64 << 20;
        let img = dir.path().join(format!("b{k}.qed"));
        let expect = dir.path().join(format!("b{k}.raw"));
        let mut args = vec!["create", "-f", "qed"];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([s(&img), "6M"]);
        blk_ok(&args);
        let mut shadow = vec![0u8; size as usize];
        blk_writes(&img, k as u64 + 20, size, &mut shadow);
        std::fs::write(&expect, &shadow).unwrap();
        assert_qemu_check_passes(&img);
        let out = qemu_img_ok(&["compare", "-f", "qed", "-F", "raw", s(&img), s(&expect)]);
        assert!(out.contains("Images are identical"), "{opts}: {out}");
        assert_info_as_qemu(&img);
    }
}

#[test]
fn blk_create_matches_qemu_create_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&base), "2M"]);
    let cases: [&[&str]; 3] = [
        &["-o", "cluster_size=16k,table_size=8"],
        &["-b", "base.raw", "-F", "raw"],
        &["-b", "base.raw", "-F", "raw", "-o", "size=8M"],
    ];
    for (k, extra) in cases.iter().enumerate() {
        let (b, q) = (
            dir.path().join(format!("b{k}.qed")),
            dir.path().join(format!("q{k}.qed")),
        );
        for (tool, img) in [("blk", &b), ("qemu", &q)] {
            let mut args = vec!["create", "-f", "qed"];
            args.extend(extra.iter());
            args.push(s(img));
            if !extra.contains(&"-b") {
                args.push("1M");
            }
            if tool == "blk" {
                blk_ok(&args);
            } else {
                qemu_img_ok(&args);
            }
        }
        assert!(
            std::fs::read(&b).unwrap() == std::fs::read(&q).unwrap(),
            "{extra:?}"
        );
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_qed_that_qemu_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let qcow2 = dir.path().join("src.qcow2");
    qemu_img_ok(&["create", "-f", "raw", s(&raw), "5M"]);
    qemu_io("raw", &raw, &qemu_io_commands(31, 5 << 20, 30));
    qemu_img_ok(&["create", "-f", "qcow2", s(&qcow2), "5M"]);
    qemu_io("qcow2", &qcow2, &qemu_io_commands(32, 5 << 20, 30));
    for (src, fmt) in [(&raw, "raw"), (&qcow2, "qcow2")] {
        let out_img = dir.path().join(format!("from-{fmt}.qed"));
        blk_ok(&["convert", "-f", fmt, "-O", "qed", s(src), s(&out_img)]);
        assert_qemu_check_passes(&out_img);
        let out = qemu_img_ok(&["compare", "-f", fmt, "-F", "qed", s(src), s(&out_img)]);
        assert!(out.contains("Images are identical"), "{fmt}: {out}");
    }
}

#[test]
fn blk_writes_on_top_of_a_backing_file_keep_the_base_visible() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let top = dir.path().join("top.qed");
    let expect = dir.path().join("expect.raw");
    let size = 4u64 << 20;
    let base_bytes = blk_tests::random_bytes(41, size as usize);
    std::fs::write(&base, &base_bytes).unwrap();
    blk_ok(&[
        "create",
        "-f",
        "qed",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&top),
    ]);
    let mut shadow = base_bytes.clone();
    blk_writes(&top, 42, size, &mut shadow);
    std::fs::write(&expect, &shadow).unwrap();
    assert_qemu_check_passes(&top);
    let out = qemu_img_ok(&["compare", "-f", "qed", "-F", "raw", s(&top), s(&expect)]);
    assert!(out.contains("Images are identical"), "{out}");
    assert!(
        std::fs::read(&base).unwrap() == base_bytes,
        "the base is unchanged"
    );
    assert_info_as_qemu(&top);
}

#[test]
fn leaks_and_a_left_need_check_flag_are_reported_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("l.qed");
    qemu_img_ok(&["create", "-f", "qed", s(&img), "1M"]);
    qemu_io_ok(&["-f", "qed", "-c", "write -P 3 0 64k", s(&img)]);
    // Two clusters past everything the tables name (a crash's leftovers),
    // and the need-check flag still set.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes.resize(bytes.len() + (128 << 10), 9);
    bytes[16] |= 2;
    std::fs::write(&img, &bytes).unwrap();
    let q = qemu_img(&["check", "-f", "qed", "--output=json", s(&img)]);
    let b = blk(&["check", "--output=json", s(&img)]);
    assert_eq!(q.status.code(), Some(3));
    assert_eq!(b.status.code(), q.status.code());
    let qv: serde_json::Value = serde_json::from_slice(&q.stdout).unwrap();
    let bv: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    for f in [
        "leaks",
        "total-clusters",
        "allocated-clusters",
        "check-errors",
    ] {
        assert_eq!(bv[f], qv[f], "{f}");
    }
    assert_eq!(bv["leaks"], 2);
    assert_info_as_qemu(&img);
    // A writable open runs the check and clears the flag; the data stays.
    blk_ok(&["io", "-c", "write -P 4 64k 512", s(&img)]);
    assert_eq!(std::fs::read(&img).unwrap()[16] & 2, 0);
    qemu_io_ok(&[
        "-f",
        "qed",
        "-c",
        "read -P 3 0 64k",
        "-c",
        "read -P 4 64k 512",
        s(&img),
    ]);
}

#[test]
fn damaged_images_are_refused_or_reported_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.qed");
    qemu_img_ok(&["create", "-f", "qed", s(&img), "1M"]);
    qemu_io_ok(&["-f", "qed", "-c", "write -P 7 0 128k", s(&img)]);
    let mut bytes = std::fs::read(&img).unwrap();
    // L1 entry 0 names the L2 table; point its entry 1 past the end.
    let l2 = u64::from_le_bytes(bytes[65536..65544].try_into().unwrap()) as usize;
    bytes[l2 + 8..l2 + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&img, &bytes).unwrap();
    let q = qemu_img(&["check", "-f", "qed", s(&img)]);
    let b = blk(&["check", s(&img)]);
    assert!(!q.status.success() && !b.status.success());
    let text =
        String::from_utf8_lossy(&b.stdout).into_owned() + &String::from_utf8_lossy(&b.stderr);
    assert!(text.contains("1 errors were found"), "{text}");
    // A hostile cluster size: a clear error, no panic.
    bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&img, &bytes).unwrap();
    let b = blk(&["info", s(&img)]);
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(!b.status.success() && err.contains("cluster size"), "{err}");
}

#[test]
fn rebase_and_commit_work_on_qed_as_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    qemu_img_ok(&["create", "-f", "raw", s(&p("base.raw")), "2M"]);
    qemu_io("raw", &p("base.raw"), &qemu_io_commands(51, 2 << 20, 10));
    qemu_img_ok(&["create", "-f", "raw", s(&p("new.raw")), "2M"]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qed",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&p("t.qed")),
    ]);
    qemu_io("qed", &p("t.qed"), &qemu_io_commands(52, 2 << 20, 10));
    // Unsafe rebases (new name, no name) store what qemu-img stores.
    for (b, extra) in [("new.raw", &["-F", "raw"][..]), ("", &[][..])] {
        std::fs::copy(p("t.qed"), p("b.qed")).unwrap();
        std::fs::copy(p("t.qed"), p("q.qed")).unwrap();
        let mut args = vec!["rebase", "-u", "-b", b];
        args.extend(extra);
        let (bp, qp) = (p("b.qed"), p("q.qed"));
        let (mut ba, mut qa) = (args.clone(), args);
        ba.push(s(&bp));
        qa.push(s(&qp));
        blk_ok(&ba);
        qemu_img_ok(&qa);
        let same = std::fs::read(p("b.qed")).unwrap() == std::fs::read(p("q.qed")).unwrap();
        assert!(same, "rebase -u -b '{b}'");
    }
    // A safe rebase keeps the guest view; commit writes the top into the base.
    std::fs::copy(p("t.qed"), p("r.qed")).unwrap();
    blk_ok(&["rebase", "-b", "new.raw", "-F", "raw", s(&p("r.qed"))]);
    let out = qemu_img_ok(&["compare", s(&p("t.qed")), s(&p("r.qed"))]);
    assert!(out.contains("Images are identical"), "{out}");
    assert_qemu_check_passes(&p("r.qed"));
    qemu_img_ok(&[
        "create",
        "-f",
        "qed",
        "-b",
        "r.qed",
        "-F",
        "qed",
        s(&p("c.qed")),
    ]);
    qemu_io_ok(&["-f", "qed", "-c", "write -P 9 1000k 100k", s(&p("c.qed"))]);
    let want = dir.path().join("want.raw");
    qemu_img_ok(&["convert", "-O", "raw", s(&p("c.qed")), s(&want)]);
    blk_ok(&["commit", s(&p("c.qed"))]);
    assert_qemu_check_passes(&p("r.qed"));
    let out = qemu_img_ok(&["compare", "-F", "raw", s(&p("r.qed")), s(&want)]);
    assert!(out.contains("Images are identical"), "{out}");
}
