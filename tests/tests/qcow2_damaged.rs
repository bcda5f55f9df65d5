//! Damaged and unsupported qcow2 images, built at run time with qemu-img,
//! qemu-io and byte patches, run through `qemu-img` and `blk` alike: info,
//! check, check -r leaks, check -r all and convert must give the same exit
//! codes and output (file names normalised) and recover the same data;
//! unsupported versions, unknown features and formats blk has no driver
//! for are refused as QEMU refuses them, never opened as raw.

use blk_tests::{blk, qemu_img, qemu_img_ok, qemu_io_ok, s};
use std::path::{Path, PathBuf};

/// Stdout, stderr without the program prefix, exit code.
fn norm(o: &std::process::Output, name: &str) -> (String, String, i32) {
    let f = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace("qemu-img: ", "")
            .replace("blk: ", "")
            .replace(name, "X")
    };
    (f(&o.stdout), f(&o.stderr), o.status.code().unwrap_or(-1))
}

/// The undamaged image: 4 MiB, 64 KiB clusters, two written extents.
fn base(dir: &Path) -> PathBuf {
    let p = dir.join("base.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&p), "4M"]);
    qemu_io_ok(&[
        "-c",
        "write -P 0x11 0 256k",
        "-c",
        "write -P 0x22 1M 128k",
        "-c",
        "write -P 0x33 3M 64k",
        s(&p),
    ]);
    p
}

fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}

/// A copy of `src` named `name` with `patch` applied to its bytes.
fn damaged(src: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(src).unwrap();
    patch(&mut b);
    let p = src.with_file_name(format!("{name}.qcow2"));
    std::fs::write(&p, b).unwrap();
    p
}

