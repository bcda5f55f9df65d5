//! qcow2 persistent dirty bitmaps against QEMU 10: bitmaps QEMU makes are
//! counted by `blk check` and survive blk's writes with the right dirty
//! bits; bitmaps blk makes are read by QEMU.
//!
//! The dirty-bit oracle is QEMU itself: `qemu-nbd -r -B NAME` exports the
//! bitmap as the `qemu:dirty-bitmap:NAME` meta context and `qemu-img map`
//! with the nbd driver's `x-dirty-bitmap` option reports dirty areas as
//! `"data": false`.

use blk_tests::{blk, blk_ok, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod bitmaps_common;
use bitmaps_common::{blk_plugins, outcome, qemu_bitmaps};

/// The dirty ranges `(start, end)` of bitmap `name` of `img`, as QEMU reads
/// them.
fn qemu_dirty(img: &Path, name: &str) -> Vec<(u64, u64)> {
    let sock = img.with_extension(format!("{name}.sock"));
    let _ = std::fs::remove_file(&sock);
    let mut nbd = Command::new("qemu-nbd")
        .args(["-r", "-f", "qcow2", "-B", name, "-k", s(&sock), s(img)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-nbd");
    let start = Instant::now();
    while !sock.exists() {
        if let Ok(Some(st)) = nbd.try_wait() {
            let mut e = String::new();
            use std::io::Read;
            nbd.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            panic!("qemu-nbd exited with {st}: {e}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "qemu-nbd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let opts = format!(
        "driver=nbd,server.type=unix,server.path={},x-dirty-bitmap=qemu:dirty-bitmap:{name}",
        s(&sock)
    );
    let out = qemu_img(&["map", "--output=json", "--image-opts", &opts]);
    let _ = nbd.kill();
    let _ = nbd.wait();
    let _ = std::fs::remove_file(&sock);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut r: Vec<(u64, u64)> = Vec::new();
    for e in v.as_array().unwrap() {
        if e["data"].as_bool() == Some(false) {
            let st = e["start"].as_u64().unwrap();
            let end = st + e["length"].as_u64().unwrap();
            match r.last_mut() {
                Some(l) if l.1 == st => l.1 = end,
                _ => r.push((st, end)),
            }
        }
    }
    r
}

/// `qemu-img check` must find nothing; returns its output.
fn qemu_check_clean(img: &Path) -> String {
    let out = qemu_img(&["check", s(img)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("No errors were found"),
        "qemu-img check {}: {text}{}",
        img.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A 64 MiB image with data, an enabled bitmap `b0` (64 KiB granularity)
/// and a disabled `b1` (128 KiB), made by QEMU, with some dirty bits
/// written by QEMU.
fn qemu_image(dir: &Path) -> PathBuf {
    let img = dir.join("q.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "64M"]);
    qemu_io_ok(&["-c", "write -P 7 0 1M", s(&img)]);
    qemu_img_ok(&["bitmap", "--add", s(&img), "b0"]);
    qemu_img_ok(&["bitmap", "--add", "-g", "128k", "--disable", s(&img), "b1"]);
    qemu_io_ok(&["-c", "write -P 8 8M 4k", s(&img)]);
    img
}

/// Starts `blk io` writing 4 KiB at 0 and then sleeping
/// `sleep_ms`, and returns once the write is done (its "wrote" line is
/// out): the in-use flags are then wholly on disk. Polling the image
/// instead can see them too early: a reader may take the header from before
/// the writer clears the autoclear bit and the directory from after it
/// rewrites it in place.
fn start_blk_io_writer(img: &Path, sleep_ms: &str) -> std::process::Child {
    use std::io::BufRead;
    let sleep = format!("sleep {sleep_ms}");
    let mut child = Command::new(blk_tests::blk_bin())
        .args(["io", "-c", "write 0 4k", "-c", &sleep, s(img)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("wrote") {
        line.clear();
    }
    assert!(line.contains("wrote"), "blk io did not write");
    // Keep the pipe open behind the child (it may print more).
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// Waits until the first bitmap of `img` shows the in-use flag (a writer
/// has it open).
fn wait_in_use(img: &Path) {
    let start = Instant::now();
    loop {
        let bm = qemu_bitmaps(img);
        if bm.first().is_some_and(|b| b["flags"][0] == "in-use") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no writer marked {img:?} in use"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_counts_qemu_bitmaps_and_repair_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    // Item 6: no false leak alarm.
    let q = qemu_check_clean(&img);
    let b = blk(&["check", s(&img)]);
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&b.stdout), q);
    // Item 5: repair frees nothing of the bitmaps.
    for mode in ["leaks", "all"] {
        let b = blk(&["check", "-r", mode, s(&img)]);
        assert_eq!(b.status.code(), Some(0));
        qemu_check_clean(&img);
        assert_eq!(qemu_bitmaps(&img).len(), 2);
        assert_eq!(qemu_dirty(&img, "b0"), vec![(8 << 20, (8 << 20) + 65536)]);
    }
    // QEMU can still write (no overlap with the bitmap directory).
    qemu_io_ok(&["-c", "write -P 9 16M 1M", s(&img)]);
    qemu_check_clean(&img);
    assert_eq!(
        qemu_dirty(&img, "b0"),
        vec![(8 << 20, (8 << 20) + 65536), (16 << 20, 17 << 20)]
    );
}

#[test]
fn blk_writes_set_the_dirty_bits_qemu_reads() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    blk_ok(&[
        "io",
        "-c",
        "write -P 1 1M 4k",
        "-c",
        "write -z 3M 128k",
        "-c",
        "discard 32M 1M",
        "-c",
        "write -P 2 63M 1M",
        s(&img),
    ]);
    qemu_check_clean(&img);
    let bm = qemu_bitmaps(&img);
    assert_eq!(bm.len(), 2);
    assert_eq!(bm[0]["name"], "b0");
    assert_eq!(bm[0]["flags"], serde_json::json!(["auto"]));
    assert_eq!(bm[1]["flags"], serde_json::json!([]));
    assert_eq!(
        qemu_dirty(&img, "b0"),
        vec![
            (1 << 20, (1 << 20) + 65536),
            (3 << 20, (3 << 20) + 131072),
            (8 << 20, (8 << 20) + 65536),
            (32 << 20, 33 << 20),
            (63 << 20, 64 << 20),
        ]
    );
    // The disabled bitmap did not change.
    assert_eq!(qemu_dirty(&img, "b1"), vec![]);
    // Data is intact and QEMU keeps tracking on top.
    qemu_io_ok(&["-c", "read -P 7 0 1M", "-c", "read -P 1 1M 4k", s(&img)]);
    qemu_io_ok(&["-c", "write 40M 512", s(&img)]);
    qemu_check_clean(&img);
    assert!(qemu_dirty(&img, "b0").contains(&(40 << 20, (40 << 20) + 65536)));
}

/// `blk info` prints what `qemu-img info` prints (human and JSON).
fn same_info(img: &Path) {
    for out in ["human", "json"] {
        let o = format!("--output={out}");
        let q = qemu_img_ok(&["info", "-U", &o, s(img)]);
        let b = blk_ok(&["info", "-U", &o, s(img)]);
        assert_eq!(q, b, "{out}");
    }
}

#[test]
fn in_use_while_open_and_cleared_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    let mut child = start_blk_io_writer(&img, "1500");
    wait_in_use(&img);
    let bm = qemu_bitmaps(&img);
    assert_eq!(bm[0]["flags"], serde_json::json!(["in-use", "auto"]));
    assert_eq!(bm[1]["flags"], serde_json::json!(["in-use"]));
    same_info(&img);
    assert!(child.wait().unwrap().success());
    let bm = qemu_bitmaps(&img);
    assert_eq!(bm[0]["flags"], serde_json::json!(["auto"]));
    same_info(&img);
    qemu_check_clean(&img);
}

#[test]
fn a_bitmap_left_in_use_stays_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    // Kill a writer: the directory keeps the in-use flags.
    let mut child = start_blk_io_writer(&img, "30000");
    wait_in_use(&img);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        qemu_bitmaps(&img)[0]["flags"],
        serde_json::json!(["in-use", "auto"])
    );
    // blk keeps them as they are (check is clean, writes leave them alone).
    blk_ok(&["io", "-c", "write 5M 4k", s(&img)]);
    qemu_check_clean(&img);
    let o = blk_ok(&["check", s(&img)]);
    assert!(o.contains("No errors were found"), "{o}");
    assert_eq!(
        qemu_bitmaps(&img)[0]["flags"],
        serde_json::json!(["in-use", "auto"])
    );
    // QEMU agrees that they can only be removed.
    qemu_img_ok(&["bitmap", "--remove", s(&img), "b0"]);
    qemu_check_clean(&img);
}

#[test]
fn hostile_bitmap_extension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    let data = std::fs::read(&img).unwrap();
    let ext = data
        .windows(4)
        .position(|w| w == [0x23, 0x85, 0x28, 0x75])
        .expect("bitmaps extension");
    let field = |off: usize, bytes: &[u8]| {
        let mut d = data.clone();
        d[ext + 8 + off..ext + 8 + off + bytes.len()].copy_from_slice(bytes);
        d
    };
    let cases = [
        field(0, &0xffff_ffffu32.to_be_bytes()), // nb_bitmaps
        field(4, &1u32.to_be_bytes()),           // reserved
        field(8, &u64::MAX.to_be_bytes()),       // directory size
        field(8, &(1u64 << 25).to_be_bytes()),   // past the end
        field(16, &(!0xffffu64).to_be_bytes()),  // directory offset
        field(16, &0x1234u64.to_be_bytes()),     // unaligned
    ];
    for (i, d) in cases.iter().enumerate() {
        let p = dir.path().join(format!("h{i}.qcow2"));
        std::fs::write(&p, d).unwrap();
        let o = blk(&["info", s(&p)]);
        assert_eq!(o.status.code(), Some(1), "case {i}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("bitmap"), "case {i}: {e}");
        assert_eq!(std::fs::read(&p).unwrap(), *d, "case {i} changed the file");
    }
}

fn format_specific(img: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img_ok(&["info", "--output=json", s(img)])).unwrap();
    v["format-specific"].clone()
}

#[test]
fn blk_bitmap_matches_qemu_img_bitmap() {
    let dir = tempfile::tempdir().unwrap();
    let base = qemu_image(dir.path());
    let other = dir.path().join("other.qcow2");
    std::fs::copy(&base, &other).unwrap();
    let cases: &[&[&str]] = &[
        &["--add", "IMG", "new"],
        &["--add", "-g", "1M", "IMG", "new"],
        &["--add", "--disable", "IMG", "new"],
        &["--add", "-g", "2G", "IMG", "new"],
        &["--remove", "IMG", "b0"],
        &["--remove", "IMG", "nope"],
        &["--clear", "IMG", "b0"],
        &["--disable", "IMG", "b0"],
        &["--enable", "IMG", "b1"],
        &["--merge", "b0", "IMG", "b1"],
        &["--merge", "nope", "IMG", "b1"],
        &["--merge", "b0", "-b", "OTHER", "-F", "qcow2", "IMG", "b1"],
        &["--add", "IMG", "b0"],
        &["--add", "--add", "IMG", "zz"],
        &["--remove", "--add", "IMG", "b0"],
        &["--add", "IMG", "a", "--add"],
        &["IMG", "b0"],
        &["--add", "IMG"],
        &["-g", "64k", "--clear", "IMG", "b0"],
        &["-b", "OTHER", "--clear", "IMG", "b0"],
        &["-F", "qcow2", "--add", "IMG", "b0"],
        &["--add", "-g", "1000", "IMG", "x"],
        &["--add", "-g", "abc", "IMG", "x"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let q = dir.path().join(format!("q{i}.qcow2"));
        let b = dir.path().join(format!("b{i}.qcow2"));
        std::fs::copy(&base, &q).unwrap();
        std::fs::copy(&base, &b).unwrap();
        let with = |img: &Path| -> Vec<String> {
            let mut v = vec!["bitmap".to_string()];
            v.extend(args.iter().map(|a| match *a {
                "IMG" => s(img).to_string(),
                "OTHER" => s(&other).to_string(),
                x => x.to_string(),
            }));
            v
        };
        let qa = with(&q);
        let ba = with(&b);
        let qo = outcome(
            &qemu_img(&qa.iter().map(String::as_str).collect::<Vec<_>>()),
            s(&q),
        );
        let bo = outcome(
            &blk(&ba.iter().map(String::as_str).collect::<Vec<_>>()),
            s(&b),
        );
        assert_eq!(qo, bo, "case {i}: {args:?}");
        assert_eq!(
            format_specific(&q),
            format_specific(&b),
            "case {i}: {args:?}"
        );
        qemu_check_clean(&b);
    }
}

#[test]
fn bitmaps_blk_makes_are_read_by_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("b.qcow2");
    blk_ok(&["create", "-q", "-f", "qcow2", s(&img), "64M"]);
    blk_ok(&["bitmap", "--add", s(&img), "full"]);
    blk_ok(&["bitmap", "--add", "-g", "4k", s(&img), "fine"]);
    qemu_check_clean(&img);
    assert_eq!(qemu_dirty(&img, "full"), vec![]);
    blk_ok(&[
        "io",
        "-c",
        "write -P 3 100k 10k",
        "-c",
        "write 60M 4k",
        s(&img),
    ]);
    qemu_check_clean(&img);
    assert_eq!(
        qemu_dirty(&img, "full"),
        vec![(65536, 131072), (60 << 20, (60 << 20) + 65536)]
    );
    assert_eq!(
        qemu_dirty(&img, "fine"),
        vec![(102400, 114688), (60 << 20, (60 << 20) + 4096)]
    );
    // Disable, write, merge, clear: the usual incremental backup steps.
    blk_ok(&["bitmap", "--disable", s(&img), "full"]);
    blk_ok(&["io", "-c", "write 30M 4k", s(&img)]);
    assert_eq!(
        qemu_dirty(&img, "full"),
        vec![(65536, 131072), (60 << 20, (60 << 20) + 65536)]
    );
    blk_ok(&["bitmap", "--merge", "fine", s(&img), "full"]);
    assert_eq!(
        qemu_dirty(&img, "full"),
        vec![
            (65536, 131072),
            (30 << 20, (30 << 20) + 65536),
            (60 << 20, (60 << 20) + 65536)
        ]
    );
    blk_ok(&["bitmap", "--clear", s(&img), "fine"]);
    assert_eq!(qemu_dirty(&img, "fine"), vec![]);
    qemu_check_clean(&img);
    // QEMU writes on and tracks into the bitmap blk made.
    qemu_io_ok(&["-c", "write 1M 4k", s(&img)]);
    assert_eq!(qemu_dirty(&img, "fine"), vec![(1 << 20, (1 << 20) + 4096)]);
    // Removal frees everything.
    blk_ok(&["bitmap", "--remove", s(&img), "fine"]);
    blk_ok(&["bitmap", "--remove", s(&img), "full"]);
    assert!(qemu_bitmaps(&img).is_empty());
    qemu_check_clean(&img);
}

#[test]
fn bitmaps_through_the_plugin_abi() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(blk_plugins(&[
        "bitmap",
        "--add",
        "-g",
        "512k",
        s(&img),
        "p",
    ]));
    ok(blk_plugins(&["io", "-c", "write 2M 4k", s(&img)]));
    let o = blk_plugins(&["bitmap", "--add", s(&img), "p"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "blk: Operation add on bitmap p failed: Bitmap already exists: p\n"
    );
    assert!(ok(blk_plugins(&["check", s(&img)])).contains("No errors were found"));
    let info = ok(blk_plugins(&["info", "--output=json", s(&img)]));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["format-specific"], format_specific(&img));
    assert_eq!(
        qemu_dirty(&img, "p"),
        vec![(2 << 20, (2 << 20) + (512 << 10))]
    );
    qemu_check_clean(&img);
}

/// Runs qemu-img and blk with the same arguments on copies (`IMG` stands
/// for the image, `OUT` for a file name of each tool's own); compares
/// messages and exit codes, returns the two copies.
fn same_on_copies(dir: &Path, src: &Path, tag: &str, args: &[&str]) -> (PathBuf, PathBuf) {
    let q = dir.join(format!("{tag}-q.qcow2"));
    let b = dir.join(format!("{tag}-b.qcow2"));
    std::fs::copy(src, &q).unwrap();
    std::fs::copy(src, &b).unwrap();
    let qout = dir.join(format!("{tag}-qout.qcow2"));
    let bout = dir.join(format!("{tag}-bout.qcow2"));
    let with = |img: &Path, out: &Path| -> Vec<String> {
        args.iter()
            .map(|a| match *a {
                "IMG" => s(img).to_string(),
                "OUT" => s(out).to_string(),
                x => x.to_string(),
            })
            .collect()
    };
    let qa = with(&q, &qout);
    let ba = with(&b, &bout);
    let qo = outcome(
        &qemu_img(&qa.iter().map(String::as_str).collect::<Vec<_>>()),
        s(&q),
    );
    let bo = outcome(
        &blk(&ba.iter().map(String::as_str).collect::<Vec<_>>()),
        s(&b),
    );
    let norm = |t: String, out: &Path| {
        t.replace(s(out), "OUT")
            .replace("-qout", "")
            .replace("-bout", "")
    };
    assert_eq!(
        (norm(qo.0, &qout), qo.1),
        (norm(bo.0, &bout), bo.1),
        "{args:?}"
    );
    if args.contains(&"OUT") {
        (qout, bout)
    } else {
        (q, b)
    }
}

#[test]
fn resize_keeps_bitmaps_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    qemu_io_ok(&["-c", "write 60M 4M", s(&img)]);
    for (tag, args) in [
        ("grow", &["resize", "IMG", "+1000k"][..]),
        ("shrink", &["resize", "--shrink", "IMG", "32M"][..]),
    ] {
        let (q, b) = same_on_copies(dir.path(), &img, tag, args);
        qemu_check_clean(&b);
        assert_eq!(format_specific(&q), format_specific(&b));
        for name in ["b0", "b1"] {
            assert_eq!(qemu_dirty(&q, name), qemu_dirty(&b, name), "{tag} {name}");
        }
    }
    // An inconsistent bitmap blocks the resize (same message and status).
    let mut child = Command::new("qemu-io")
        .args(["-c", "write 0 4k", "-c", "sleep 30000", s(&img)])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_in_use(&img);
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, b) = same_on_copies(dir.path(), &img, "broken", &["resize", "IMG", "+1M"]);
    assert_eq!(std::fs::read(&b).unwrap(), std::fs::read(&img).unwrap());
}

#[test]
fn snapshots_amend_and_commit_keep_bitmaps() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    // Snapshot create through blk keeps every bitmap; revert is refused
    // while bitmaps exist (QEMU: "Device has active dirty bitmaps").
    let (q, b) = same_on_copies(dir.path(), &img, "snap", &["snapshot", "-c", "s1", "IMG"]);
    qemu_check_clean(&b);
    assert_eq!(qemu_bitmaps(&b), qemu_bitmaps(&q));
    assert_eq!(qemu_dirty(&b, "b0"), qemu_dirty(&q, "b0"));
    same_on_copies(dir.path(), &b, "apply", &["snapshot", "-a", "s1", "IMG"]);
    same_on_copies(dir.path(), &b, "delete", &["snapshot", "-d", "s1", "IMG"]);
    // Amend: lazy refcounts on, then the downgrade QEMU 10 accepts (the
    // v2 image's bitmaps are then ignored and leak, as with QEMU).
    let (q, b) = same_on_copies(
        dir.path(),
        &img,
        "lazy",
        &["amend", "-o", "lazy_refcounts=on", "IMG"],
    );
    qemu_check_clean(&b);
    assert_eq!(qemu_bitmaps(&b), qemu_bitmaps(&q));
    let (q, b) = same_on_copies(
        dir.path(),
        &img,
        "v2",
        &["amend", "-o", "compat=0.10", "IMG"],
    );
    let qc = outcome(&qemu_img(&["check", s(&q)]), s(&q));
    let bc = outcome(&qemu_img(&["check", s(&b)]), s(&b));
    assert_eq!(qc, bc);
    // Commit: the base's enabled bitmap sees the committed range; the top's
    // bitmap keeps its bits (make_empty is not a guest write).
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "64M"]);
    qemu_img_ok(&["bitmap", "--add", s(&base), "bb"]);
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
    ]);
    qemu_img_ok(&["bitmap", "--add", s(&top), "tb"]);
    qemu_io_ok(&["-c", "write -P 5 2M 64k", "-c", "write -P 6 9M 1k", s(&top)]);
    blk_ok(&["commit", s(&top)]);
    qemu_check_clean(&base);
    qemu_check_clean(&top);
    let want = vec![(2 << 20, (2 << 20) + 65536), (9 << 20, (9 << 20) + 65536)];
    assert_eq!(qemu_dirty(&base, "bb"), want);
    assert_eq!(qemu_dirty(&top, "tb"), want);
    qemu_io_ok(&["-c", "read -P 6 9M 1k", s(&base)]);
}

