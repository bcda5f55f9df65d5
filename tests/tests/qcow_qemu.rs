//! qcow (version 1) images against qemu-img/qemu-io and libqcow's
//! `qcowinfo`, both directions: what QEMU writes (seeded pattern writes,
//! zero writes, discards, compressed clusters, backing chains) blk reads
//! byte for byte as QEMU does; what blk writes (`blk create` + `blk io`,
//! `blk convert -O qcow` from raw and qcow2, compressed, on top of a
//! backing file) compares identical in qemu-img (which has no check for
//! qcow), reads back in qemu-io and is accepted by `qcowinfo`. Hostile
//! headers are refused with clean errors.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, run, s};
use rand::Rng;
use std::path::Path;
use std::process::Command;

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

/// The info fields qemu-img reports for qcow, from both tools.
fn assert_info_as_qemu(img: &Path) {
    let b: serde_json::Value =
        serde_json::from_str(&blk_ok(&["info", "--output=json", s(img)])).unwrap();
    let q: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(img)])).unwrap();
    for f in [
        "format",
        "virtual-size",
        "cluster-size",
        "dirty-flag",
        "backing-filename",
        "full-backing-filename",
        "backing-filename-format",
        "format-specific",
        "encrypted",
    ] {
        assert_eq!(b[f], q[f], "{f} of {}", img.display());
    }
}

/// `blk map` and `qemu-img map` describe `img` the same way.
fn assert_map_as_qemu(img: &Path) {
    let b = blk_ok(&["map", "--output=json", s(img)]);
    let q = qemu_img_ok(&["map", "--output=json", s(img)]);
    let b: serde_json::Value = serde_json::from_str(&b).unwrap();
    let q: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(b, q, "map of {}", img.display());
}

/// qemu-img compares `img` (qcow) identical to the raw `expect`.
fn assert_identical(img: &Path, expect: &Path) {
    let out = qemu_img_ok(&["compare", "-f", "qcow", "-F", "raw", s(img), s(expect)]);
    assert!(
        out.contains("Images are identical"),
        "{}: {out}",
        img.display()
    );
}

/// libqcow's `qcowinfo` accepts `img` as a qcow version 1 image of `size`.
fn assert_qcowinfo_accepts(img: &Path, size: u64) {
    let out = run(Command::new("qcowinfo").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "qcowinfo {}: {text}", img.display());
    assert!(text.contains("Format version\t\t: 1"), "{text}");
    assert!(text.contains(&format!("({size} bytes)")), "{text}");
}

#[test]
fn qemu_written_images_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (k, size) in [4u64 << 20, (3 << 20) + 512, 9 << 20].iter().enumerate() {
        let img = dir.path().join(format!("q{k}.qcow"));
        qemu_img_ok(&["create", "-q", "-f", "qcow", s(&img), &size.to_string()]);
        qemu_io("qcow", &img, &qemu_io_commands(k as u64 + 1, *size, 40));
        assert_reads_as_qemu(&img);
        assert_info_as_qemu(&img);
        assert_map_as_qemu(&img);
    }
}

#[test]
fn qemu_compressed_images_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "3M"]);
    qemu_io("raw", &raw, &qemu_io_commands(5, 3 << 20, 30));
    let img = dir.path().join("c.qcow");
    // qemu-img 10 exits 1 after a compressed convert to qcow, without a
    // message, though the image is complete: compare judges it.
    let o = qemu_img(&["convert", "-c", "-O", "qcow", s(&raw), s(&img)]);
    assert!(o.stderr.is_empty(), "{o:?}");
    let out = qemu_img_ok(&["compare", "-F", "raw", s(&img), s(&raw)]);
    assert!(out.contains("Images are identical"), "{out}");
    assert_reads_as_qemu(&img);
    assert_map_as_qemu(&img);
    let map = blk_ok(&["map", "--output=json", s(&img)]);
    assert!(map.contains("\"compressed\": true"), "{map}");
    // QEMU's writes over compressed clusters, then both read the same.
    qemu_io("qcow", &img, &qemu_io_commands(6, 3 << 20, 20));
    assert_reads_as_qemu(&img);
    assert_map_as_qemu(&img);
}

