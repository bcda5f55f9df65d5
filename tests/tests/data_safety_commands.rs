//! The other commands that change images (docs/data-safety.md): when
//! `amend`, `resize`, `snapshot`, `rebase`, `commit` or `bitmap` fails,
//! every file is byte-identical to before, and blk's exit code and stderr
//! are qemu-img's. qemu-img runs each case on a twin directory: where it
//! opened the image read-write before failing, it has rewritten the
//! bitmap directory (it marks bitmaps in use at the open and stores them
//! at the close); blk sets those flags only before its first change.

mod safety_common;

use blk_tests::{blk_bin, qemu_img_ok, qemu_io_ok, s};
use safety_common::{assert_same_failure, run_bounded, snapshot, Immutable};
use std::path::Path;

/// The images of a case: `t.qcow2` with data, a snapshot and a persistent
/// bitmap; `t.raw`; `top.qcow2` over `base.qcow2`; `immut.qcow2`
/// (immutable); `immtop.qcow2` over the immutable `immbase.qcow2`.
fn fixture(dir: &Path) {
    let p = |n: &str| s(&dir.join(n)).to_string();
    qemu_img_ok(&["create", "-q", "-f", "qcow2", &p("t.qcow2"), "16M"]);
    qemu_io_ok(&["-c", "write -P 0x11 0 1M", &p("t.qcow2")]);
    qemu_img_ok(&["snapshot", "-c", "s1", &p("t.qcow2")]);
    qemu_img_ok(&["bitmap", "--add", &p("t.qcow2"), "b0"]);
    std::fs::write(dir.join("t.raw"), blk_tests::random_bytes(5, 1 << 20)).unwrap();
    qemu_img_ok(&["create", "-q", "-f", "qcow2", &p("base.qcow2"), "16M"]);
    qemu_io_ok(&["-c", "write -P 0x22 0 1M", &p("base.qcow2")]);
    for (top, base) in [
        ("top.qcow2", "base.qcow2"),
        ("immtop.qcow2", "immbase.qcow2"),
    ] {
        if base != "base.qcow2" {
            std::fs::copy(dir.join("base.qcow2"), dir.join(base)).unwrap();
        }
        // A relative name, so that each twin's top finds its own base.
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            base,
            "-F",
            "qcow2",
            &p(top),
        ]);
        qemu_io_ok(&["-c", "write -P 0x33 0 64k", &p(top)]);
    }
    std::fs::copy(dir.join("t.qcow2"), dir.join("immut.qcow2")).unwrap();
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        &p("v2.qcow2"),
        "16M",
    ]);
    qemu_io_ok(&["-c", "write -P 0x44 0 64k", &p("v2.qcow2")]);
    qemu_img_ok(&["snapshot", "-c", "s", &p("v2.qcow2")]);
    let ext = p("ext.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        &ext,
        "16M",
    ]);
    let r8 = p("r8.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "refcount_bits=8",
        &r8,
        "16M",
    ]);
}

/// Copies the fixture into a fresh directory and makes its immutable
/// files immutable.
fn twin(template: &Path, guard: &mut Immutable) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(template).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    guard.set(&d.path().join("immut.qcow2"));
    guard.set(&d.path().join("immbase.qcow2"));
    d
}

#[test]
fn failed_commands_change_nothing() {
    let long = "x".repeat(1100);
    let cases: Vec<Vec<&str>> = vec![
        // amend: invalid combinations and options
        vec!["amend", "-o", "compat=0.10,lazy_refcounts=on", "t.qcow2"],
        vec!["amend", "-o", "cluster_size=4k", "t.qcow2"],
        vec!["amend", "-o", "refcount_bits=7", "t.qcow2"],
        vec!["amend", "-o", "data_file_raw=on", "t.qcow2"],
        vec!["amend", "-f", "raw", "-o", "size=1M", "t.raw"],
        vec!["amend", "-o", "size=1E", "t.qcow2"],
        // amend of a v2 image: refusals that qemu-img meets only after it
        // has upgraded the image (and that blk checks first)
        vec!["amend", "-o", "lazy_refcounts=on", "v2.qcow2"],
        vec!["amend", "-o", "refcount_bits=8", "v2.qcow2"],
        vec!["amend", "-o", "compat=1.1,backing_file=x", "v2.qcow2"],
        vec!["amend", "-o", "compat=1.1,data_file=x", "v2.qcow2"],
        vec!["amend", "-o", "compat=1.1,size=1E", "v2.qcow2"],
        vec!["amend", "-o", "compat=1.1,refcount_bits=128", "v2.qcow2"],
        // downgrades that version 2 cannot express
        vec!["amend", "-o", "compat=0.10", "ext.qcow2"],
        vec!["amend", "-o", "compat=0.10", "r8.qcow2"],
        vec!["amend", "-o", "compat=0.10,refcount_bits=8", "r8.qcow2"],
        vec!["resize", "v2.qcow2", "+1M"],
        // resize: sizes that cannot be
        vec!["resize", "t.qcow2", "1E"],
        vec!["resize", "t.qcow2", "100k"],
        vec!["resize", "-f", "raw", "t.raw", "9E"],
        vec!["resize", "t.qcow2", "--", "-10M"],
        // snapshot: a file that cannot be opened for writing, no such
        // snapshot, a revert that bitmaps forbid
        vec!["snapshot", "-c", "s2", "immut.qcow2"],
        vec!["snapshot", "-d", "nosuch", "t.qcow2"],
        vec!["snapshot", "-a", "nosuch", "t.qcow2"],
        vec!["snapshot", "-a", "s1", "t.qcow2"],
        // rebase onto a missing backing file
        vec!["rebase", "-b", "missing.qcow2", "-F", "qcow2", "top.qcow2"],
        vec!["rebase", "-u", "-b", "missing.qcow2", "top.qcow2"],
        // commit into a base that cannot be written
        vec!["commit", "immtop.qcow2"],
        // bitmap: bad names, missing bitmaps, bad granularity
        vec!["bitmap", "--add", "t.qcow2", &long],
        vec!["bitmap", "--add", "t.qcow2", "b0"],
        vec!["bitmap", "--remove", "t.qcow2", "nosuch"],
        vec!["bitmap", "--clear", "t.qcow2", "nosuch"],
        vec!["bitmap", "--add", "--granularity", "3", "t.qcow2", "b1"],
        vec![
            "bitmap",
            "--merge",
            "nosuch",
            "-b",
            "base.qcow2",
            "t.qcow2",
            "b0",
        ],
    ];
    let template = tempfile::tempdir().unwrap();
    fixture(template.path());
    for args in &cases {
        let case = format!(
            "{:?}",
            args.iter()
                .map(|a| &a[..a.len().min(20)])
                .collect::<Vec<_>>()
        );
        let mut guard = Immutable(Vec::new());
        let qdir = twin(template.path(), &mut guard);
        let bdir = twin(template.path(), &mut guard);
        let before = snapshot(bdir.path());
        let mut q = run_bounded(qdir.path(), Path::new("qemu-img"), args);
        let b = run_bounded(bdir.path(), &blk_bin(), args);
        // QEMU names the image's node ('#block123') where blk names the
        // image.
        let qerr = String::from_utf8_lossy(&q.stderr).into_owned();
        if let Some(i) = qerr.find("'#block") {
            let end = i + 1 + qerr[i + 1..].find('\'').unwrap();
            q.stderr = format!("{}'t.qcow2{}", &qerr[..i], &qerr[end..]).into_bytes();
        }
        assert_same_failure(&q, &b, &case);
        assert!(
            snapshot(bdir.path()) == before,
            "{case}: blk changed a file"
        );
    }
}
