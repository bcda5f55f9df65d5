//! `blk measure` against `qemu-img measure`: the same numbers (human and
//! JSON) for empty images and for sources with data, zeros, holes, backing
//! chains and internal snapshots, under several qcow2 option sets; the same
//! errors and exit codes.

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

/// Sources: a qcow2 with data, a zeroed range and a hole; a raw file with
/// data; a qcow2 overlay on the first; a qcow2 with an internal snapshot
/// taken before more data was written.
fn sources(dir: &Path) -> Vec<String> {
    let q = dir.join("src.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&q), "10M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 1 0 100k",
        "-c",
        "write -z 1M 1M",
        "-c",
        "write -P 2 5M 64k",
        s(&q),
    ]);
    let r = dir.join("src.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&r), "10M"]);
    qemu_io_ok(&[
        "-f",
        "raw",
        "-c",
        "write -P 1 0 100k",
        "-c",
        "write -P 3 3M 8k",
        s(&r),
    ]);
    let top = dir.join("top.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "src.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    qemu_io_ok(&["-c", "write -P 4 8M 256k", s(&top)]);
    let sn = dir.join("snap.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&sn), "4M"]);
    qemu_io_ok(&["-c", "write -P 5 0 64k", s(&sn)]);
    qemu_img_ok(&["snapshot", "-c", "s1", s(&sn)]);
    qemu_io_ok(&["-c", "write -P 6 1M 1M", s(&sn)]);
    vec![
        s(&q).to_string(),
        s(&r).to_string(),
        s(&top).to_string(),
        s(&sn).to_string(),
    ]
}

#[test]
fn measure_size_matches_qemu_img() {
    for size in ["0", "1M", "10M", "1G", "1.5G", "100T"] {
        same(&["measure", "--size", size]);
        same(&["measure", "--size", size, "-O", "qcow2"]);
        same(&["measure", "--size", size, "-O", "qcow2", "--output=json"]);
        for o in [
            "cluster_size=4k",
            "cluster_size=2M",
            "preallocation=metadata",
            "preallocation=full",
            "refcount_bits=1",
            "refcount_bits=64",
            "extended_l2=on",
            "compat=0.10",
            "cluster_size=512,refcount_bits=8",
        ] {
            same(&["measure", "--size", size, "-O", "qcow2", "-o", o]);
        }
    }
    // --size wins over -o size.
    same(&["measure", "--size", "1M", "-O", "qcow2", "-o", "size=5M"]);
}

#[test]
fn measure_file_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for src in sources(dir.path()) {
        same(&["measure", &src]);
        same(&["measure", "-O", "raw", &src]);
        same(&["measure", "-O", "qcow2", &src]);
        same(&["measure", "-O", "qcow2", "--output=json", &src]);
        for o in [
            "cluster_size=4k",
            "cluster_size=1M",
            "preallocation=metadata",
            "preallocation=falloc",
            "compat=0.10",
            "extended_l2=on",
            "refcount_bits=32",
            "backing_file=x.qcow2,backing_fmt=qcow2",
        ] {
            same(&["measure", "-O", "qcow2", "-o", o, &src]);
        }
    }
}

#[test]
fn measure_snapshot_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let srcs = sources(dir.path());
    let sn = &srcs[3];
    for l in [
        "s1",
        "1",
        "snapshot.name=s1",
        "snapshot.id=1",
        "snapshot.id=1,snapshot.name=s1",
    ] {
        same(&["measure", "-O", "qcow2", "-l", l, sn]);
    }
}

#[test]
fn measure_errors_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let srcs = sources(dir.path());
    let (q, r, sn) = (&srcs[0], &srcs[1], &srcs[3]);
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--size", "1M", q],
        vec!["-f", "qcow2"],
        vec!["-l", "s1"],
        vec![q, r],
        vec!["--size", "x"],
        vec!["--size", "-1"],
        vec!["-O", "foo", "--size", "1M"],
        vec!["-O", "null-co", "--size", "1M"],
        vec!["-O", "file", "--size", "1M"],
        vec!["--output=xml", "--size", "1M"],
        vec!["--size", "1M", "-o", "help"],
        vec!["-O", "qcow2", "-o", "foo=bar", q],
        vec!["-O", "qcow2", "-l", "nosuch", sn],
        vec!["-O", "qcow2", "-l", "snapshot.name=nosuch", sn],
        vec!["-O", "qcow2", "-l", "snapshot.id=1,snapshot.name=other", sn],
        vec!["-O", "qcow2", "-l", "snapshot.foo=1", sn],
        vec!["-O", "qcow2", "-l", "s1", r],
    ];
    for c in cases {
        let mut args = vec!["measure"];
        args.extend_from_slice(&c);
        let (_, _, code) = same(&args);
        assert_eq!(code, 1, "{args:?}");
    }
    let missing = dir.path().join("missing");
    same(&["measure", "-O", "qcow2", s(&missing)]);
}