#[test]
fn a_qemu_backing_chain_reads_through_to_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let top = dir.path().join("top.qcow");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&base), "3M"]);
    qemu_io("raw", &base, &qemu_io_commands(11, 3 << 20, 30));
    let args = ["create", "-q", "-f", "qcow", "-b", "base.raw", "-F", "raw"];
    qemu_img_ok(&[&args[..], &[s(&top), "4M"]].concat());
    qemu_io("qcow", &top, &qemu_io_commands(12, 4 << 20, 30));
    assert_reads_as_qemu(&top);
    assert_info_as_qemu(&top);
    assert_map_as_qemu(&top);
    // A qcow over a qcow (the base format probed).
    let top2 = dir.path().join("top2.qcow");
    let args = ["create", "-q", "-f", "qcow", "-b", "top.qcow", "-F", "qcow"];
    qemu_img_ok(&[&args[..], &[s(&top2)]].concat());
    qemu_io("qcow", &top2, &qemu_io_commands(13, 4 << 20, 20));
    assert_reads_as_qemu(&top2);
    assert_map_as_qemu(&top2);
}

/// The same seeded `io` commands for `blk io` and `qemu-io`.
fn io_script(seed: u64, size: u64) -> Vec<String> {
    let mut r = blk_tests::rng(seed);
    (0..40)
        .map(|_| {
            let len = r.gen_range(1..=300u64) * 512;
            let off = r.gen_range(0..(size - len) / 512) * 512;
            match r.gen_range(0..5) {
                0 => format!("write -z {off} {len}"),
                _ => format!("write -P {} {off} {len}", r.gen_range(1..=255)),
            }
        })
        .collect()
}

/// Applies `cmds` to a shadow copy of the guest.
fn apply(cmds: &[String], shadow: &mut [u8]) {
    for c in cmds {
        let w: Vec<&str> = c.split(' ').collect();
        let (off, len) = (w[w.len() - 2].parse::<usize>().unwrap(), w[w.len() - 1]);
        let len: usize = len.parse().unwrap();
        let v = if w[1] == "-z" {
            0
        } else {
            w[2].parse().unwrap()
        };
        shadow[off..off + len].fill(v);
    }
}

fn blk_io(img: &Path, cmds: &[String]) {
    let mut args = vec!["io"];
    for c in cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(s(img));
    blk_ok(&args);
}

#[test]
fn blk_written_images_are_qemus_bytes_and_compare_identical() {
    let dir = tempfile::tempdir().unwrap();
    let size = 6u64 << 20;
    let (b, q) = (dir.path().join("b.qcow"), dir.path().join("q.qcow"));
    blk_ok(&["create", "-f", "qcow", s(&b), "6M"]);
    qemu_img_ok(&["create", "-q", "-f", "qcow", s(&q), "6M"]);
    assert!(std::fs::read(&b).unwrap() == std::fs::read(&q).unwrap());
    let cmds = io_script(21, size);
    blk_io(&b, &cmds);
    qemu_io("qcow", &q, &cmds);
    // blk places tables and clusters where QEMU does.
    assert!(std::fs::read(&b).unwrap() == std::fs::read(&q).unwrap());
    let mut shadow = vec![0u8; size as usize];
    apply(&cmds, &mut shadow);
    let expect = dir.path().join("expect.raw");
    std::fs::write(&expect, &shadow).unwrap();
    assert_identical(&b, &expect);
    assert_info_as_qemu(&b);
    assert_map_as_qemu(&b);
    assert_qcowinfo_accepts(&b, size);
    // qemu-io reads what blk wrote.
    let last = cmds.iter().rev().find(|c| !c.contains("-z")).unwrap();
    qemu_io_ok(&["-f", "qcow", "-c", &last.replace("write", "read"), s(&b)]);
}

#[test]
fn blk_create_matches_qemu_create_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&base), "2M"]);
    // (options before the file name, the size after it)
    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &["1M"]),
        (&[], &["1000"]),
        (&["-b", "base.raw", "-F", "raw"], &[]),
        (&["-b", "base.raw", "-F", "raw", "-o", "size=8M"], &[]),
    ];
    for (k, (opts, size)) in cases.iter().enumerate() {
        let b = dir.path().join(format!("b{k}.qcow"));
        let q = dir.path().join(format!("q{k}.qcow"));
        let head: &[&str] = &["create", "-q", "-f", "qcow"];
        blk_ok(&[head, opts, &[s(&b)], size].concat());
        qemu_img_ok(&[head, opts, &[s(&q)], size].concat());
        assert!(
            std::fs::read(&b).unwrap() == std::fs::read(&q).unwrap(),
            "{opts:?} {size:?}"
        );
        assert_info_as_qemu(&b);
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_qcow_that_qemu_reads() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let qcow2 = dir.path().join("src.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "5M"]);
    qemu_io("raw", &raw, &qemu_io_commands(31, 5 << 20, 30));
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&qcow2), "5M"]);
    qemu_io("qcow2", &qcow2, &qemu_io_commands(32, 5 << 20, 30));
    for (src, fmt) in [(&raw, "raw"), (&qcow2, "qcow2")] {
        for compress in [false, true] {
            let out_img = dir.path().join(format!("from-{fmt}-{compress}.qcow"));
            let mut args = vec!["convert", "-f", fmt, "-O", "qcow"];
            if compress {
                args.push("-c");
            }
            args.extend([s(src), s(&out_img)]);
            blk_ok(&args);
            let out = qemu_img_ok(&["compare", "-f", fmt, "-F", "qcow", s(src), s(&out_img)]);
            assert!(out.contains("Images are identical"), "{fmt}: {out}");
            assert_map_as_qemu(&out_img);
            assert_qcowinfo_accepts(&out_img, 5 << 20);
            let map = qemu_img_ok(&["map", "--output=json", s(&out_img)]);
            assert_eq!(map.contains("\"compressed\": true"), compress, "{map}");
        }
    }
}