/// Runs `args` ("X" = the image) through qemu-img on one copy of `img`
/// and blk on another; both must agree. Returns the copies and the output.
fn same_on_copies(
    img: &Path,
    tag: &str,
    args: &[&str],
) -> (PathBuf, PathBuf, (String, String, i32)) {
    let q = img.with_extension(format!("{tag}.q"));
    let b = img.with_extension(format!("{tag}.b"));
    std::fs::copy(img, &q).unwrap();
    std::fs::copy(img, &b).unwrap();
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
    let qa = sub(&q);
    let ba = sub(&b);
    let qo = norm(
        &qemu_img(&qa.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        s(&q),
    );
    let bo = norm(
        &blk(&ba.iter().map(|x| x.as_str()).collect::<Vec<_>>()),
        s(&b),
    );
    assert_eq!(qo, bo, "qemu-img vs blk {args:?} on {}", img.display());
    (q, b, bo)
}

/// `convert -O raw` through both tools; the guest data must be equal.
fn same_convert(img: &Path) -> i32 {
    let q = img.with_extension("q.raw");
    let b = img.with_extension("b.raw");
    let qo = norm(&qemu_img(&["convert", "-O", "raw", s(img), s(&q)]), s(img));
    let bo = norm(&blk(&["convert", "-O", "raw", s(img), s(&b)]), s(img));
    assert_eq!(qo, bo, "convert {}", img.display());
    if qo.2 == 0 {
        assert_eq!(
            std::fs::read(&q).unwrap(),
            std::fs::read(&b).unwrap(),
            "converted data of {}",
            img.display()
        );
    }
    qo.2
}

/// info, map, check, check -r leaks/all (the repaired copies must be equal
/// and check the same with qemu-img; human and JSON output) and convert,
/// through both tools. Returns the exit codes of check,
/// -r leaks, -r all.
fn same_everywhere(img: &Path) -> [i32; 3] {
    let info = same_on_copies(img, "info", &["info", "X"]);
    assert_eq!(info.2 .2, 0, "info {}", img.display());
    same_on_copies(img, "infoj", &["info", "--output=json", "X"]);
    same_on_copies(img, "map", &["map", "--output=json", "X"]);
    same_on_copies(img, "cj", &["check", "--output=json", "X"]);
    same_on_copies(img, "rj", &["check", "-r", "all", "--output=json", "X"]);
    let mut codes = [0; 3];
    for (i, args) in [
        vec!["check", "X"],
        vec!["check", "-r", "leaks", "X"],
        vec!["check", "-r", "all", "X"],
    ]
    .iter()
    .enumerate()
    {
        let (q, b, (_, _, code)) = same_on_copies(img, &format!("c{i}"), args);
        codes[i] = code;
        // Repairs lay the image out as qemu-img does, byte for byte.
        assert!(
            std::fs::read(&q).unwrap() == std::fs::read(&b).unwrap(),
            "{args:?} on {}: the repaired images differ",
            img.display()
        );
        // The repaired (or untouched) copies check the same way.
        let qc = norm(&qemu_img(&["check", s(&q)]), s(&q));
        let bc = norm(&qemu_img(&["check", s(&b)]), s(&b));
        assert_eq!(
            qc,
            bc,
            "{args:?} on {}: qemu-img check after",
            img.display()
        );
        if qc.2 == 0 {
            let c = qemu_img(&["compare", s(&q), s(&b)]);
            assert_eq!(c.status.code(), Some(0), "{args:?} on {}", img.display());
        }
    }
    assert_eq!(same_convert(img), 0);
    codes
}

#[test]
fn refcount_table_past_the_end_opens_read_only_and_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "rt_eof", |d| {
        d[48..56].copy_from_slice(&0x100_0000u64.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 1, 0]);
    // Writable opens of the damaged image are refused; nothing changes.
    let before = std::fs::read(&p).unwrap();
    let o = blk(&["io", "-c", "write -P 0x44 0 512", s(&p)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged"));
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

#[test]
fn l1_table_past_the_end_reads_as_unallocated() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "l1_eof", |d| {
        d[40..48].copy_from_slice(&0x100_0000u64.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
}

#[test]
fn truncated_file_recovers_the_data_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    // Cut in the middle of the first extent's data clusters.
    let p = damaged(&b, "trunc", |d| d.truncate(0x58000));
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
}

#[test]
fn snapshot_table_past_the_end_lists_blank_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "snap_eof", |d| {
        d[60..64].copy_from_slice(&2u32.to_be_bytes());
        d[64..72].copy_from_slice(&0x200_0000u64.to_be_bytes());
    });
    // -r all completes the entries and moves the table inside the file.
    assert_eq!(same_everywhere(&p), [2, 2, 0]);
    let (_, b, _) = same_on_copies(&p, "r", &["check", "-r", "all", "X"]);
    same_on_copies(&b, "l", &["snapshot", "-l", "X"]);
    same_on_copies(&p, "l", &["snapshot", "-l", "X"]);
}

#[test]
fn garbage_snapshot_table_is_refused_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    // The snapshot table points into guest data (0x11 bytes).
    let data = {
        let d = std::fs::read(&b).unwrap();
        let l2 = be64(&d, be64(&d, 40) as usize) & 0x00ff_ffff_ffff_fe00;
        be64(&d, l2 as usize) & 0x00ff_ffff_ffff_fe00
    };
    let p = damaged(&b, "snap_garbage", |d| {
        d[60..64].copy_from_slice(&3u32.to_be_bytes());
        d[64..72].copy_from_slice(&data.to_be_bytes());
    });
    let (_, _, (_, err, code)) = same_on_copies(&p, "i", &["info", "X"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Too much extra metadata in snapshot table entry 0"),
        "{err}"
    );
    let q = qemu_img(&["convert", "-O", "raw", s(&p), s(&p.with_extension("raw"))]);
    let o = blk(&["convert", "-O", "raw", s(&p), s(&p.with_extension("raw"))]);
    assert_eq!(q.status.code(), o.status.code());
}

#[test]
fn refcount_block_pointing_into_data_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "rb_data", |d| {
        let rt = be64(d, 48) as usize;
        let l2 = be64(d, be64(d, 40) as usize) & 0x00ff_ffff_ffff_fe00;
        let data = be64(d, l2 as usize) & 0x00ff_ffff_ffff_fe00;
        d[rt..rt + 8].copy_from_slice(&data.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 1, 0]);
}

#[test]
fn refcount_block_past_the_end_is_repaired_by_growing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "rb_eof", |d| {
        let rt = be64(d, 48) as usize;
        // A second refcount block entry far past the end.
        d[rt + 8..rt + 16].copy_from_slice(&0x80_0000u64.to_be_bytes());
    });
    let (_, _, (_, _, code)) = same_on_copies(&p, "c", &["check", "X"]);
    assert_eq!(code, 2);
    let (q, b, (_, _, code)) = same_on_copies(&p, "r", &["check", "-r", "all", "X"]);
    assert_eq!(code, 0);
    assert!(std::fs::read(&q).unwrap() == std::fs::read(&b).unwrap());
    assert_eq!(norm(&qemu_img(&["check", s(&b)]), s(&b)).2, 0);
}

#[test]
fn unsupported_version_and_features_are_refused_with_qemus_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let v9 = damaged(&b, "v9", |d| d[4..8].copy_from_slice(&9u32.to_be_bytes()));
    let incompat = damaged(&b, "incompat", |d| {
        d[72..80].copy_from_slice(&(1u64 << 20).to_be_bytes())
    });
    for (p, msg) in [
        (&v9, "Unsupported qcow2 version 9"),
        (
            &incompat,
            "Unsupported qcow2 feature(s): Unknown incompatible feature: 100000",
        ),
    ] {
        for args in [
            vec!["info", "X"],
            vec!["check", "X"],
            vec!["check", "-r", "all", "X"],
        ] {
            let (_, _, (_, err, code)) = same_on_copies(p, "u", &args);
            assert_eq!(code, 1, "{args:?}");
            assert!(err.contains(msg), "{err}");
        }
        assert_eq!(same_convert(p), 1);
        // Never opened as raw: a write to the header is refused too.
        let before = std::fs::read(p).unwrap();
        let o = blk(&["io", "-c", "write -P 1 0 512", s(p)]);
        assert_ne!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stderr).contains(msg));
        assert_eq!(std::fs::read(p).unwrap(), before);
    }
}

