//! `-p` progress output of `blk` against `qemu-img` (stdout is a pipe here,
//! so both print `    (P/100%)\r` lines and a closing newline): byte for
//! byte where qemu-img's sequence is deterministic (convert, rebase, compare,
//! amend), and by format, first and last line and monotonicity for commit,
//! whose sequence depends on the timing of QEMU's block job.

use blk_tests::{blk, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};

/// A scratch directory with a few QEMU-made images.
struct Images {
    dir: tempfile::TempDir,
}

impl Images {
    fn new() -> Images {
        Images {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A qcow2 image of `size` with `writes` ("OFF LEN" pairs, pattern
    /// numbered in order), optionally over a backing file.
    fn qcow2(&self, name: &str, size: &str, backing: Option<&Path>, writes: &[&str]) -> PathBuf {
        let p = self.path(name);
        let mut args = vec!["create", "-q", "-f", "qcow2"];
        if let Some(b) = backing {
            args.extend(["-b", s(b), "-F", "qcow2"]);
        }
        args.extend([s(&p), size]);
        qemu_img_ok(&args);
        let cmds: Vec<String> = writes
            .iter()
            .enumerate()
            .map(|(i, w)| format!("write -P {} {w}", i + 1))
            .collect();
        let mut io = vec![];
        for c in &cmds {
            io.extend(["-c", c.as_str()]);
        }
        if !io.is_empty() {
            io.push(s(&p));
            qemu_io_ok(&io);
        }
        p
    }
}

/// Stdout and exit code.
fn out(o: std::process::Output) -> (String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    )
}

/// Runs `args` ("X" stands for the copy of each image in `imgs`, in order)
/// through qemu-img and blk on separate copies; returns both stdouts and
/// exit codes.
fn both(imgs: &[&Path], args: &[&str]) -> ((String, i32), (String, i32)) {
    let copies = |tag: &str| -> Vec<PathBuf> {
        imgs.iter()
            .map(|p| {
                let c = p.with_extension(tag);
                std::fs::copy(p, &c).unwrap();
                c
            })
            .collect()
    };
    let (q, b) = (copies("q"), copies("b"));
    let argv = |c: &[PathBuf]| -> Vec<String> {
        let mut it = c.iter();
        args.iter()
            .map(|a| {
                if *a == "X" {
                    s(it.next().unwrap()).to_string()
                } else {
                    a.to_string()
                }
            })
            .collect()
    };
    let qa = argv(&q);
    let ba = argv(&b);
    let qo = out(qemu_img(&qa.iter().map(|s| s.as_str()).collect::<Vec<_>>()));
    let bo = out(blk(&ba.iter().map(|s| s.as_str()).collect::<Vec<_>>()));
    (qo, bo)
}

/// Both tools print the same bytes and exit the same way.
fn same(imgs: &[&Path], args: &[&str]) -> String {
    let (q, b) = both(imgs, args);
    assert_eq!(q, b, "qemu-img vs blk {args:?}");
    b.0
}

/// The percentages of a progress report (`    (P/100%)\r` repeated, then
/// `\n`), checked for qemu-img's format; `None` when malformed.
fn percentages(report: &str) -> Option<Vec<f64>> {
    let body = report.strip_suffix('\n')?;
    let mut v = Vec::new();
    for part in body.split_terminator('\r') {
        let p = part.strip_prefix("    (")?.strip_suffix("/100%)")?;
        let (int, frac) = p.split_once('.')?;
        if frac.len() != 2
            || int.is_empty()
            || !(int.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        v.push(p.parse().ok()?);
    }
    body.ends_with('\r').then_some(v)
}

#[test]
fn convert_progress_is_qemu_imgs_byte_for_byte() {
    let im = Images::new();
    let multi = im.qcow2(
        "multi.qcow2",
        "64M",
        None,
        &["0 1M", "10M 3M", "40M 64k", "50M 4k", "63M 1M"],
    );
    let small = im.qcow2("small.qcow2", "3M", None, &["1M 512k"]);
    let empty = im.qcow2("empty.qcow2", "0", None, &[]);
    let base = im.qcow2("base.qcow2", "8M", None, &["0 4M"]);
    let top = im.qcow2("top.qcow2", "8M", Some(&base), &["2M 3M"]);
    let raw = im.path("tiny.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&raw), "4k"]);
    let target = im.path("out");
    let t = s(&target);
    for args in [
        vec!["convert", "-p", "-O", "raw", "X", t],
        vec!["convert", "-p", "-O", "qcow2", "X", t],
        vec!["convert", "-p", "-S", "0", "-O", "raw", "X", t],
        vec!["convert", "-p", "-c", "-O", "qcow2", "X", t],
        vec![
            "convert",
            "-p",
            "-m",
            "1",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4k",
            "X",
            t,
        ],
    ] {
        for img in [&multi, &small, &empty, &raw, &top] {
            let o = same(&[img], &args);
            let p = percentages(&o).unwrap_or_else(|| panic!("malformed {o:?}"));
            assert_eq!(p.first(), Some(&0.0));
            assert_eq!(p.last(), Some(&100.0));
            let _ = std::fs::remove_file(&target);
        }
    }
    // Two sources concatenated; a target over a backing file.
    let o = same(
        &[&multi, &small],
        &["convert", "-p", "-O", "raw", "X", "X", t],
    );
    assert!(percentages(&o).unwrap().len() > 3, "{o:?}");
    let _ = std::fs::remove_file(&target);
    same(
        &[&top],
        &[
            "convert",
            "-p",
            "-O",
            "qcow2",
            "-B",
            s(&base),
            "-F",
            "qcow2",
            "X",
            t,
        ],
    );
    let _ = std::fs::remove_file(&target);
    // The exact sequence of a multi-chunk copy (2 MiB chunks of 4160 KiB).
    let o = same(&[&multi], &["convert", "-p", "-O", "raw", "X", t]);
    assert!(o.starts_with("    (0.00/100%)\r"), "{o:?}");
    assert!(
        o.ends_with("    (100.00/100%)\r    (100.00/100%)\r\n"),
        "{o:?}"
    );
}

#[test]
fn progress_of_tiny_images_and_failures() {
    let im = Images::new();
    let empty = im.qcow2("empty.qcow2", "0", None, &[]);
    let target = im.path("out.raw");
    let o = same(&[&empty], &["convert", "-p", "-O", "raw", "X", s(&target)]);
    assert_eq!(o, "    (0.00/100%)\r    (100.00/100%)\r\n");
    // A source that cannot be opened: the 0 % line, then the newline.
    let missing = im.path("missing.qcow2");
    let (q, b) = (
        out(qemu_img(&[
            "convert",
            "-p",
            "-O",
            "raw",
            s(&missing),
            s(&target),
        ])),
        out(blk(&[
            "convert",
            "-p",
            "-O",
            "raw",
            s(&missing),
            s(&target),
        ])),
    );
    assert_eq!(q, b);
    assert_eq!(b, ("    (0.00/100%)\r\n".to_string(), 1));
    // compare opens both images before its 0 % line.
    let (q, b) = (
        out(qemu_img(&["compare", "-p", s(&missing), s(&empty)])),
        out(blk(&["compare", "-p", s(&missing), s(&empty)])),
    );
    assert_eq!(q, b);
    assert_eq!(b, ("\n".to_string(), 2));
    // commit without a backing file fails after its 0 % line.
    let o = both(&[&empty], &["commit", "-p", "X"]);
    assert_eq!(o.0, o.1);
    assert_eq!(o.1, ("    (0.00/100%)\r\n".to_string(), 1));
}

#[test]
fn quiet_silences_progress() {
    let im = Images::new();
    let base = im.qcow2("base.qcow2", "4M", None, &["0 1M"]);
    let top = im.qcow2("top.qcow2", "4M", Some(&base), &["1M 1M"]);
    let other = im.qcow2("other.qcow2", "4M", None, &[]);
    let target = im.path("out.raw");
    for args in [
        vec!["convert", "-q", "-p", "-O", "raw", "X", s(&target)],
        vec!["compare", "-q", "-p", "X", "X"],
        vec!["rebase", "-q", "-p", "-b", s(&other), "-F", "qcow2", "X"],
        vec!["commit", "-q", "-p", "X"],
        vec!["amend", "-q", "-p", "-o", "lazy_refcounts=on", "X"],
    ] {
        let imgs: Vec<&Path> = if args[0] == "compare" {
            vec![&base, &top]
        } else {
            vec![&top]
        };
        let o = same(&imgs, &args);
        assert_eq!(o, "", "{args:?}");
        let _ = std::fs::remove_file(&target);
    }
}

#[test]
fn rebase_compare_and_amend_progress_is_qemu_imgs() {
    let im = Images::new();
    let base = im.qcow2("base.qcow2", "64M", None, &["0 1M", "10M 3M"]);
    let top = im.qcow2(
        "top.qcow2",
        "64M",
        Some(&base),
        &["40M 64k", "20M 5M", "62M 2M"],
    );
    let newb = im.qcow2("new.qcow2", "64M", None, &["30M 1M"]);
    let small = im.qcow2("small.qcow2", "32M", None, &["0 1M", "10M 3M"]);
    let three = im.qcow2("three.qcow2", "3M", None, &[]);
    let three_top = im.qcow2("three_top.qcow2", "3M", Some(&three), &[]);
    let nb = s(&newb);
    // Rebase adds 100 / (size / 2 MiB) per unallocated 2 MiB step.
    let o = same(&[&top], &["rebase", "-p", "-b", nb, "-F", "qcow2", "X"]);
    let p = percentages(&o).unwrap();
    assert!(p.len() > 20 && p.windows(2).all(|w| w[0] <= w[1]), "{o:?}");
    same(&[&top], &["rebase", "-p", "-b", "", "X"]);
    same(
        &[&top],
        &["rebase", "-p", "-u", "-b", nb, "-F", "qcow2", "X"],
    );
    let o = same(&[&three_top], &["rebase", "-p", "-b", "", "X"]);
    assert_eq!(
        o,
        "    (0.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n"
    );
    // Compare prints at most every 2 %, then its verdict, then the newline.
    let o = same(&[&base, &top], &["compare", "-p", "X", "X"]);
    assert!(
        o.ends_with("Content mismatch at offset 20971520!\n\n"),
        "{o:?}"
    );
    let o = same(&[&base, &base], &["compare", "-p", "X", "X"]);
    assert!(
        o.ends_with("    (100.00/100%)\rImages are identical.\n\n"),
        "{o:?}"
    );
    same(&[&base, &small], &["compare", "-p", "X", "X"]);
    same(&[&small, &base], &["compare", "-p", "X", "X"]);
    same(&[&small, &base], &["compare", "-p", "-s", "X", "X"]);
    same(&[&base], &["amend", "-p", "-o", "lazy_refcounts=on", "X"]);
}

#[test]
fn commit_progress_has_qemu_imgs_shape() {
    let im = Images::new();
    let base = im.qcow2("base.qcow2", "64M", None, &["0 1M", "10M 3M"]);
    let top = im.qcow2("top.qcow2", "64M", Some(&base), &["40M 64k", "20M 5M"]);
    // Each tool commits its own copy of the chain.
    for (tool, tag) in [("qemu-img", "q"), ("blk", "b")] {
        let b = base.with_extension(format!("{tag}.base"));
        let t = top.with_extension(format!("{tag}.top"));
        std::fs::copy(&base, &b).unwrap();
        std::fs::copy(&top, &t).unwrap();
        qemu_img_ok(&["rebase", "-u", "-b", s(&b), "-F", "qcow2", s(&t)]);
        let o = if tool == "blk" {
            out(blk(&["commit", "-p", s(&t)]))
        } else {
            out(qemu_img(&["commit", "-p", s(&t)]))
        };
        assert_eq!(o.1, 0, "{tool}: {o:?}");
        let report =
            o.0.strip_suffix("Image committed.\n")
                .unwrap_or_else(|| panic!("{tool}: {o:?}"));
        let p = percentages(report).unwrap_or_else(|| panic!("{tool}: malformed {report:?}"));
        assert_eq!(p.first(), Some(&0.0), "{tool}");
        assert_eq!(p.last(), Some(&100.0), "{tool}");
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{tool}: {p:?}");
        // qemu-img's intermediate lines depend on its job's timing (a busy
        // machine can see 0 then 100); blk reports after every extent.
        if tool == "blk" {
            assert!(p.iter().any(|&x| x > 0.0 && x < 100.0), "{tool}: {p:?}");
        }
        let c = qemu_img(&["compare", "-f", "qcow2", "-F", "qcow2", s(&b), s(&top)]);
        assert!(
            c.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&c.stdout)
        );
    }
}