#[test]
fn blk_writes_on_top_of_a_backing_file_keep_the_base_visible() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    let top = dir.path().join("top.qcow");
    let size = 4u64 << 20;
    let base_bytes = blk_tests::random_bytes(41, size as usize);
    std::fs::write(&base, &base_bytes).unwrap();
    blk_ok(&[
        "create",
        "-f",
        "qcow",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&top),
    ]);
    let cmds = io_script(42, size);
    blk_io(&top, &cmds);
    let mut shadow = base_bytes.clone();
    apply(&cmds, &mut shadow);
    let expect = dir.path().join("expect.raw");
    std::fs::write(&expect, &shadow).unwrap();
    assert_identical(&top, &expect);
    assert!(
        std::fs::read(&base).unwrap() == base_bytes,
        "the base is unchanged"
    );
    assert_info_as_qemu(&top);
    assert_map_as_qemu(&top);
    // A qcow base under a qcow top, both written by blk.
    let top2 = dir.path().join("top2.qcow");
    blk_ok(&[
        "create",
        "-f",
        "qcow",
        "-b",
        "top.qcow",
        "-F",
        "qcow",
        s(&top2),
    ]);
    let cmds = io_script(43, size);
    blk_io(&top2, &cmds);
    apply(&cmds, &mut shadow);
    std::fs::write(&expect, &shadow).unwrap();
    assert_identical(&top2, &expect);
    assert_map_as_qemu(&top2);
}

#[test]
fn rebase_and_commit_behave_as_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&p("base.raw")), "2M"]);
    let args = ["create", "-q", "-f", "qcow", "-b", "base.raw", "-F", "raw"];
    qemu_img_ok(&[&args[..], &[s(&p("t.qcow"))]].concat());
    qemu_io("qcow", &p("t.qcow"), &qemu_io_commands(52, 2 << 20, 10));
    // qcow cannot change its backing file name: both refuse alike.
    let b = blk(&["rebase", "-u", "-b", "x.raw", "-F", "raw", s(&p("t.qcow"))]);
    let q = qemu_img(&["rebase", "-u", "-b", "x.raw", "-F", "raw", s(&p("t.qcow"))]);
    assert_eq!(b.status.code(), q.status.code());
    assert_eq!(
        String::from_utf8_lossy(&b.stderr).replace("blk:", "qemu-img:"),
        String::from_utf8_lossy(&q.stderr)
    );
    // Commit writes the top into the base and empties it as QEMU does.
    std::fs::copy(p("t.qcow"), p("q.qcow")).unwrap();
    std::fs::copy(p("base.raw"), p("qbase.raw")).unwrap();
    let want = p("want.raw");
    qemu_img_ok(&["convert", "-O", "raw", s(&p("t.qcow")), s(&want)]);
    blk_ok(&["commit", s(&p("t.qcow"))]);
    let out = qemu_img_ok(&["compare", "-F", "raw", s(&p("base.raw")), s(&want)]);
    assert!(out.contains("Images are identical"), "{out}");
    std::fs::rename(p("base.raw"), p("blkbase.raw")).unwrap();
    std::fs::rename(p("qbase.raw"), p("base.raw")).unwrap();
    qemu_img_ok(&["commit", "-q", s(&p("q.qcow"))]);
    assert!(std::fs::read(p("t.qcow")).unwrap() == std::fs::read(p("q.qcow")).unwrap());
}

