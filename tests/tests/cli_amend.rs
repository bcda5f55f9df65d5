//! `blk amend` against `qemu-img amend`: option checking messages and exit
//! codes match; after amending, `qemu-img info` shows the same change as
//! after qemu-img's amend, `qemu-img check` is clean and the data is intact.

use blk_tests::{blk, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::Path;

/// Stdout, stderr without the program prefix, exit code.
fn norm(o: &std::process::Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr)
            .replace("qemu-img: ", "")
            .replace("blk: ", "")
            .replace("qemu-img", "blk"),
        o.status.code().unwrap_or(-1),
    )
}

fn same(args: &[&str]) -> (String, String, i32) {
    let q = norm(&qemu_img(args));
    let b = norm(&blk(args));
    assert_eq!(q, b, "qemu-img vs blk {args:?}");
    b
}

/// A 4 MiB qcow2 image (create options `opts`) with some data.
fn image(path: &Path, opts: &str) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([s(path), "4M"]);
    qemu_img_ok(&args);
    qemu_io_ok(&[
        "-c",
        "write -P 7 0 128k",
        "-c",
        "write -P 8 1M 64k",
        s(path),
    ]);
}

/// The parts of `qemu-img info` that amend changes.
fn info(path: &Path) -> serde_json::Value {
    let text = qemu_img_ok(&["info", "--output=json", s(path)]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::json!({
        "virtual-size": v["virtual-size"],
        "cluster-size": v["cluster-size"],
        "format-specific": v["format-specific"],
    })
}

#[test]
fn amend_changes_match_qemu_img() {
    let cases: &[(&str, &str)] = &[
        ("", "compat=0.10"),
        ("compat=0.10", "compat=1.1"),
        ("compat=0.10", "compat=v3"),
        ("", "lazy_refcounts=on"),
        ("lazy_refcounts=on", "lazy_refcounts=off"),
        ("", "refcount_bits=1"),
        ("", "refcount_bits=64"),
        ("refcount_bits=8", "refcount_bits=16"),
        ("", "size=8M"),
        ("", "size=2M"),
        ("", "compat=1.1,lazy_refcounts=on,refcount_bits=32"),
    ];
    for (create, amend) in cases {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q.qcow2");
        let b = dir.path().join("b.qcow2");
        image(&q, create);
        image(&b, create);
        let qo = norm(&qemu_img(&["amend", "-o", amend, s(&q)]));
        let bo = norm(&blk(&["amend", "-o", amend, s(&b)]));
        assert_eq!(qo, bo, "create {create:?} amend {amend:?}");
        assert_eq!(bo.2, 0, "create {create:?} amend {amend:?}: {bo:?}");
        assert_eq!(info(&q), info(&b), "create {create:?} amend {amend:?}");
        qemu_img_ok(&["check", s(&b)]);
        let c = qemu_img(&["compare", s(&q), s(&b)]);
        assert!(
            c.status.success(),
            "create {create:?} amend {amend:?}: {c:?}"
        );
    }
}

#[test]
fn amend_quiet_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.qcow2");
    image(&b, "");
    same(&[
        "amend",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on",
        s(&b),
    ]);
    let v = info(&b);
    assert_eq!(v["format-specific"]["data"]["lazy-refcounts"], true);
}

#[test]
fn amend_help_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.qcow2");
    image(&b, "");
    // blk's qcow2 has no encryption: its lines are a subset of qemu-img's.
    let q = norm(&qemu_img(&["amend", "-f", "qcow2", "-o", "help"]));
    for args in [
        vec!["amend", "-f", "qcow2", "-o", "help"],
        vec!["amend", "-o", "help", s(&b)],
    ] {
        let (out, err, code) = norm(&blk(&args));
        assert_eq!((err.as_str(), code), ("", 0), "{args:?}");
        assert!(out.starts_with("Amend options for 'qcow2':\n"), "{out}");
        for line in out.lines() {
            assert!(
                q.0.lines().any(|l| l == line),
                "{line:?} not in qemu-img's help"
            );
        }
        assert!(out.contains("  compat=<str>"), "{out}");
    }
}

#[test]
fn amend_errors_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.qcow2");
    image(&b, "");
    let r = dir.path().join("r.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&r), "1M"]);
    let missing = dir.path().join("missing");
    let f = s(&b);
    let cases: Vec<Vec<&str>> = vec![
        vec![f],
        vec!["-o", "compat=0.10"],
        vec!["-o", "compat=0.10", f, f],
        vec!["-f", "raw", "-o", "help"],
        vec!["-f", "foo", "-o", "help"],
        vec!["-f", "raw", "-o", "size=2M", s(&r)],
        vec!["-o", "compat=0.10", "-t", "foo", f],
        vec!["-o", "lazy_refcounts=on", s(&missing)],
        vec!["-o", "foo=bar", f],
        vec!["-o", "cluster_size=4k", f],
        vec!["-o", "lazy_refcounts=maybe", f],
        vec!["-o", "refcount_bits=x", f],
        vec!["-o", "size=x", f],
    ];
    for c in cases {
        let mut args = vec!["amend"];
        args.extend_from_slice(&c);
        let (_, _, code) = same(&args);
        assert_eq!(code, 1, "{args:?}");
    }
    qemu_img_ok(&["check", f]);
}
