//! `blk` snapshot, rebase, create, info --backing-chain and resize against
//! `qemu-img`, each tool on its own copy of the same QEMU-made images: the
//! same output, exit codes and resulting guest content.

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

/// `snapshot -l` text with the DATE and VM CLOCK columns blanked.
fn mask_dates(t: &str) -> String {
    t.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            // ID TAG VM-SIZE(2 words) DATE TIME CLOCK [ICOUNT]
            if w.len() >= 7 && w[4].len() == 10 && w[4].as_bytes()[4] == b'-' {
                format!("{} {} {} {}", w[0], w[1], w[2], w[3])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A chain base <- mid <- top (qcow2, 4M) in `dir`, made by QEMU.
fn chain(dir: &Path) -> [PathBuf; 3] {
    let [base, mid, top] = ["base.qcow2", "mid.qcow2", "top.qcow2"].map(|n| dir.join(n));
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "4M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 1 0 1M",
        "-c",
        "write -P 2 2M 512k",
        s(&base),
    ]);
    for (img, back) in [(&mid, "base.qcow2"), (&top, "mid.qcow2")] {
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            back,
            "-F",
            "qcow2",
            s(img),
        ]);
    }
    qemu_io_ok(&["-c", "write -P 3 512k 1M", "-c", "write -z 2M 64k", s(&mid)]);
    qemu_io_ok(&[
        "-c",
        "write -P 4 64k 64k",
        "-c",
        "write -P 5 3M 100k",
        s(&top),
    ]);
    [base, mid, top]
}