#[test]
fn measure_counts_bitmaps_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("m.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        s(&img),
        "1G",
    ]);
    qemu_img_ok(&["bitmap", "--add", s(&img), "x"]);
    qemu_img_ok(&[
        "bitmap",
        "--add",
        "-g",
        "512",
        s(&img),
        "a-long-name-for-a-bitmap",
    ]);
    qemu_img_ok(&["bitmap", "--add", "-g", "2M", s(&img), "y"]);
    qemu_io_ok(&["-c", "write 0 1M", s(&img)]);
    let v2 = dir.path().join("v2.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        s(&v2),
        "1M",
    ]);
    let raw = dir.path().join("r.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "1M"]);
    for args in [
        &["measure", "-O", "qcow2", s(&img)][..],
        &["measure", "--output=json", "-O", "qcow2", s(&img)][..],
        &["measure", "-O", "qcow2", "-o", "cluster_size=2M", s(&img)][..],
        &["measure", "-O", "qcow2", "-o", "cluster_size=512", s(&img)][..],
        &["measure", "-O", "qcow2", "-o", "compat=0.10", s(&img)][..],
        &["measure", "-O", "raw", s(&img)][..],
        &["measure", "-O", "qcow2", s(&v2)][..],
        &["measure", "-O", "qcow2", "-f", "raw", s(&raw)][..],
    ] {
        let q = qemu_img(args);
        let b = blk(args);
        assert_eq!(
            String::from_utf8_lossy(&q.stdout),
            String::from_utf8_lossy(&b.stdout),
            "{args:?}"
        );
        assert_eq!(q.status.code(), b.status.code());
    }
}

