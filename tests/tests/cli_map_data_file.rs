//! qcow2 images with an external data file (`data_file=`, with and without
//! `data_file_raw=on`): `blk map` (human and JSON) prints what `qemu-img map`
//! prints, host offsets into the data file and its name in the "File"
//! column, on images made and written by QEMU and by blk (empty, data,
//! zero clusters with and without their allocation, discards, sub-cluster
//! writes), linked in and through the plugin libraries (the extent's
//! `mapped_child` crosses the C ABI). Convert and compare of such images
//! match qemu-img too.

use blk_tests::{blk, blk_bin, blk_ok, plugin_dir, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Stdout, stderr without the program prefix, exit code.
fn norm(o: &Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr)
            .replace("qemu-img: ", "")
            .replace("blk: ", ""),
        o.status.code().unwrap_or(-1),
    )
}

/// blk with only the plugin libraries serving every driver.
fn blk_plugins(args: &[&str]) -> Output {
    std::process::Command::new(blk_bin())
        .env("BLK_BUILTIN_DRIVERS", "0")
        .env("BLK_PLUGIN_PATH", plugin_dir())
        .args(args)
        .output()
        .unwrap()
}

/// The guest writes of the matrix: data, sub-cluster data, zeros that keep
/// or drop their allocation, zeros over data, a discard.
const WRITES: &[&str] = &[
    "write -P 1 0 64k",
    "write -P 2 1M 192k",
    "write -P 3 3076k 4k",
    "write -z 2M 64k",
    "write -z -u 5M 128k",
    "write -z 1088k 64k",
    "discard 1152k 64k",
    "write -P 4 7M 64k",
];

/// qcow2 images with a data file (absolute name: QEMU opens a relative one
/// from the working directory), made and written by `tool` ("qemu" or
/// "blk"): raw and non-raw data file, empty and written.
fn data_file_images(dir: &Path, tool: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (i, (opts, write)) in [
        ("", false),
        ("", true),
        (",data_file_raw=on", false),
        (",data_file_raw=on", true),
        (",extended_l2=on", true),
        (",data_file_raw=on,preallocation=metadata", true),
    ]
    .iter()
    .enumerate()
    {
        let img = dir.join(format!("{tool}{i}.qcow2"));
        let data = dir.join(format!("{tool}{i}.data"));
        let o = format!("data_file={}{opts}", s(&data));
        let a = ["create", "-q", "-f", "qcow2", "-o", &o, s(&img), "8M"];
        if tool == "qemu" {
            qemu_img_ok(&a);
        } else {
            blk_ok(&a);
        }
        if *write {
            let mut a = vec!["-f", "qcow2"];
            for c in WRITES {
                a.extend(["-c", c]);
            }
            a.push(s(&img));
            if tool == "qemu" {
                qemu_io_ok(&a);
            } else {
                let mut b = vec!["io"];
                b.extend(a);
                blk_ok(&b);
            }
        }
        v.push(img);
    }
    v
}

/// `map` of `img` in both formats and with a start offset and length:
/// qemu-img and `run` (blk linked in or through plugins) print the same.
fn same_map(img: &Path, run: fn(&[&str]) -> Output) {
    for out in ["--output=human", "--output=json"] {
        for range in [&[][..], &["-s", "1M", "-l", "3M"]] {
            let mut a = vec!["map", out];
            a.extend_from_slice(range);
            a.push(s(img));
            let q = norm(&qemu_img(&a));
            assert_eq!(q.2, 0, "qemu-img {a:?}: {}", q.1);
            assert_eq!(q, norm(&run(&a)), "qemu-img vs blk {a:?}");
        }
    }
}

#[test]
fn map_of_data_file_images_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["qemu", "blk"] {
        for img in data_file_images(dir.path(), tool) {
            same_map(&img, blk);
            // What blk wrote is a consistent image for QEMU.
            qemu_img_ok(&["check", s(&img)]);
        }
    }
    // The data file's name is in the "File" column, the offsets are into it.
    let img = dir.path().join("qemu1.qcow2");
    let out = blk_ok(&["map", s(&img)]);
    let data = dir.path().join("qemu1.data");
    assert!(out.lines().nth(1).unwrap().ends_with(s(&data)), "{out}");
}

#[test]
fn map_of_data_file_images_through_plugin_libraries_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for img in data_file_images(dir.path(), "qemu") {
        same_map(&img, blk_plugins);
    }
}

#[test]
fn convert_and_compare_of_data_file_images_match_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = data_file_images(dir.path(), "qemu");
    for (i, src) in imgs.iter().enumerate() {
        for fmt in ["raw", "qcow2"] {
            let q = dir.path().join(format!("q{i}.{fmt}"));
            let b = dir.path().join(format!("b{i}.{fmt}"));
            let qo = norm(&qemu_img(&["convert", "-p", "-O", fmt, s(src), s(&q)]));
            let bo = norm(&blk(&["convert", "-p", "-O", fmt, s(src), s(&b)]));
            assert_eq!(qo, bo, "convert -O {fmt} {}", s(src));
            assert_eq!(
                qemu_img_ok(&["map", "--output=json", "-f", fmt, s(&q)]),
                qemu_img_ok(&["map", "--output=json", "-f", fmt, s(&b)]),
                "targets of convert -O {fmt} {}",
                s(src)
            );
            // Both tools compare the data-file image with either target
            // alike, in both directions.
            for (x, y) in [(src, &b), (src, &q), (&b, src)] {
                let a = ["compare", s(x), s(y)];
                let qc = norm(&qemu_img(&a));
                assert_eq!(qc.2, 0, "qemu-img {a:?}: {qc:?}");
                assert_eq!(qc, norm(&blk(&a)), "{a:?}");
            }
        }
        // A difference in the data file is found by both.
        if i == 1 {
            let other = dir.path().join("other.raw");
            qemu_img_ok(&["convert", "-O", "raw", s(src), s(&other)]);
            qemu_io_ok(&["-f", "raw", "-c", "write -P 9 7M 512", s(&other)]);
            let a = ["compare", s(src), s(&other)];
            let qc = norm(&qemu_img(&a));
            assert_eq!(qc.2, 1, "{qc:?}");
            assert_eq!(qc, norm(&blk(&a)), "{a:?}");
        }
    }
}
