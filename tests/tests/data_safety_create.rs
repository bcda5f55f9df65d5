//! Data safety of `create` beyond locks (docs/data-safety.md): a qcow2
//! create with an external data file checks that both files can be created
//! before it empties either; a relative data file name means what it means
//! to qemu-img (the working directory, at create and at open); a create on
//! a FIFO, a directory or a character device fails as qemu-img's does and
//! never hangs. blk's exit code and stderr are qemu-img's in each case
//! (qemu-img runs the same case in a twin directory, as it may destroy
//! files there).

mod safety_common;

use blk_tests::{blk_bin, random_bytes, s};
use safety_common::{assert_same_failure, run_bounded, snapshot, Immutable, TinyFs};
use std::path::Path;

/// One directory of a case: an image and a data file holding data, a
/// directory, a FIFO and an immutable file.
fn setup(dir: &Path, guard: &mut Immutable) {
    std::fs::write(dir.join("img"), random_bytes(1, 8192)).unwrap();
    std::fs::write(dir.join("data"), random_bytes(2, 8192)).unwrap();
    std::fs::create_dir(dir.join("dir")).unwrap();
    let fifo = std::ffi::CString::new(s(&dir.join("fifo"))).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(dir.join("immut"), random_bytes(3, 4096)).unwrap();
    guard.set(&dir.join("immut"));
}

/// A qcow2 create with a data file whose second file cannot be created
/// (a directory, a missing directory, an immutable file, a FIFO) leaves
/// the first as it was, and no file behind; qemu-img empties, and deletes,
/// the image in each case where the data file is the one that fails.
#[test]
fn data_file_create_failures_empty_nothing() {
    let cases: &[(&str, &str)] = &[
        ("dir", "data"),
        ("nodir/x", "data"),
        ("immut", "data"),
        ("fifo", "data"),
        ("img", "dir"),
        ("img", "nodir/x"),
        ("img", "immut"),
        ("img", "fifo"),
    ];
    for (image, data) in cases {
        let case = format!("image {image}, data file {data}");
        let mut guard = Immutable(Vec::new());
        let qdir = tempfile::tempdir().unwrap();
        let bdir = tempfile::tempdir().unwrap();
        setup(qdir.path(), &mut guard);
        setup(bdir.path(), &mut guard);
        let opt = format!("data_file={data}");
        let args = ["create", "-q", "-f", "qcow2", "-o", &opt, image, "1M"];
        let before = snapshot(bdir.path());
        let q = run_bounded(qdir.path(), Path::new("qemu-img"), &args);
        let b = run_bounded(bdir.path(), &blk_bin(), &args);
        assert_same_failure(&q, &b, &case);
        assert!(snapshot(bdir.path()) == before, "{case}: blk changed files");
        if *image == "img" {
            // What blk avoids: qemu-img has removed the existing image.
            assert!(!qdir.path().join("img").exists(), "{case}");
        }
    }
}