/// Two directories with the same chain; returns them and the chains.
fn twin_chains() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    [PathBuf; 3],
    [PathBuf; 3],
) {
    let (qd, bd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let q = chain(qd.path());
    let b = chain(bd.path());
    (qd, bd, q, b)
}

/// Runs `args` ("X" for the image) with qemu-img on `q` and blk on `b`.
fn both(args: &[&str], q: &Path, b: &Path) -> (String, String, i32) {
    let sub = |p: &Path| -> Vec<String> {
        args.iter()
            .map(|a| {
                if *a == "X" {
                    s(p).to_string()
                } else {
                    a.to_string()
                }
            })
            .collect()
    };
    let qa = sub(q);
    let ba = sub(b);
    let qa: Vec<&str> = qa.iter().map(String::as_str).collect();
    let ba: Vec<&str> = ba.iter().map(String::as_str).collect();
    let mut qo = norm(&qemu_img(&qa));
    let bo = norm(&blk(&ba));
    let (qdir, bdir) = (s(q.parent().unwrap()), s(b.parent().unwrap()));
    qo.0 = qo.0.replace(qdir, bdir);
    qo.1 = qo.1.replace(qdir, bdir);
    assert_eq!(qo, bo, "qemu-img vs blk {args:?}");
    bo
}

fn qemu_compare(a: &Path, b: &Path) -> i32 {
    qemu_img(&["compare", s(a), s(b)]).status.code().unwrap()
}

fn check_clean(p: &Path) {
    let o = qemu_img(&["check", s(p)]);
    assert_eq!(o.status.code(), Some(0), "{}: {o:?}", p.display());
}

/// `info --output=json` without the file-specific keys.
fn info_core(p: &Path) -> serde_json::Value {
    let t = qemu_img_ok(&["info", "--output=json", "-U", s(p)]);
    let mut v: serde_json::Value = serde_json::from_str(&t).unwrap();
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                // Snapshot times: the driver stores ns, qemu-img µs; icount:
                // see the report (the driver stores none, qemu-img 0).
                for k in [
                    "filename",
                    "actual-size",
                    "full-backing-filename",
                    "dirty-flag",
                    "date-sec",
                    "date-nsec",
                    "icount",
                ] {
                    o.remove(k);
                }
                o.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn snapshot_round_trips_match_qemu_img() {
    let (_qd, _bd, [.., qt], [.., bt]) = twin_chains();
    let steps: Vec<Vec<&str>> = vec![
        vec!["snapshot", "-l", "X"],
        vec!["snapshot", "-c", "s1", "X"],
        vec!["snapshot", "-c", "s1", "X"],
        vec!["snapshot", "-c", "second", "X"],
        vec!["snapshot", "-l", "X"],
        vec!["snapshot", "-a", "nosuch", "X"],
        vec!["snapshot", "-d", "nosuch", "X"],
        vec!["snapshot", "-l", "-U", "X"],
        vec!["snapshot", "-l", "-f", "raw", "X"],
        vec!["snapshot", "X"],
        vec!["snapshot", "-c", "a", "-d", "b", "X"],
    ];
    for (i, args) in steps.iter().enumerate() {
        let (mut qo, mut bo) = (run(args, &qt, true), run(args, &bt, false));
        let (qdir, bdir) = (s(qt.parent().unwrap()), s(bt.parent().unwrap()));
        qo.1 = qo.1.replace(qdir, bdir);
        qo.0 = mask_dates(&qo.0);
        bo.0 = mask_dates(&bo.0);
        assert_eq!(qo, bo, "step {i} {args:?}");
        // Data written after the snapshots, then reverted.
        if i == 3 {
            for p in [&qt, &bt] {
                qemu_io_ok(&["-c", "write -P 9 0 2M", s(p)]);
            }
        }
    }
    // Applying s1 brings the content back; both images equal and clean.
    both(&["snapshot", "-a", "s1", "X"], &qt, &bt);
    assert_eq!(qemu_compare(&qt, &bt), 0);
    let pristine = qt.with_file_name("pristine.qcow2");
    qemu_img_ok(&[
        "convert",
        "-O",
        "qcow2",
        "-l",
        "second",
        s(&qt),
        s(&pristine),
    ]);
    assert_eq!(qemu_compare(&bt, &pristine), 0, "-a s1 restored the data");
    both(&["snapshot", "-d", "s1", "X"], &qt, &bt);
    let (mut ql, mut bl) = (
        run(&["snapshot", "-l", "X"], &qt, true),
        run(&["snapshot", "-l", "X"], &bt, false),
    );
    ql.0 = mask_dates(&ql.0);
    bl.0 = mask_dates(&bl.0);
    assert_eq!(ql, bl);
    both(&["snapshot", "-d", "second", "X"], &qt, &bt);
    let (mut ql, mut bl) = (
        run(&["snapshot", "-l", "X"], &qt, true),
        run(&["snapshot", "-l", "X"], &bt, false),
    );
    ql.0 = mask_dates(&ql.0);
    bl.0 = mask_dates(&bl.0);
    assert_eq!(ql, bl);
    check_clean(&bt);
    assert_eq!(info_core(&qt), info_core(&bt));
}

fn run(args: &[&str], img: &Path, qemu: bool) -> (String, String, i32) {
    let a: Vec<&str> = args
        .iter()
        .map(|a| if *a == "X" { s(img) } else { a })
        .collect();
    norm(&if qemu { qemu_img(&a) } else { blk(&a) })
}

#[test]
fn rebase_matches_qemu_img() {
    type Case = (&'static str, Vec<&'static str>, bool);
    let cases: Vec<Case> = vec![
        // Safe rebase onto the base: content unchanged.
        (
            "safe onto base",
            vec!["-b", "base.qcow2", "-F", "qcow2"],
            true,
        ),
        // Unsafe: only the header changes (content may change).
        (
            "unsafe",
            vec!["-u", "-b", "base.qcow2", "-F", "qcow2"],
            false,
        ),
        // Standalone.
        ("standalone", vec!["-b", ""], true),
        ("standalone unsafe", vec!["-u", "-b", ""], false),
        // Onto a raw copy of the base.
        ("onto raw", vec!["-b", "base.raw", "-F", "raw"], true),
        // Errors.
        ("no format", vec!["-b", "base.qcow2"], false),
        ("missing", vec!["-b", "nosuch.qcow2", "-F", "qcow2"], false),
        ("no -b", vec!["-F", "qcow2"], false),
    ];
    for (name, opts, keeps_content) in cases {
        let (_qd, _bd, [qb, _, qt], [bb, _, bt]) = twin_chains();
        for (b, d) in [(&qb, &_qd), (&bb, &_bd)] {
            qemu_img_ok(&["convert", "-O", "raw", s(b), s(&d.path().join("base.raw"))]);
        }
        let before = qt.with_file_name("before.raw");
        qemu_img_ok(&["convert", "-O", "raw", s(&qt), s(&before)]);
        let mut args = vec!["rebase"];
        args.extend(&opts);
        args.push("X");
        let (_, _, code) = both(&args, &qt, &bt);
        assert_eq!(qemu_compare(&qt, &bt), 0, "{name}: content differs");
        assert_eq!(info_core(&qt), info_core(&bt), "{name}: info");
        if code == 0 {
            check_clean(&bt);
            if keeps_content {
                assert_eq!(qemu_compare(&bt, &before), 0, "{name}: content changed");
            }
        }
    }
}

#[test]
fn create_qcow2_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = d.join("base.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "3M"]);
    let sets: Vec<Vec<&str>> = vec![
        vec!["-o", "cluster_size=4k", "X", "1G"],
        vec!["-o", "compat=0.10", "X", "100M"],
        vec!["-o", "compat=0.10,refcount_bits=16", "X", "1M"],
        vec!["-o", "extended_l2=on,cluster_size=128k", "X", "10M"],
        vec!["-o", "compression_type=zstd,lazy_refcounts=on", "X", "2G"],
        vec!["-o", "refcount_bits=1", "X", "5M"],
        vec!["-o", "refcount_bits=64,cluster_size=2M", "X", "5M"],
        vec!["-o", "preallocation=metadata", "X", "4M"],
        vec!["-o", "preallocation=falloc", "X", "1M"],
        vec!["-o", "preallocation=full", "X", "1M"],
        vec!["-o", "cluster_size=512", "X", "1M"],
        vec!["-b", "base.qcow2", "-F", "qcow2", "X"],
        vec!["-b", "base.qcow2", "-F", "qcow2", "X", "8M"],
        vec!["-o", "backing_file=base.qcow2,backing_fmt=qcow2", "X", "1M"],
        vec!["-u", "-b", "nosuch.qcow2", "-F", "qcow2", "X", "1M"],
        vec!["-o", "size=2M", "X"],
        vec!["X", "1.5M"],
        vec!["X", "1000"],
        // Errors.
        vec!["-o", "refcount_bits=3", "X", "1M"],
        vec!["-o", "cluster_size=4M", "X", "1M"],
        vec!["-b", "nosuch.qcow2", "-F", "qcow2", "X"],
    ];
    for set in sets {
        let q = d.join("q.qcow2");
        let b = d.join("b.qcow2");
        let _ = std::fs::remove_file(&q);
        let _ = std::fs::remove_file(&b);
        let mut args = vec!["create", "-f", "qcow2"];
        args.extend(&set);
        let (qo, bo) = (run(&args, &q, true), run(&args, &b, false));
        let qo = (qo.0.replace(s(&q), s(&b)), qo.1.replace(s(&q), s(&b)), qo.2);
        assert_eq!(qo, bo, "{set:?}");
        if bo.2 == 0 && !set.contains(&"-u") {
            assert_eq!(info_core(&q), info_core(&b), "{set:?}");
            check_clean(&b);
            assert_eq!(qemu_compare(&q, &b), 0, "{set:?}");
        }
    }
}

#[test]
fn info_backing_chain_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let [base, mid, top] = chain(dir.path());
    for img in [&base, &mid, &top] {
        for extra in [&[][..], &["-f", "qcow2"], &["-U"]] {
            for out in ["--output=json", "--output=human"] {
                let mut a = vec!["info", "--backing-chain", out];
                a.extend_from_slice(extra);
                a.push(s(img));
                assert_eq!(norm(&qemu_img(&a)), norm(&blk(&a)), "{a:?}");
            }
        }
    }
    // A broken chain: the middle image is missing.
    std::fs::remove_file(&mid).unwrap();
    let a = ["info", "--backing-chain", "--output=json", s(&top)];
    assert_eq!(norm(&qemu_img(&a)), norm(&blk(&a)), "{a:?}");
}

#[test]
fn resize_qcow2_matches_qemu_img() {
    let steps: Vec<Vec<&str>> = vec![
        vec!["resize", "X", "+1M"],
        vec!["resize", "X", "8M"],
        vec!["resize", "X", "2M"],
        vec!["resize", "--shrink", "X", "2M"],
        vec!["resize", "--shrink", "X", "-512k"],
        vec!["resize", "-f", "qcow2", "X", "3000000"],
        vec!["resize", "--preallocation=metadata", "X", "+1M"],
        vec!["resize", "--preallocation=full", "X", "+64k"],
        vec!["resize", "--shrink", "X", "1M"],
        vec!["resize", "-q", "X", "+0"],
        vec!["resize", "X", "-8M"],
        vec!["resize", "X", "10E"],
    ];
    let (_qd, _bd, [.., qt], [.., bt]) = twin_chains();
    let mut shrunk = false;
    for args in steps {
        shrunk |= args.contains(&"--shrink");
        let (_, _, code) = both(&args, &qt, &bt);
        // Library gap: preallocation=full on resize allocates differently.
        let (mut qi, mut bi) = (info_core(&qt), info_core(&bt));
        // qemu-img keeps the file length on shrink, the driver truncates.
        if shrunk || args.iter().any(|a| a.starts_with("--preallocation")) {
            qi.as_object_mut().unwrap().remove("children");
            bi.as_object_mut().unwrap().remove("children");
        }
        assert_eq!(qi, bi, "{args:?}");
        assert_eq!(qemu_compare(&qt, &bt), 0, "{args:?}");
        if code == 0 {
            check_clean(&bt);
        }
    }
    // A plain qcow2 (no backing) grown and shrunk.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.qcow2");
    let b = dir.path().join("b.qcow2");
    for p in [&q, &b] {
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4k",
            s(p),
            "2M",
        ]);
        qemu_io_ok(&["-c", "write -P 7 0 2M", s(p)]);
    }
    for args in [
        vec!["resize", "X", "+3M"],
        vec!["resize", "--shrink", "X", "1M"],
        vec!["resize", "--shrink", "X", "512"],
    ] {
        both(&args, &q, &b);
        assert_eq!(info_core(&q), info_core(&b), "{args:?}");
        assert_eq!(qemu_compare(&q, &b), 0, "{args:?}");
        check_clean(&b);
    }
}