#[test]
fn formats_without_a_driver_are_not_opened_as_raw() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    // qcow version 1: probed as qcow (blk's qcow driver) by both tools,
    // which refuse this one's cluster size; neither treats it as raw.
    let v1 = damaged(&b, "v1", |d| d[4..8].copy_from_slice(&1u32.to_be_bytes()));
    let before = std::fs::read(&v1).unwrap();
    for args in [
        vec!["info", s(&v1)],
        vec!["io", "-c", "write -P 1 0 512", s(&v1)],
    ] {
        let o = blk(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("Cluster size must be between 512 and 64k"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&v1).unwrap(), before);
    let q = qemu_img(&["info", "--output=json", s(&v1)]);
    assert!(!String::from_utf8_lossy(&q.stdout).contains("\"raw\""));
    assert!(String::from_utf8_lossy(&q.stderr).contains("Cluster size must be between 512 and 64k"));
    // Other signatures QEMU probes, made by qemu-img itself.
    // A signature QEMU probes that blk has no driver for, made by
    // qemu-img itself: LUKS (a little secret, a fast key derivation).
    {
        let fmt = "luks";
        let p = dir.path().join(format!("x.{fmt}"));
        qemu_img_ok(&[
            "create",
            "-q",
            "-f",
            fmt,
            "--object",
            "secret,id=sec0,data=abc",
            "-o",
            "key-secret=sec0,iter-time=10",
            s(&p),
            "1M",
        ]);
        let q = qemu_img(&["info", "--output=json", s(&p)]);
        assert!(String::from_utf8_lossy(&q.stdout).contains(&format!("\"format\": \"{fmt}\"")));
        let o = blk(&["info", s(&p)]);
        assert_eq!(o.status.code(), Some(1), "{fmt}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("'{fmt}'")),
            "{fmt}"
        );
        // Named as raw it opens as raw, as in QEMU.
        let o = blk(&["info", "-f", "raw", s(&p)]);
        assert_eq!(o.status.code(), Some(0), "{fmt}");
    }
}

#[test]
fn probed_raw_guard_refuses_writing_a_foreign_signature() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.raw");
    qemu_img_ok(&["create", "-q", "-f", "raw", s(&p), "1M"]);
    // "QED\0" (QED) and "QFI\xfb" version 1 (qcow) at offset 0.
    for pattern in [
        "0x51 0x45 0x44 0x00",
        "0x51 0x46 0x49 0xfb 0x00 0x00 0x00 0x01",
    ] {
        let bytes: Vec<u8> = pattern
            .split(' ')
            .map(|x| u8::from_str_radix(&x[2..], 16).unwrap())
            .collect();
        // Write the signature byte by byte through blk io (over 0xff
        // bytes, so that no zero completes it early): some write must be
        // refused, and the signature never lands whole.
        std::fs::write(&p, vec![0xffu8; 1 << 20]).unwrap();
        let mut refused = false;
        for (i, v) in bytes.iter().enumerate() {
            let o = blk(&["io", "-c", &format!("write -P {v} {i} 1"), s(&p)]);
            let out = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            if o.status.code() != Some(0) || out.contains("failed") {
                refused = true;
            }
        }
        assert!(refused, "{pattern}");
        let d = std::fs::read(&p).unwrap();
        assert_ne!(&d[..bytes.len()], &bytes[..]);
    }
}

#[test]
fn luks_encrypted_image_is_described_but_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("luks.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        "secret,id=sec0,data=abc",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        s(&p),
        "16M",
    ]);
    // qemu-img info needs no secret; blk describes it the same way.
    for args in [vec!["info", "X"], vec!["info", "--output=json", "X"]] {
        let (_, _, (out, _, code)) = same_on_copies(&p, "i", &args);
        assert_eq!(code, 0);
        assert!(
            out.contains("encrypted: yes") || out.contains("\"encrypted\": true"),
            "{out}"
        );
        assert!(out.contains("luks"), "{out}");
    }
    // Everything that needs the data is refused with QEMU's message.
    for args in [
        vec!["check", s(&p)],
        vec!["convert", "-O", "raw", s(&p), s(&p.with_extension("raw"))],
        vec!["map", s(&p)],
    ] {
        let q = qemu_img(&args);
        let b = blk(&args);
        assert_eq!(q.status.code(), Some(1), "{args:?}");
        assert_eq!(b.status.code(), Some(1), "{args:?}");
    }
    let before = std::fs::read(&p).unwrap();
    for cmd in ["read 0 512", "write 0 512"] {
        let o = blk(&["io", "-c", cmd, s(&p)]);
        assert_ne!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stderr).contains("encrypt.key-secret"));
    }
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