#[test]
fn convert_bitmaps_as_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    qemu_img_ok(&["bitmap", "--add", "-g", "1M", s(&img), "third"]);
    qemu_io_ok(&["-c", "write 20M 100k", s(&img)]);
    for (tag, args) in [
        (
            "plain",
            &["convert", "--bitmaps", "-O", "qcow2", "IMG", "OUT"][..],
        ),
        (
            "small",
            &[
                "convert",
                "--bitmaps",
                "-O",
                "qcow2",
                "-o",
                "cluster_size=4k",
                "IMG",
                "OUT",
            ][..],
        ),
    ] {
        let (q, b) = same_on_copies(dir.path(), &img, tag, args);
        qemu_check_clean(&b);
        assert_eq!(qemu_bitmaps(&q), qemu_bitmaps(&b), "{tag}");
        for name in ["b0", "b1", "third"] {
            assert_eq!(qemu_dirty(&q, name), qemu_dirty(&b, name), "{tag} {name}");
        }
        assert!(qemu_img(&["compare", s(&q), s(&b)]).status.success());
    }
    // Refusals: raw or v2 targets, a raw source, several sources, a
    // missing --bitmaps, an existing bitmap in a -n target.
    let raw = dir.path().join("src.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "1M"]);
    let existing = dir.path().join("existing.qcow2");
    std::fs::copy(&img, &existing).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["convert", "--bitmaps", "-O", "raw", "IMG", "OUT"],
        vec![
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "-o",
            "compat=0.10",
            "IMG",
            "OUT",
        ],
        vec![
            "convert",
            "--bitmaps",
            "-O",
            "qcow2",
            "-f",
            "raw",
            s(&raw),
            "OUT",
        ],
        vec!["convert", "--bitmaps", "-O", "qcow2", "IMG", "IMG", "OUT"],
        vec![
            "convert",
            "--skip-broken-bitmaps",
            "-O",
            "qcow2",
            "IMG",
            "OUT",
        ],
        vec![
            "convert",
            "--bitmaps",
            "-n",
            "-O",
            "qcow2",
            "IMG",
            s(&existing),
        ],
    ];
    for (i, c) in cases.iter().enumerate() {
        same_on_copies(dir.path(), &img, &format!("refuse{i}"), c);
    }
}