/// A relative data file name is relative to the working directory, at
/// create and at open, as for qemu-img (not to the image's directory, as a
/// backing file name is).
#[test]
fn relative_data_file_is_relative_to_the_working_directory() {
    let root = tempfile::tempdir().unwrap();
    let (qw, bw) = (root.path().join("qw"), root.path().join("bw"));
    for w in [&qw, &bw] {
        std::fs::create_dir_all(w.join("wd")).unwrap();
        std::fs::create_dir_all(w.join("sub")).unwrap();
    }
    let args = [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "data_file=d.raw",
        "../sub/t.qcow2",
        "1M",
    ];
    let q = run_bounded(&qw.join("wd"), Path::new("qemu-img"), &args);
    assert!(q.status.success(), "{q:?}");
    let b = run_bounded(&bw.join("wd"), &blk_bin(), &args);
    assert!(b.status.success(), "{b:?}");
    for w in [&qw, &bw] {
        assert!(w.join("wd/d.raw").is_file(), "{}", w.display());
        assert!(!w.join("sub/d.raw").exists(), "{}", w.display());
    }
    // blk writes through the data file found from `wd`; qemu-io reads it
    // from there, and the other way round.
    let bwd = bw.join("wd");
    let w = ["-c", "write -P 0x5c 0 64k", "../sub/t.qcow2"];
    let out = run_bounded(&bwd, &blk_bin(), &["io", w[0], w[1], w[2]]);
    assert!(out.status.success(), "{out:?}");
    let r = ["-c", "read -P 0x5c 0 64k", "../sub/t.qcow2"];
    let out = run_bounded(&bwd, Path::new("qemu-io"), &r);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail"),
        "{out:?}"
    );
    let w = ["-c", "write -P 0x6d 64k 64k", "../sub/t.qcow2"];
    assert!(run_bounded(&bwd, Path::new("qemu-io"), &w).status.success());
    let r = ["io", "-c", "read -P 0x6d 64k 64k", "../sub/t.qcow2"];
    let out = run_bounded(&bwd, &blk_bin(), &r);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail"),
        "{out:?}"
    );
    // So does a convert's new target.
    let conv = [
        "convert",
        "-O",
        "qcow2",
        "-o",
        "data_file=e.raw",
        "../sub/t.qcow2",
        "../sub/c.qcow2",
    ];
    let out = run_bounded(&bwd, &blk_bin(), &conv);
    assert!(out.status.success(), "{out:?}");
    assert!(bwd.join("e.raw").is_file() && !bw.join("sub/e.raw").exists());
    let cmp = ["compare", "../sub/t.qcow2", "../sub/c.qcow2"];
    let out = run_bounded(&bwd, Path::new("qemu-img"), &cmp);
    assert!(out.status.success(), "{out:?}");
    // From the image's own directory the name finds no file: both fail
    // with the same words, and create nothing.
    for (prog, io) in [("qemu-io", true), ("qemu-img", false)] {
        let (qa, ba): (Vec<&str>, Vec<&str>) = if io {
            (
                vec!["-c", "read 0 4k", "t.qcow2"],
                vec!["io", "-c", "read 0 4k", "t.qcow2"],
            )
        } else {
            (vec!["check", "t.qcow2"], vec!["check", "t.qcow2"])
        };
        let q = run_bounded(&qw.join("sub"), Path::new(prog), &qa);
        let b = run_bounded(&bw.join("sub"), &blk_bin(), &ba);
        let qerr = String::from_utf8_lossy(&q.stderr).replace(&format!("{prog}: "), "blk: ");
        assert_eq!(q.status.code(), Some(1), "{prog}: {qerr}");
        assert_eq!(b.status.code(), q.status.code(), "{prog}");
        assert_eq!(String::from_utf8_lossy(&b.stderr), qerr, "{prog}");
        assert!(!bw.join("sub/d.raw").exists());
    }
}

/// `create` on a FIFO, a directory or a character device: qemu-img's
/// message and exit code, and no hang (a FIFO without a reader).
#[test]
fn create_on_special_files_fails_as_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("dir")).unwrap();
    let fifo = std::ffi::CString::new(s(&d.join("fifo"))).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for fmt in ["raw", "qcow2"] {
        for target in ["fifo", "dir", "/dev/null", "/dev/zero", "/dev/full"] {
            for extra in [&[][..], &["-o", "preallocation=full"]] {
                if fmt == "qcow2" && !extra.is_empty() {
                    continue;
                }
                let mut args = vec!["create", "-q", "-f", fmt];
                args.extend_from_slice(extra);
                args.extend_from_slice(&[target, "1M"]);
                let q = run_bounded(d, Path::new("qemu-img"), &args);
                let b = run_bounded(d, &blk_bin(), &args);
                assert_same_failure(&q, &b, &format!("{args:?}"));
            }
        }
    }
    // Still a FIFO and an empty directory.
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(d.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(std::fs::read_dir(d.join("dir")).unwrap().count(), 0);
}

/// Preallocation that the filesystem has no room for fails before the
/// target is emptied (a raw create, a qcow2 create's data file), with
/// qemu-img's message; qemu-img empties and deletes the files.
#[test]
fn preallocation_without_space_empties_nothing() {
    for prealloc in ["full", "falloc"] {
        let cases: [(&str, Vec<String>); 3] = [
            (
                "raw over data",
                vec!["-f".into(), "raw".into(), "data".into()],
            ),
            (
                "raw, new file",
                vec!["-f".into(), "raw".into(), "new".into()],
            ),
            (
                "qcow2 with data file",
                vec![
                    "-f".into(),
                    "qcow2".into(),
                    "-o".into(),
                    "data_file=data".into(),
                    "img".into(),
                ],
            ),
        ];
        for (what, target) in &cases {
            let case = format!("{what}, preallocation={prealloc}");
            let (qfs, bfs) = (TinyFs::mount("256k"), TinyFs::mount("256k"));
            for d in [qfs.path(), bfs.path()] {
                std::fs::write(d.join("img"), random_bytes(1, 8192)).unwrap();
                std::fs::write(d.join("data"), random_bytes(2, 8192)).unwrap();
            }
            let opt = format!("preallocation={prealloc}");
            let mut args = vec!["create", "-q", "-o", &opt];
            args.extend(target.iter().map(String::as_str));
            args.push("1M");
            let before = snapshot(bfs.path());
            let q = run_bounded(qfs.path(), Path::new("qemu-img"), &args);
            let b = run_bounded(bfs.path(), &blk_bin(), &args);
            assert_same_failure(&q, &b, &case);
            assert!(snapshot(bfs.path()) == before, "{case}: blk changed files");
        }
    }
}
