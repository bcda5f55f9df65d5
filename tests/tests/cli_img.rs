//! `blk` image subcommands against `qemu-img`: info, create, convert, check,
//! map, compare, resize, snapshot give the same output and exit codes.

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

fn same(qargs: &[&str]) -> (String, String, i32) {
    let q = norm(&qemu_img(qargs));
    let b = norm(&blk(qargs));
    assert_eq!(q, b, "qemu-img vs blk {qargs:?}");
    b
}

/// A qcow2 chain made by QEMU: base (data at 0 and 1M), top (data at 64k,
/// zeroes at 1M).
fn chain(dir: &Path) -> (String, String) {
    let base = dir.join("base.qcow2");
    let top = dir.join("top.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&base), "8M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 1 0 64k",
        "-c",
        "write -P 2 1M 128k",
        s(&base),
    ]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    qemu_io_ok(&["-c", "write -P 3 64k 64k", "-c", "write -z 1M 64k", s(&top)]);
    (s(&base).to_string(), s(&top).to_string())
}

#[test]
fn info_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let (base, top) = chain(dir.path());
    let raw = dir.path().join("r.img");
    qemu_img_ok(&["create", "-f", "raw", s(&raw), "1M"]);
    for f in [base.as_str(), top.as_str(), s(&raw)] {
        same(&["info", f]);
        same(&["info", "--output=json", f]);
        same(&["info", "--backing-chain", f]);
        same(&["info", "--backing-chain", "--output=json", f]);
    }
    let (_, _, code) = same(&["info", "--output=xml", &top]);
    assert_eq!(code, 1);
    let missing = dir.path().join("missing");
    let (_, _, code) = same(&["info", s(&missing)]);
    assert_eq!(code, 1);
}

#[test]
fn create_raw_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.img");
    let b = dir.path().join("b.img");
    for (size, extra) in [("1M", ""), ("1.5M", "preallocation=full"), ("64k", "")] {
        let mut qa = vec!["create", "-f", "raw"];
        let mut ba = qa.clone();
        if !extra.is_empty() {
            qa.extend(["-o", extra]);
            ba.extend(["-o", extra]);
        }
        qa.extend([s(&q), size]);
        ba.extend([s(&b), size]);
        let qo = qemu_img_ok(&qa);
        let bo = blk_tests::blk_ok(&ba);
        assert_eq!(qo.replace(s(&q), "X"), bo.replace(s(&b), "X"));
        assert_eq!(
            std::fs::metadata(&q).unwrap().len(),
            std::fs::metadata(&b).unwrap().len()
        );
    }
    let (_, err, code) = norm(&blk(&["create", "-f", "raw", s(&b), "1Q"]));
    assert_eq!(
        (err.as_str(), code),
        ("Invalid image size specified: '1Q'.\n", 1)
    );
    let (_, err, code) = norm(&blk(&["create", "-f", "raw", s(&b)]));
    assert_eq!(code, 1);
    assert!(
        err.contains("Image creation needs a size parameter"),
        "{err}"
    );
    let (base, _) = chain(dir.path());
    let (_, err, code) = norm(&blk(&["create", "-f", "qcow2", "-b", &base, s(&b)]));
    assert_eq!(code, 1);
    assert!(
        err.contains("Backing file specified without backing format"),
        "{err}"
    );
    let (_, err, code) = norm(&blk(&[
        "create",
        "-f",
        "raw",
        "-b",
        &base,
        "-F",
        "qcow2",
        s(&b),
    ]));
    assert_eq!(code, 1);
    assert!(
        err.contains("Backing file not supported for file format 'raw'"),
        "{err}"
    );
}