#[test]
fn incremental_backup_from_qemu_bitmap_after_blk_writes() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("inc.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "32M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 0x11 0 8M",
        "-c",
        "write -P 0x22 20M 4M",
        s(&img),
    ]);
    // Full backup, then start tracking (as a backup tool does).
    let full = dir.path().join("full.raw");
    qemu_img_ok(&["convert", "-O", "raw", s(&img), s(&full)]);
    qemu_img_ok(&["bitmap", "--add", "-g", "16k", s(&img), "inc"]);
    // Seeded guest activity through blk: writes, zero writes, discards.
    let mut r = blk_tests::rng(0xb17);
    let mut cmds = Vec::new();
    for i in 0..40 {
        let off = r.gen_range(0..(32u64 << 20) - 300_000) / 512 * 512;
        let len = r.gen_range(1..600u64) * 512;
        cmds.push(match i % 5 {
            3 => format!("write -z {off} {len}"),
            4 => format!("discard {off} {len}"),
            _ => format!("write -P {} {off} {len}", i + 1),
        });
    }
    let mut args = vec!["io".to_string()];
    for c in &cmds {
        args.push("-c".into());
        args.push(c.clone());
    }
    args.push(s(&img).to_string());
    blk_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    qemu_check_clean(&img);
    // Apply only the ranges QEMU reports dirty to the old full backup.
    let now = dir.path().join("now.raw");
    qemu_img_ok(&["convert", "-O", "raw", s(&img), s(&now)]);
    let cur = std::fs::read(&now).unwrap();
    let mut backup = std::fs::read(&full).unwrap();
    let dirty = qemu_dirty(&img, "inc");
    assert!(!dirty.is_empty());
    for (a, b) in dirty {
        backup[a as usize..b as usize].copy_from_slice(&cur[a as usize..b as usize]);
    }
    assert!(backup == cur, "a change lies outside the dirty ranges");
}

