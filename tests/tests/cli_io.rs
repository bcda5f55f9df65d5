//! `blk io` against `qemu-io`: the same commands on copies of one image give
//! the same output (timing lines aside), exit status and image content.

use blk_tests::{blk, qemu_img_ok, s};
use std::path::Path;
use std::process::Command;

/// Drops qemu-io's timing lines ("4 KiB, 1 ops; 00.00 sec (...)").
fn filter(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !(l.contains(" ops; ") && l.contains("/sec and ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn run_both(
    img: &Path,
    pre: &[&str],
    cmds: &[&str],
) -> ((String, String, i32), (String, String, i32)) {
    let dir = img.parent().unwrap();
    let q_img = dir.join("q.img");
    let b_img = dir.join("b.img");
    std::fs::copy(img, &q_img).unwrap();
    std::fs::copy(img, &b_img).unwrap();
    let mut q = Command::new("qemu-io");
    q.args(pre);
    for c in cmds {
        q.args(["-c", c]);
    }
    let qo = q.arg(&q_img).output().unwrap();
    let mut args: Vec<&str> = vec!["io"];
    args.extend_from_slice(pre);
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(s(&b_img));
    let bo = blk(&args);
    assert_eq!(
        std::fs::read(&q_img).unwrap(),
        std::fs::read(&b_img).unwrap(),
        "image contents differ after {cmds:?}"
    );
    let norm = |e: &[u8]| {
        String::from_utf8_lossy(e)
            .replace("qemu-io: ", "")
            .replace("blk: ", "")
            .replace(s(&q_img), "IMG")
            .replace(s(&b_img), "IMG")
    };
    (
        (
            filter(&qo.stdout),
            norm(&qo.stderr),
            qo.status.code().unwrap_or(-1),
        ),
        (
            filter(&bo.stdout),
            norm(&bo.stderr),
            bo.status.code().unwrap_or(-1),
        ),
    )
}

#[test]
fn raw_commands_match_qemu_io() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let cmds = [
        "write -P 0xab 0 4k",
        "read -P 0xab 0 4k",
        "read -v 0 32",
        "write -P 0x5a 1000 100",
        "read -v 992 48",
        "read -P 0x5a -s 8 -l 100 992 200",
        "length",
        "alloc 0 64k",
        "alloc 1020k 8k",
        "map",
        "info",
        "flush",
        "write -z 8k 4k",
        "write -z -u 64k 64k",
        "discard 128k 64k",
        "writev -P 0x11 256k 4k 8k",
        "readv -P 0x11 256k 8k 4k",
        "read -q -P 0x11 256k 4k",
        "truncate 2M",
        "length",
        "sleep 1",
        "alloc 4M",
    ];
    let (q, b) = run_both(&img, &["-f", "raw"], &cmds);
    assert_eq!(q, b);
    assert_eq!(b.2, 0);
}

#[test]
fn failures_match_qemu_io() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    for cmds in [
        &["read -P 0xac 0 4k"][..],
        &["read 1M 4k", "length"][..],
        &["write 1020k 8k"][..],
        &["read abc 4k"][..],
        &["read -P 300 0 4k"][..],
        &["read 0"][..],
        &["bogus"][..],
        &["read -x 0 1"][..],
        &["write -u 0 4k"][..],
        &["write -z -P 1 0 4k"][..],
        &["read 0 4G"][..],
        &["flush 1"][..],
        &["sleep abc"][..],
        &["truncate abc"][..],
    ] {
        let (q, b) = run_both(&img, &["-f", "raw"], cmds);
        assert_eq!(q, b, "{cmds:?}");
        assert_eq!(b.2, 1, "{cmds:?} must fail");
    }
}

#[test]
fn read_only_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let (q, b) = run_both(&img, &["-f", "raw", "-r"], &["write 0 4k", "read 0 4k"]);
    assert_eq!(q, b);
    assert_eq!(b.2, 1);
}

#[test]
fn qcow2_chain_map_and_alloc_match() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&base), "4M"]);
    blk_tests::qemu_io_ok(&[
        "-c",
        "write -P 1 0 128k",
        "-c",
        "write -P 2 1M 64k",
        s(&base),
    ]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
    ]);
    blk_tests::qemu_io_ok(&["-c", "write -P 3 64k 64k", "-c", "write -z 1M 64k", s(&top)]);
    for cmds in [
        &["map", "alloc 0 128k", "alloc 1M 64k", "length"][..],
        &[
            "read -P 1 0 64k",
            "read -P 3 64k 64k",
            "read -P 0 1M 64k",
            "read -P 0 2M 64k",
        ][..],
    ] {
        let out = blk(&["io", "-f", "qcow2", "-r", "-c", cmds[0], s(&top)]);
        assert!(out.status.success());
        let mut q = Command::new("qemu-io");
        q.args(["-f", "qcow2", "-r"]);
        let mut args = vec!["io", "-f", "qcow2", "-r"];
        for c in cmds {
            q.args(["-c", c]);
            args.push("-c");
            args.push(c);
        }
        args.push(s(&top));
        let qo = q.arg(&top).output().unwrap();
        let bo = blk(&args);
        assert_eq!(filter(&qo.stdout), filter(&bo.stdout), "{cmds:?}");
        assert_eq!(qo.status.code(), bo.status.code());
    }
}

#[test]
fn commands_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let mut child = Command::new(blk_tests::blk_bin())
        .args(["io", "-f", "raw", s(&img)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"write -P 7 0 512\n\nread -P 7 0 512\nlength\nquit\nlength\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        filter(&out.stdout),
        // qemu-io's prompt comes before every line read, even from a pipe.
        "blk io> wrote 512/512 bytes at offset 0\nblk io> blk io> read 512/512 bytes at offset 0\nblk io> 1 MiB\nblk io> \n"
    );
}

#[test]
fn timing_line_has_qemu_format() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.img");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let out = blk(&["io", "-f", "raw", "-c", "write 0 4k", s(&img)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().nth(1).unwrap_or_default().to_string();
    assert!(line.starts_with("4 KiB, 1 ops; 00."), "{line}");
    assert!(
        line.contains(" sec (") && line.ends_with(" ops/sec)"),
        "{line}"
    );
}