#[test]
fn convert_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let (_, top) = chain(dir.path());
    let s1 = dir.path().join("s1.img");
    let s2 = dir.path().join("s2.img");
    qemu_img_ok(&["create", "-f", "raw", s(&s1), "3M"]);
    qemu_img_ok(&["create", "-f", "raw", s(&s2), "1M"]);
    qemu_io_ok(&[
        "-f",
        "raw",
        "-c",
        "write -P 0x11 4k 8k",
        "-c",
        "write -P 0x22 2M 1k",
        s(&s1),
    ]);
    qemu_io_ok(&["-f", "raw", "-c", "write -P 0x33 512k 4k", s(&s2)]);
    let q = dir.path().join("q.out");
    let b = dir.path().join("b.out");
    for (srcs, opts) in [
        (vec![top.as_str()], vec![]),
        (vec![s(&s1), s(&s2)], vec![]),
        (vec![s(&s1), s(&s2)], vec!["-S", "0"]),
        (vec![top.as_str()], vec!["-m", "1", "-W"]),
    ] {
        let _ = std::fs::remove_file(&q);
        let _ = std::fs::remove_file(&b);
        let mut qa = vec!["convert", "-O", "raw"];
        qa.extend(&opts);
        qa.extend(&srcs);
        let mut ba = qa.clone();
        qa.push(s(&q));
        ba.push(s(&b));
        qemu_img_ok(&qa);
        blk_tests::blk_ok(&ba);
        assert_eq!(
            std::fs::read(&q).unwrap(),
            std::fs::read(&b).unwrap(),
            "{ba:?}"
        );
    }
    // Holes stay holes.
    let _ = std::fs::remove_file(&b);
    blk_tests::blk_ok(&["convert", "-O", "raw", &top, s(&b)]);
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&b).unwrap().blocks() * 512 < 1 << 20);
    // Errors as qemu-img's.
    let small = dir.path().join("small.img");
    qemu_img_ok(&["create", "-f", "raw", s(&small), "512k"]);
    for args in [
        vec!["convert", "-n", "-O", "raw", s(&s1), s(&small)],
        vec!["convert", "-m", "17", "-O", "raw", s(&s1), s(&q)],
        vec!["convert", "-S", "100", "-O", "raw", s(&s1), s(&q)],
        vec!["convert", "--target-is-zero", "-O", "raw", s(&s1), s(&q)],
        vec!["convert", "-c", "-O", "raw", s(&s1), s(&q)],
        vec!["convert", "-O", "raw", s(&s1)],
    ] {
        let (_, _, code) = same(&args);
        assert_eq!(code, 1, "{args:?}");
    }
}

#[test]
fn map_check_compare_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let (base, top) = chain(dir.path());
    let flat = dir.path().join("flat.raw");
    qemu_img_ok(&["convert", "-O", "raw", &top, s(&flat)]);
    for f in [base.as_str(), top.as_str(), s(&flat)] {
        same(&["map", f]);
        same(&["map", "--output=json", f]);
    }
    same(&[
        "map",
        "--output=json",
        "--start-offset",
        "64k",
        "--max-length",
        "1M",
        &top,
    ]);
    for f in [base.as_str(), top.as_str()] {
        let (_, _, code) = same(&["check", f]);
        assert_eq!(code, 0);
        same(&["check", "--output=json", f]);
    }
    let (_, _, code) = same(&["check", s(&flat)]);
    assert_eq!(code, 63);
    let (_, _, code) = same(&["compare", &top, s(&flat)]);
    assert_eq!(code, 0);
    let (_, _, code) = same(&["compare", "-s", &top, s(&flat)]);
    assert_eq!(code, 1);
    let (_, _, code) = same(&["compare", &top, &base]);
    assert_eq!(code, 1);
    let other = dir.path().join("other.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&other), "9M"]);
    let (_, _, code) = same(&["compare", s(&flat), s(&other)]);
    assert_eq!(code, 1);
    let missing = dir.path().join("missing");
    let (_, _, code) = same(&["compare", s(&flat), s(&missing)]);
    assert_eq!(code, 2);
}

#[test]
fn resize_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.img");
    let b = dir.path().join("b.img");
    qemu_img_ok(&["create", "-f", "raw", s(&q), "2M"]);
    qemu_img_ok(&["create", "-f", "raw", s(&b), "2M"]);
    for args in [
        vec!["-f", "raw", "X", "1M"],
        vec!["-f", "raw", "X", "--shrink", "1M"],
        vec!["-f", "raw", "X", "+1M"],
        vec!["-f", "raw", "X", "abc"],
        vec!["-f", "raw", "--preallocation=bogus", "X", "5M"],
    ] {
        let qa: Vec<&str> = std::iter::once("resize")
            .chain(args.iter().map(|a| if *a == "X" { s(&q) } else { a }))
            .collect();
        let ba: Vec<&str> = std::iter::once("resize")
            .chain(args.iter().map(|a| if *a == "X" { s(&b) } else { a }))
            .collect();
        assert_eq!(norm(&qemu_img(&qa)), norm(&blk(&ba)), "{args:?}");
        assert_eq!(
            std::fs::metadata(&q).unwrap().len(),
            std::fs::metadata(&b).unwrap().len()
        );
    }
}

#[test]
fn plugins_lists_static_drivers() {
    let out = blk_tests::blk_ok(&["plugins", "--output=json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().unwrap();
    for name in ["file", "raw", "qcow2", "null-co"] {
        let d = arr
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(d["origin"], "static");
        assert!(d["abi"].as_str().unwrap().starts_with("1."));
        assert!(d["caps"].is_array());
    }
    let raw = arr.iter().find(|d| d["name"] == "raw").unwrap();
    assert_eq!(raw["kind"], "format");
    let human = blk_tests::blk_ok(&["plugins"]);
    assert!(human.starts_with("NAME"), "{human}");
}

#[test]
fn usage_errors_exit_1_without_panic() {
    // (`io` without an image is qemu-io's interactive mode: see cli_io_surface.)
    for args in [vec!["info"], vec!["nosuchcmd"], vec!["convert"]] {
        let o = blk(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}
