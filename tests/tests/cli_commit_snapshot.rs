//! `blk commit` empties the top image as `qemu-img commit` does (unless -d
//! or -b), and `blk convert -l` converts an internal snapshot's content as
//! `qemu-img convert -l` does.

use blk_tests::{blk, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};

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

/// A base with data and a top with data, zeroes and a discarded range, in
/// `dir`; returns (base, top).
fn chain(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("base.qcow2");
    let top = dir.join("top.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "4M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 1 0 1M",
        "-c",
        "write -P 2 2M 512k",
        s(&base),
    ]);
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    qemu_io_ok(&[
        "-c",
        "write -P 3 64k 128k",
        "-c",
        "write -z 2M 64k",
        "-c",
        "write -P 4 3M 100k",
        s(&top),
    ]);
    (base, top)
}

/// True when the top image of a chain allocates nothing itself.
fn top_is_empty(top: &Path) -> bool {
    let text = qemu_img_ok(&["map", "--output=json", s(top)]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .all(|e| e["depth"].as_u64() != Some(0) || !e["present"].as_bool().unwrap_or(false))
}

#[test]
fn commit_empties_the_top_like_qemu_img() {
    for flags in [vec![], vec!["-d"], vec!["-q"], vec!["-p"]] {
        let (qd, bd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (qbase, qtop) = chain(qd.path());
        let (bbase, btop) = chain(bd.path());
        let mut qa = vec!["commit"];
        qa.extend_from_slice(&flags);
        let mut ba = qa.clone();
        qa.push(s(&qtop));
        ba.push(s(&btop));
        let q = norm(&qemu_img(&qa));
        let b = norm(&blk(&ba));
        if !flags.contains(&"-p") {
            assert_eq!(q, b, "{flags:?}");
        }
        assert_eq!(b.2, 0, "{flags:?}: {b:?}");
        // Same committed content in the base, same guest view through the top.
        qemu_img_ok(&["compare", s(&qbase), s(&bbase)]);
        qemu_img_ok(&["compare", s(&qtop), s(&btop)]);
        qemu_img_ok(&["check", s(&bbase)]);
        qemu_img_ok(&["check", s(&btop)]);
        assert_eq!(top_is_empty(&qtop), top_is_empty(&btop), "{flags:?}");
        assert_eq!(top_is_empty(&btop), !flags.contains(&"-d"), "{flags:?}");
    }
}

#[test]
fn commit_with_base_keeps_the_top() {
    let d = tempfile::tempdir().unwrap();
    let (base, top) = chain(d.path());
    let (out, _, code) = norm(&blk(&["commit", "-b", s(&base), s(&top)]));
    assert_eq!((out.as_str(), code), ("Image committed.\n", 0));
    assert!(!top_is_empty(&top));
    qemu_img_ok(&["compare", s(&base), s(&top)]);
}

/// An image with snapshot s1 (id 1) and s2 (id 2) and newer data on top.
fn snap_image(dir: &Path) -> PathBuf {
    let img = dir.join("snap.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "4M"]);
    qemu_io_ok(&["-c", "write -P 5 0 192k", "-c", "write -z 1M 64k", s(&img)]);
    qemu_img_ok(&["snapshot", "-c", "s1", s(&img)]);
    qemu_io_ok(&["-c", "write -P 6 64k 1M", s(&img)]);
    qemu_img_ok(&["snapshot", "-c", "s2", s(&img)]);
    qemu_io_ok(&["-c", "write -P 7 2M 1M", "-c", "discard 0 64k", s(&img)]);
    img
}

#[test]
fn convert_snapshot_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let img = snap_image(dir.path());
    for (i, l) in [
        "s1",
        "2",
        "snapshot.name=s1",
        "snapshot.id=2",
        "snapshot.id=1,snapshot.name=s1",
    ]
    .iter()
    .enumerate()
    {
        for fmt in ["raw", "qcow2"] {
            let q = dir.path().join(format!("q{i}.{fmt}"));
            let b = dir.path().join(format!("b{i}.{fmt}"));
            let qo = norm(&qemu_img(&["convert", "-O", fmt, "-l", l, s(&img), s(&q)]));
            let bo = norm(&blk(&["convert", "-O", fmt, "-l", l, s(&img), s(&b)]));
            assert_eq!(qo, bo, "{l} {fmt}");
            assert_eq!(bo.2, 0, "{l} {fmt}: {bo:?}");
            qemu_img_ok(&["compare", "-f", fmt, "-F", fmt, s(&q), s(&b)]);
            if fmt == "raw" {
                assert_eq!(
                    std::fs::read(&q).unwrap(),
                    std::fs::read(&b).unwrap(),
                    "{l}"
                );
            }
        }
    }
    // The snapshot view differs from the current content.
    let cur = dir.path().join("cur.raw");
    blk_tests::blk_ok(&["convert", "-O", "raw", s(&img), s(&cur)]);
    let s1 = dir.path().join("b0.raw");
    assert_ne!(std::fs::read(&cur).unwrap(), std::fs::read(&s1).unwrap());
}

#[test]
fn convert_snapshot_errors_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let img = snap_image(dir.path());
    let raw = dir.path().join("r.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "1M"]);
    let out = dir.path().join("out.raw");
    for (l, src) in [
        ("nosuch", s(&img)),
        ("snapshot.name=nosuch", s(&img)),
        ("snapshot.id=1,snapshot.name=s2", s(&img)),
        ("snapshot.x=1", s(&img)),
        ("s1", s(&raw)),
    ] {
        let (_, _, code) = same(&["convert", "-O", "raw", "-l", l, src, s(&out)]);
        assert_eq!(code, 1, "{l}");
    }
    let (_, _, code) = same(&["convert", "-l", "s1", s(&img), s(&img), s(&out)]);
    assert_eq!(code, 1);
}
