//! vpc (VHD) images against qemu-img and qemu-io, both directions: images
//! QEMU writes read byte-identically in blk, images blk writes compare
//! identical in QEMU (which has no check for vpc: `qemu-img compare` is the
//! judge), and both tools lay new images out the same way.

use blk_tests::{blk, blk_ok, qemu_img_ok, qemu_io_ok, s};
use std::path::Path;

/// Create options as qemu-img names them, each case with its size.
const CASES: &[(&str, &str)] = &[
    ("", "20M"),
    ("subformat=dynamic", "5000000"),
    ("subformat=fixed", "12M"),
    ("force_size=on", "7000001"),
    ("subformat=fixed,force_size=on", "3M"),
];

/// The seeded qemu-io / blk io commands of case `seed` for a disk of
/// `size` bytes: pattern writes, overwrites, and zero writes when `zeros`.
fn commands(seed: u64, size: u64, zeros: bool) -> Vec<String> {
    use rand::Rng;
    let mut r = blk_tests::rng(seed);
    let mut out = Vec::new();
    for i in 0..14 {
        let len = r.gen_range(1..300u64) * 512;
        let off = r.gen_range(0..(size - len) / 512) * 512;
        if zeros && i % 5 == 4 {
            out.push(format!("write -z {off} {len}"));
        } else {
            out.push(format!("write -P {} {off} {len}", r.gen::<u8>()));
        }
    }
    // The last sector of the disk.
    out.push(format!("write -P 0x7e {} 512", size - 512));
    out
}

fn io_args<'a>(cmds: &'a [String], img: &'a Path) -> Vec<&'a str> {
    let mut a = vec!["-f", "vpc"];
    for c in cmds {
        a.push("-c");
        a.push(c);
    }
    a.push(s(img));
    a
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).expect("json")
}

fn create_args<'a>(opts: &'a str, img: &'a Path, size: &'a str) -> Vec<&'a str> {
    let mut a = vec!["create", "-f", "vpc"];
    if !opts.is_empty() {
        a.extend(["-o", opts]);
    }
    a.extend([s(img), size]);
    a
}

/// The file with the bytes that differ between any two new images masked:
/// the footer's timestamp, checksum and unique id (in both copies).
fn masked(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    let end = b.len() - 512;
    for at in [0, end] {
        if &b[at..at + 8] == b"conectix" {
            b[at + 24..at + 28].fill(0);
            b[at + 64..at + 84].fill(0);
        }
    }
    b
}

#[test]
fn qemu_written_images_read_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (n, &(opts, size)) in CASES.iter().enumerate() {
        let img = dir.path().join(format!("q{n}.vhd"));
        qemu_img_ok(&create_args(opts, &img, size));
        let info = json(&qemu_img_ok(&[
            "info",
            "-f",
            "vpc",
            "--output=json",
            s(&img),
        ]));
        let vsize = info["virtual-size"].as_u64().unwrap();
        let cmds = commands(n as u64 + 1, vsize, true);
        qemu_io_ok(&io_args(&cmds, &img));
        let ours = dir.path().join(format!("q{n}.blk.raw"));
        let theirs = dir.path().join(format!("q{n}.qemu.raw"));
        blk_ok(&["convert", "-f", "vpc", "-O", "raw", s(&img), s(&ours)]);
        qemu_img_ok(&["convert", "-f", "vpc", "-O", "raw", s(&img), s(&theirs)]);
        let a = std::fs::read(&ours).unwrap();
        assert_eq!(a.len() as u64, vsize, "{opts}");
        assert!(
            a == std::fs::read(&theirs).unwrap(),
            "{opts}: contents differ"
        );
        assert!(a.iter().any(|&b| b != 0), "{opts}: the writes are there");
        // Info as qemu-img's.
        let ours = json(&blk_ok(&["info", "-f", "vpc", "--output=json", s(&img)]));
        for key in ["virtual-size", "cluster-size"] {
            assert_eq!(ours[key], info[key], "{opts}: {key}");
        }
        assert_eq!(ours["format"], "vpc");
        // Map as qemu-img's: allocated blocks as data at their offsets,
        // unallocated ones as (allocated) zeros, a fixed image as its file.
        let m = ["map", "-f", "vpc", "--output=json", s(&img)];
        assert_eq!(json(&blk_ok(&m)), json(&qemu_img_ok(&m)), "{opts}: map");
    }
}