/// A base image with an internal snapshot; returns it and the offset of
/// the snapshot table.
fn with_snapshot(dir: &Path) -> (PathBuf, usize) {
    let b = base(dir);
    qemu_img_ok(&["snapshot", "-c", "s1", s(&b)]);
    qemu_io_ok(&["-c", "write -P 0x44 0 64k", s(&b)]);
    let d = std::fs::read(&b).unwrap();
    let so = be64(&d, 64) as usize;
    (b, so)
}

#[test]
fn snapshot_l1_table_past_the_end_is_reported_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let (b, so) = with_snapshot(dir.path());
    let p = damaged(&b, "sl_eof", |d| {
        d[so..so + 8].copy_from_slice(&0x100_0000u64.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
    same_on_copies(&p, "l", &["snapshot", "-l", "X"]);
}

#[test]
fn unaligned_snapshot_l1_table_is_reported_and_skipped_like_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let (b, so) = with_snapshot(dir.path());
    let p = damaged(&b, "sl_unal", |d| {
        let l1 = be64(d, so);
        d[so..so + 8].copy_from_slice(&(l1 + 0x200).to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
    // Snapshot changes need a writable open, which refuses the image.
    let before = std::fs::read(&p).unwrap();
    let o = blk(&["snapshot", "-a", "s1", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&p).unwrap(), before);
}

/// The host offset of the first L2 table and of its first entry's data.
fn first_l2_and_data(d: &[u8]) -> (usize, usize) {
    let l1 = be64(d, 40) as usize;
    let l2 = (be64(d, l1) & 0x00ff_ffff_ffff_fe00) as usize;
    (l1, l2)
}

#[test]
fn l2_table_or_data_past_the_end_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "l2_eof", |d| {
        let (l1, _) = first_l2_and_data(d);
        d[l1..l1 + 8].copy_from_slice(&0x8000_0000_0100_0000u64.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
    let p = damaged(&b, "data_eof", |d| {
        let (_, l2) = first_l2_and_data(d);
        d[l2..l2 + 8].copy_from_slice(&0x8000_0000_0200_0000u64.to_be_bytes());
    });
    assert_eq!(same_everywhere(&p), [2, 2, 2]);
}

#[test]
fn header_cluster_with_refcount_zero_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let b = base(dir.path());
    let p = damaged(&b, "hdr_rc0", |d| {
        let rb = (be64(d, be64(d, 48) as usize) & 0x00ff_ffff_ffff_fe00) as usize;
        d[rb..rb + 2].copy_from_slice(&[0, 0]);
    });
    assert_eq!(same_everywhere(&p), [2, 1, 0]);
}

/// A refcount table entry with a reserved bit set: check reports it as
/// qemu-img does. `-r all` differs on purpose: qemu-img allocates a new
/// block over the old one the entry names, its overlap check catches that
/// and it fails (marking the image corrupt); blk never writes a cluster
/// the old structure names (so a crash before the header switch leaves the
/// old structure whole) and completes the rebuild.
#[test]
fn reserved_bit_in_refcount_table_rebuilds_around_the_old_structure() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("m.qcow2");
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512",
        s(&b),
        "64M",
    ]);
    qemu_io_ok(&[
        "-c",
        "write -P 1 0 3M",
        "-c",
        "write -P 2 20M 2M",
        "-c",
        "write -P 3 60M 1M",
        s(&b),
    ]);
    let p = damaged(&b, "rt_reserved", |d| {
        let rt = be64(d, 48) as usize;
        let e = be64(d, rt + 8);
        assert_ne!(e, 0);
        d[rt + 8..rt + 16].copy_from_slice(&(e | 1).to_be_bytes());
    });
    for args in [vec!["check", "X"], vec!["check", "-r", "leaks", "X"]] {
        same_on_copies(&p, "c", &args);
    }
    let q = p.with_extension("q2");
    let r = p.with_extension("b2");
    std::fs::copy(&p, &q).unwrap();
    std::fs::copy(&p, &r).unwrap();
    assert_eq!(
        qemu_img(&["check", "-r", "all", s(&q)]).status.code(),
        Some(1)
    );
    let o = blk(&["check", "-r", "all", s(&r)]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(norm(&qemu_img(&["check", s(&r)]), s(&r)).2, 0);
    let c = qemu_img(&["compare", s(&b), s(&r)]);
    assert_eq!(c.status.code(), Some(0));
}