#[test]
fn hostile_headers_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("h.qcow");
    qemu_img_ok(&["create", "-q", "-f", "qcow", s(&img), "4M"]);
    let good = std::fs::read(&img).unwrap();
    let cases: &[(usize, &[u8], &str, bool)] = &[
        // (offset, bytes, blk's words, qemu-img refuses too)
        (32, &[8], "Cluster size must be between 512 and 64k", true),
        (32, &[17], "Cluster size must be between 512 and 64k", true),
        (33, &[5], "L2 table size must be between 512 and 64k", true),
        (33, &[14], "L2 table size must be between 512 and 64k", true),
        (24, &[0xff; 8], "Image too large", true),
        (24, &[0x10, 0, 0, 0, 0, 0, 0, 0], "Image too large", true),
        (24, &[0, 0, 0x20, 0, 0, 0, 0, 0], "L1 table", false),
        (40, &[0, 0, 1, 0, 0, 0, 0, 0], "L1 table", false),
        (
            36,
            &[0, 0, 0, 7],
            "invalid encryption method in qcow header",
            true,
        ),
        (
            24,
            &[0, 0, 0, 0, 0, 0, 0, 1],
            "Image size is too small",
            true,
        ),
    ];
    for (off, bytes, words, qemu_too) in cases {
        let mut b = good.clone();
        b[*off..off + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&img, &b).unwrap();
        let o = blk(&["info", s(&img)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{words}: {err}");
        assert!(err.contains(words), "{words}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        if *qemu_too {
            let q = qemu_img(&["info", s(&img)]);
            assert!(
                String::from_utf8_lossy(&q.stderr).contains(words),
                "qemu: {words}"
            );
        }
        assert_eq!(std::fs::read(&img).unwrap(), b, "nothing written");
    }
    // An L2 entry QEMU refuses too (not sector-aligned): a read error.
    std::fs::write(&img, &good).unwrap();
    qemu_io_ok(&["-f", "qcow", "-c", "write -P 1 0 4k", s(&img)]);
    let mut b = std::fs::read(&img).unwrap();
    b[0x1000..0x1008].copy_from_slice(&0x2010u64.to_be_bytes());
    std::fs::write(&img, &b).unwrap();
    let o = blk(&["io", "-c", "read 0 4k", s(&img)]);
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("read failed"), "{text}");
    let q = run(Command::new("qemu-io").args(["-f", "qcow", "-c", "read 0 4k", s(&img)]));
    assert!(
        String::from_utf8_lossy(&q.stdout).contains("read failed"),
        "{q:?}"
    );
}

#[test]
fn encrypted_images_are_described_and_refused_for_io() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("e.qcow");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow",
        "--object",
        "secret,id=s0,data=abc",
        "-o",
        "encrypt.format=aes,encrypt.key-secret=s0",
        s(&img),
        "1M",
    ]);
    let o = blk(&["io", "-c", "read 0 512", s(&img)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Parameter 'encrypt.key-secret' is required for cipher"),
        "{err}"
    );
    let b: serde_json::Value =
        serde_json::from_str(&blk_ok(&["info", "--output=json", s(&img)])).unwrap();
    assert_eq!(b["virtual-size"], 1 << 20);
    assert_eq!(b["format"], "qcow");
    let o = blk(&[
        "create",
        "-f",
        "qcow",
        "-o",
        "encryption=on",
        s(&dir.path().join("x.qcow")),
        "1M",
    ]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn operations_qcow_lacks_are_refused_in_qemus_words() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("u.qcow");
    let raw = dir.path().join("u.raw");
    qemu_img_ok(&["create", "-q", "-f", "qcow", s(&img), "1M"]);
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "1M"]);
    let before = std::fs::read(&img).unwrap();
    for args in [
        vec!["check", s(&img)],
        vec!["resize", s(&img), "+1M"],
        vec!["measure", "-O", "qcow", s(&raw)],
        vec!["amend", "-o", "size=2M", s(&img)],
    ] {
        let b = blk(&args);
        let q = qemu_img(&args);
        assert_eq!(b.status.code(), q.status.code(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&b.stderr).replace("blk:", "qemu-img:"),
            String::from_utf8_lossy(&q.stderr),
            "{args:?}"
        );
    }
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn mutated_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("m.raw");
    let img = dir.path().join("m.qcow");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "1M"]);
    qemu_io("raw", &raw, &["write -P 0x11 0 64k".to_string()]);
    // Compressed clusters (qemu-img 10 exits 1 here; see above), then plain ones.
    qemu_img(&["convert", "-c", "-O", "qcow", s(&raw), s(&img)]);
    qemu_io("qcow", &img, &["write -P 0x33 900k 20k".to_string()]);
    let rep = blk_tests::fuzz::run_on(&img, "qcow", 7, 200);
    assert!(rep.panics.is_empty(), "panics: {:#?}", rep.panics);
    assert!(rep.opened > 0 && rep.errors > 0, "{rep:?}");
}
