//! `blk bench` against `qemu-img bench`: option errors, output lines and exit
//! codes match; the requests written (offsets, sizes, pattern, wrap-around,
//! flushes) leave the same image content.

use blk_tests::{blk, qemu_img, qemu_img_ok, s};

/// Stdout without the timing, stderr without the program prefix, exit code.
fn norm(o: &std::process::Output) -> (String, String, i32) {
    let out = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            if l.starts_with("Run completed in ") && l.ends_with(" seconds.") {
                "Run completed in T seconds.".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        out,
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

#[test]
fn bench_options_and_errors_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&img), "1M"]);
    let f = s(&img);
    let cases: &[&[&str]] = &[
        &["-c", "10", "-d", "0"],
        &["-c", "-1"],
        &["-c", "x"],
        &["-c", "1k"],
        &["-c", "2147483648"],
        &["-d", "x"],
        &["-s", "0", "-c", "3"],
        &["-s", "x"],
        &["-s", "-1"],
        &["-s", "3G"],
        &["-o", "x"],
        &["-o", "-1"],
        &["-S", "x"],
        &["-S", "-1"],
        &["-t", "foo"],
        &["-i", "foo"],
        &["-i", "native", "-c", "1"],
        &["-n", "-c", "1"],
        &["-w", "--pattern", "256"],
        &["-w", "--pattern", "x"],
        &["--flush-interval", "2"],
        &["-w", "--flush-interval", "2"],
        &["-w", "--flush-interval", "x"],
        // Successful runs: the two lines qemu-img prints.
        &["-c", "5"],
        &["-q", "-c", "5"],
        &["-c", "010", "-d", "0x3"],
        &["-c", " 5"],
        &["-c", "1", "-o", "1.5k"],
        &["-c", "1", "-s", "1.5k"],
        &["-c", "1", "-S", "0"],
        &["-c", "1", "-t", "none", "-i", "threads"],
        &["-c", "3", "-f", "qcow2", "-U"],
        &["-w", "--flush-interval", "64", "-c", "100"],
        &["-w", "--no-drain", "-c", "1"],
        // Requests past the end fail with EIO; the wrap is modulo the size.
        &["-c", "1", "-o", "1M"],
        &["-c", "2", "-s", "2M"],
        &["-c", "2", "-S", "1021k"],
        &["-c", "3", "-S", "1000k"],
        &["-c", "2", "-s", "1M"],
        &["-c", "3", "-f", "foo"],
    ];
    for c in cases {
        let mut args = vec!["bench"];
        args.extend_from_slice(c);
        args.push(f);
        same(&args);
    }
    let (_, _, code) = same(&["bench"]);
    assert_eq!(code, 1);
    let (_, _, code) = same(&["bench", f, f]);
    assert_eq!(code, 1);
    let missing = dir.path().join("missing");
    let (_, _, code) = same(&["bench", "-c", "1", s(&missing)]);
    assert_eq!(code, 1);
}

/// The same write run with both tools leaves identical, clean images.
fn same_writes(fmt: &str, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.img");
    let b = dir.path().join("b.img");
    for p in [&q, &b] {
        qemu_img_ok(&["create", "-q", "-f", fmt, s(p), "1M"]);
    }
    let mut args = vec!["bench", "-f", fmt, "-w"];
    args.extend_from_slice(extra);
    let mut qa = args.clone();
    qa.push(s(&q));
    let mut ba = args.clone();
    ba.push(s(&b));
    let qo = norm(&qemu_img(&qa));
    let bo = norm(&blk(&ba));
    assert_eq!(qo, bo, "{args:?}");
    assert_eq!(bo.2, 0, "{args:?}: {bo:?}");
    let c = qemu_img(&["compare", "-f", fmt, "-F", fmt, s(&q), s(&b)]);
    assert!(c.status.success(), "{args:?}: {c:?}");
    if fmt == "qcow2" {
        qemu_img_ok(&["check", s(&b)]);
    }
}

#[test]
fn bench_writes_match_qemu_img() {
    for fmt in ["qcow2", "raw"] {
        same_writes(fmt, &["-c", "300", "-d", "8", "--pattern", "0x5a"]);
        // Unaligned requests, a stride and an offset; wraps around the end.
        same_writes(
            fmt,
            &[
                "-c",
                "200",
                "-d",
                "8",
                "-s",
                "3000",
                "-S",
                "5000",
                "-o",
                "777",
                "--pattern",
                "7",
            ],
        );
        same_writes(
            fmt,
            &["-c", "600", "-d", "4", "-S", "28k", "--pattern", "9"],
        );
        // Flushes, drained or not.
        same_writes(
            fmt,
            &[
                "-c",
                "100",
                "-d",
                "4",
                "--flush-interval",
                "8",
                "--pattern",
                "1",
            ],
        );
        same_writes(
            fmt,
            &[
                "-c",
                "100",
                "-d",
                "4",
                "--flush-interval",
                "8",
                "--no-drain",
                "--pattern",
                "2",
            ],
        );
    }
}

#[test]
fn bench_null_co_baseline() {
    let o = blk(&[
        "bench",
        "-f",
        "null-co",
        "-c",
        "1000",
        "-d",
        "16",
        "null-co://",
    ]);
    let (out, err, code) = norm(&o);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "Sending 1000 read requests, 4096 bytes each, 16 in parallel (starting at offset 0, step size 4096)\nRun completed in T seconds."
    );
}