#[test]
fn blk_written_images_compare_identical_in_qemu() {
    let dir = tempfile::tempdir().unwrap();
    for (n, &(opts, size)) in CASES.iter().enumerate() {
        let ours = dir.path().join(format!("b{n}.vhd"));
        let theirs = dir.path().join(format!("q{n}.vhd"));
        let out = blk_ok(&create_args(opts, &ours, size));
        let qout = qemu_img_ok(&create_args(opts, &theirs, size));
        // "Formatting ..." names the size as given, as qemu-img does.
        assert_eq!(
            out.replace(s(&ours), "X"),
            qout.replace(s(&theirs), "X"),
            "{opts}"
        );
        // The same layout, byte for byte (but the ids and times).
        assert!(
            masked(&ours) == masked(&theirs),
            "{opts}: new images differ"
        );
        let qinfo = json(&qemu_img_ok(&[
            "info",
            "-f",
            "vpc",
            "--output=json",
            s(&ours),
        ]));
        let vsize = qinfo["virtual-size"].as_u64().unwrap();
        // Pattern writes: blocks are allocated in the same order with the
        // same contents. Then zero writes, which blk keeps sparse on
        // unallocated blocks where QEMU allocates them: the same guest
        // contents, not the same file.
        for (round, zeros) in [(0, false), (1, true)] {
            let cmds = commands(100 + 10 * round + n as u64, vsize, zeros);
            let mut a = vec!["io"];
            a.extend(io_args(&cmds, &ours));
            blk_ok(&a);
            qemu_io_ok(&io_args(&cmds, &theirs));
            let out = qemu_img_ok(&["compare", "-f", "vpc", "-F", "vpc", s(&ours), s(&theirs)]);
            assert!(out.contains("Images are identical"), "{opts}: {out}");
            if !zeros {
                assert!(
                    masked(&ours) == masked(&theirs),
                    "{opts}: written images differ"
                );
            }
        }
    }
}

#[test]
fn blk_converts_raw_and_qcow2_to_vpc_that_qemu_reads() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let mut data = vec![0u8; 9 << 20];
    for (i, chunk) in data.chunks_mut(1 << 20).enumerate() {
        if i % 3 != 1 {
            chunk[..300_000].copy_from_slice(&blk_tests::random_bytes(i as u64, 300_000));
        }
    }
    std::fs::write(&raw, &data).unwrap();
    let qcow2 = dir.path().join("src.qcow2");
    qemu_img_ok(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&qcow2)]);
    for (src, fmt) in [(&raw, "raw"), (&qcow2, "qcow2")] {
        for sub in ["dynamic", "fixed"] {
            let out = dir.path().join(format!("{fmt}-{sub}.vhd"));
            let o = format!("subformat={sub}");
            blk_ok(&["convert", "-f", fmt, "-O", "vpc", "-o", &o, s(src), s(&out)]);
            // The CHS size is at least the source's: compare allows a larger
            // second image when the rest is zeros.
            let r = qemu_img_ok(&["compare", "-f", fmt, "-F", "vpc", s(src), s(&out)]);
            assert!(r.contains("Images are identical"), "{fmt} {sub}: {r}");
            let q = json(&qemu_img_ok(&[
                "info",
                "-f",
                "vpc",
                "--output=json",
                s(&out),
            ]));
            assert!(q["virtual-size"].as_u64().unwrap() >= 9 << 20);
        }
    }
}

#[test]
fn damaged_images_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.vhd");
    qemu_img_ok(&["create", "-q", "-f", "vpc", s(&img), "8M"]);
    let mut b = std::fs::read(&img).unwrap();
    // A block size of 0 in the dynamic header (checksum left wrong too).
    b[512 + 32..512 + 36].fill(0);
    std::fs::write(&img, &b).unwrap();
    let o = blk(&["info", "-f", "vpc", s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum") || err.contains("block size"),
        "{err}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), b, "nothing changed");
}

#[test]
fn what_qemu_cannot_do_with_vpc_blk_refuses_in_its_words() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("n.vhd");
    qemu_img_ok(&["create", "-q", "-f", "vpc", s(&img), "8M"]);
    let before = std::fs::read(&img).unwrap();
    for args in [
        vec!["check", s(&img)],
        vec!["resize", s(&img), "30M"],
        vec!["measure", "-O", "vpc", "--size", "10M"],
        vec!["amend", "-o", "size=1G", s(&img)],
    ] {
        let q = blk_tests::qemu_img(&args);
        let b = blk(&args);
        assert_eq!(b.status.code(), q.status.code(), "{args:?}");
        let qerr = String::from_utf8_lossy(&q.stderr).replace("qemu-img:", "blk:");
        assert_eq!(String::from_utf8_lossy(&b.stderr), qerr, "{args:?}");
    }
    assert_eq!(std::fs::read(&img).unwrap(), before);
}