#[test]
fn bitmaps_follow_a_migration_handoff() {
    use plugin_host::{Host, OpenOptions};
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    let h = Host::builder().env_plugin_path(false).build().unwrap();
    let opts = |inactive| OpenOptions {
        format: Some("qcow2".into()),
        inactive,
        ..Default::default()
    };
    let src = h.open(s(&img), &opts(false)).unwrap();
    let dst = h.open(s(&img), &opts(true)).unwrap();
    src.write(1 << 20, &[1u8; 4096]).unwrap();
    assert_eq!(
        qemu_bitmaps(&img)[0]["flags"],
        serde_json::json!(["in-use", "auto"])
    );
    // Handoff: the source stores the bitmaps, the destination takes them.
    src.inactivate().unwrap();
    assert_eq!(qemu_bitmaps(&img)[0]["flags"], serde_json::json!(["auto"]));
    qemu_check_clean(&img);
    dst.activate().unwrap();
    assert_eq!(
        qemu_bitmaps(&img)[0]["flags"],
        serde_json::json!(["in-use", "auto"])
    );
    dst.write(2 << 20, &[2u8; 4096]).unwrap();
    drop(dst);
    drop(src);
    qemu_check_clean(&img);
    assert_eq!(
        qemu_dirty(&img, "b0"),
        vec![
            (1 << 20, (1 << 20) + 65536),
            (2 << 20, (2 << 20) + 65536),
            (8 << 20, (8 << 20) + 65536),
        ]
    );
}

#[test]
fn invalidate_and_reactivation_keep_the_bits() {
    let dir = tempfile::tempdir().unwrap();
    let img = qemu_image(dir.path());
    blk_ok(&[
        "io",
        "-c",
        "write 0 4k",
        "-c",
        "invalidate",
        "-c",
        "write 1M 4k",
        "-c",
        "inactivate",
        "-c",
        "activate",
        "-c",
        "write 2M 4k",
        s(&img),
    ]);
    qemu_check_clean(&img);
    assert_eq!(qemu_bitmaps(&img)[0]["flags"], serde_json::json!(["auto"]));
    assert_eq!(
        qemu_dirty(&img, "b0"),
        vec![
            (0, 65536),
            (1 << 20, (1 << 20) + 65536),
            (2 << 20, (2 << 20) + 65536),
            (8 << 20, (8 << 20) + 65536),
        ]
    );
}
