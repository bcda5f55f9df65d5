//! `blk dd` against `qemu-img dd`: the same output images (size and bytes)
//! for bs/count/skip combinations and output formats; the same messages
//! and exit codes for bad operands.

use blk_tests::{blk, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::Path;

/// Stdout, stderr without the program prefix and directory, exit code.
fn norm(o: &std::process::Output, dir: &Path) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr)
            .replace(s(dir), "DIR")
            .replace("qemu-img: ", "")
            .replace("blk: ", "")
            .replace("qemu-img", "blk"),
        o.status.code().unwrap_or(-1),
    )
}

/// The guest-visible bytes of an image.
fn content(path: &Path, fmt: &str, dir: &Path) -> Vec<u8> {
    let raw = dir.join("content.raw");
    qemu_img_ok(&["convert", "-f", fmt, "-O", "raw", s(path), s(&raw)]);
    std::fs::read(&raw).unwrap()
}

/// Runs `dd ARGS if=SRC of=OUT` with both tools and compares everything.
fn same_dd(dir: &Path, src: &Path, out_fmt: &str, args: &[&str]) -> i32 {
    let q = dir.join(format!("q.{out_fmt}"));
    let b = dir.join(format!("b.{out_fmt}"));
    let _ = std::fs::remove_file(&q);
    let _ = std::fs::remove_file(&b);
    let run = |tool: fn(&[&str]) -> std::process::Output, out: &Path| {
        let iff = format!("if={}", s(src));
        let off = format!("of={}", s(out));
        let mut a = vec!["dd", "-O", out_fmt];
        a.extend_from_slice(args);
        a.push(&iff);
        a.push(&off);
        norm(&tool(&a), dir)
    };
    let qo = run(qemu_img, &q);
    let bo = run(blk, &b);
    assert_eq!(qo, bo, "{args:?} -O {out_fmt}");
    assert_eq!(q.exists(), b.exists(), "{args:?}");
    if q.exists() {
        assert_eq!(
            content(&q, out_fmt, dir),
            content(&b, out_fmt, dir),
            "{args:?} -O {out_fmt}"
        );
        if out_fmt == "raw" {
            let len = |p: &Path| std::fs::metadata(p).unwrap().len();
            assert_eq!(len(&q), len(&b), "{args:?}");
        }
    }
    bo.2
}

fn source(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&src), "1M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 3 0 300k",
        "-c",
        "write -P 4 512k 4k",
        "-c",
        "write -P 5 1020k 4k",
        s(&src),
    ]);
    src
}

#[test]
fn dd_copies_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    for args in [
        vec![],
        vec!["bs=4k"],
        vec!["bs=1M"],
        vec!["bs=4k", "count=10"],
        vec!["bs=4k", "count=10", "skip=3"],
        vec!["bs=4k", "skip=100"],
        vec!["bs=4k", "skip=256"],
        vec!["bs=64k", "count=100"],
        vec!["bs=1.5k", "count=100"],
        vec!["count=0"],
        vec!["bs=0x1000", "count=010"],
    ] {
        for fmt in ["raw", "qcow2"] {
            assert_eq!(same_dd(dir.path(), &src, fmt, &args), 0, "{args:?}");
        }
    }
    // Skipping past the end: a warning, an empty image, exit status 0.
    assert_eq!(same_dd(dir.path(), &src, "raw", &["bs=4k", "skip=1000"]), 0);
    assert_eq!(
        same_dd(dir.path(), &src, "raw", &["-f", "qcow2", "-U", "bs=256k"]),
        0
    );
}

#[test]
fn dd_errors_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    for args in [
        vec!["bs=0"],
        vec!["bs=x"],
        vec!["bs=-1"],
        vec!["bs=3G"],
        vec!["count=x"],
        vec!["count=1k"],
        vec!["count=-1"],
        vec!["skip=x"],
        vec!["skip=-1"],
        vec!["foo"],
        vec!["foo=bar"],
        vec!["bs=4k", "count=1", "-f", "foo"],
    ] {
        assert_eq!(same_dd(dir.path(), &src, "raw", &args), 1, "{args:?}");
    }
    assert_eq!(same_dd(dir.path(), &src, "foo", &[]), 1);
    assert_eq!(same_dd(dir.path(), &src, "null-co", &[]), 1);
    let missing = dir.path().join("missing");
    assert_eq!(same_dd(dir.path(), &missing, "raw", &[]), 1);
    for args in [vec!["dd"], vec!["dd", "if=x"], vec!["dd", "of=x"]] {
        let q = norm(&qemu_img(&args), dir.path());
        let b = norm(&blk(&args), dir.path());
        assert_eq!(q, b, "{args:?}");
        assert_eq!(b.2, 1);
    }
}
