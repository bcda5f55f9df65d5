//! Writing through this driver: qemu-img reads the same bytes and finds
//! the image clean.

use super::*;
use block_core::ZeroFlags;

/// Random writes, zero writes, discards and compressed writes against a
/// shadow copy; then compares with this driver, with qemu-img convert, and
/// runs qemu-img check.
fn exercise(opts: &str, size: u64, seed: u64, ops: usize, base: Option<&[u8]>) {
    let s = Scratch::new();
    let img = s.path("w.qcow2");
    let mut shadow = vec![0u8; size as usize];
    let mut full_opts = format!("size={size},{opts}");
    if let Some(b) = base {
        let bp = s.path("base.raw");
        std::fs::write(&bp, b).unwrap();
        full_opts.push_str(&format!(",backing_file={bp},backing_fmt=raw"));
        let n = b.len().min(shadow.len());
        shadow[..n].copy_from_slice(&b[..n]);
    }
    create(&img, &full_opts).unwrap();
    let n = open(&img, OpenFlags::NONE);
    let cs = n.geo().cs();
    let v3 = n.geo().version >= 3;
    let mut rng = Rng(seed);
    for _ in 0..ops {
        let kind = rng.below(10);
        let off = rng.below(size);
        let len = (1 + rng.below(3 * cs)).min(size - off);
        match kind {
            0..=5 => {
                let d = rng.bytes(len as usize);
                n.write_at(off, &d).unwrap();
                patch(&mut shadow, off, &d);
            }
            6 => {
                let fl = if rng.below(2) == 0 {
                    ZeroFlags::MAY_UNMAP
                } else {
                    ZeroFlags::NONE
                };
                n.write_zeroes(off, len, fl).unwrap();
                shadow[off as usize..(off + len) as usize].fill(0);
            }
            7 => {
                n.discard(off, len).unwrap();
                // Whole clusters inside the range now read as zeros (v3) or
                // as unallocated (v2); v2 over a backing file ignores
                // discards, as QEMU does.
                if !v3 && base.is_some() {
                    continue;
                }
                let a = off.div_ceil(cs) * cs;
                let mut p = a;
                while p < off + len {
                    let e = (p + cs).min(size);
                    if e > off + len {
                        break;
                    }
                    for i in p..e {
                        shadow[i as usize] = if v3 {
                            0
                        } else {
                            base.and_then(|b| b.get(i as usize).copied()).unwrap_or(0)
                        };
                    }
                    p += cs;
                }
            }
            8 if !opts.contains("data_file") => {
                let c = off / cs * cs;
                let l = cs.min(size - c);
                // Compressible data.
                let d: Vec<u8> = (0..l)
                    .map(|i| (i / 64) as u8 ^ (rng.next() as u8 & 1))
                    .collect();
                n.write_vectored(c, &[IoSlice::new(&d)], ReqFlags::COMPRESSED)
                    .unwrap();
                patch(&mut shadow, c, &d);
            }
            _ => {
                let mut b = vec![0u8; len as usize];
                n.read_at(off, &mut b).unwrap();
                assert_eq!(&b[..], &shadow[off as usize..(off + len) as usize]);
            }
        }
        if rng.below(20) == 0 {
            n.flush().unwrap();
        }
    }
    assert!(read_all(&n) == shadow, "driver readback differs ({opts})");
    drop(n);
    let q = raw_of(&img, "qcow2");
    assert!(q == shadow, "qemu-img sees different content ({opts})");
    assert_clean(&img);
    // The image reopens and reads the same.
    let n = open(&img, OpenFlags::READ_ONLY);
    assert!(read_all(&n) == shadow);
}

#[test]
fn random_writes_default() {
    exercise("", 8 << 20, 1, 300, None);
}

#[test]
fn random_writes_small_clusters_narrow_refcounts() {
    exercise("cluster_size=512,refcount_bits=1", 2 << 20, 2, 300, None);
    exercise(
        "cluster_size=4096,refcount_bits=64,compression_type=zstd",
        2 << 20,
        3,
        300,
        None,
    );
}

#[test]
fn refcount_table_grows() {
    // 64 clusters per refcount block and 64 blocks per table cluster: a
    // full 4 MiB write needs a larger refcount table.
    let s = Scratch::new();
    let img = s.path("g.qcow2");
    create(&img, "size=4M,cluster_size=512,refcount_bits=64").unwrap();
    let n = open(&img, OpenFlags::NONE);
    let mut rng = Rng(9);
    let data = rng.bytes(4 << 20);
    for c in data.chunks(256 << 10).enumerate() {
        n.write_at(c.0 as u64 * (256 << 10), c.1).unwrap();
    }
    drop(n);
    assert!(raw_of(&img, "qcow2") == data);
    assert_clean(&img);
}

#[test]
fn random_writes_v2_and_large_clusters() {
    exercise("compat=0.10,cluster_size=4096", 2 << 20, 4, 200, None);
    exercise("cluster_size=2M", 6 << 20, 5, 60, None);
}

#[test]
fn copy_on_write_from_backing() {
    let mut rng = Rng(11);
    let base = rng.bytes(3 << 20);
    exercise("cluster_size=4096", 4 << 20, 12, 250, Some(&base));
    exercise(
        "compat=0.10,cluster_size=65536",
        4 << 20,
        13,
        150,
        Some(&base),
    );
}

#[test]
fn extended_l2_subclusters() {
    let mut rng = Rng(21);
    let base = rng.bytes(2 << 20);
    exercise(
        "extended_l2=on,cluster_size=32k",
        3 << 20,
        22,
        300,
        Some(&base),
    );
    exercise("extended_l2=on,cluster_size=64k", 3 << 20, 23, 200, None);
}

#[test]
fn external_data_file() {
    // qemu resolves a relative data file name against its working
    // directory, so the tests store absolute names.
    let s = Scratch::new();
    let d1 = s.path("wd.raw");
    let d2 = s.path("wd2.raw");
    exercise(
        &format!("data_file={d1},data_file_raw=on,cluster_size=4096"),
        1 << 20,
        31,
        150,
        None,
    );
    // With data_file_raw the data file is the raw image itself.
    let raw = std::fs::read(&d1).unwrap();
    assert_eq!(raw.len(), 1 << 20);
    exercise(
        &format!("data_file={d2},cluster_size=4096"),
        1 << 20,
        32,
        150,
        None,
    );
}

#[test]
fn compressed_writes_readable_by_qemu() {
    for ct in ["zlib", "zstd"] {
        let s = Scratch::new();
        let img = s.path("c.qcow2");
        create(&img, &format!("size=1M,compression_type={ct}")).unwrap();
        let n = open(&img, OpenFlags::NONE);
        let d: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
        n.write_vectored(0, &[IoSlice::new(&d)], ReqFlags::COMPRESSED)
            .unwrap();
        drop(n);
        let v: serde_json::Value =
            serde_json::from_str(&qemu_img(&["map", "--output=json", &img])).unwrap();
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .all(|e| e["compressed"] == true),
            "{v}"
        );
        assert!(raw_of(&img, "qcow2") == d);
        let chk = qemu_check(&img);
        assert_eq!(chk["compressed-clusters"].as_u64(), Some(16), "{chk}");
        assert_clean(&img);
        // Small files: 16 compressed clusters share a few host clusters.
        assert!(std::fs::metadata(&img).unwrap().len() < 400 << 10);
    }
}

#[test]
fn concurrent_writers_and_readers() {
    let s = Scratch::new();
    let img = s.path("t.qcow2");
    create(&img, "size=4M,cluster_size=4096").unwrap();
    let n = Arc::new(open(&img, OpenFlags::NONE));
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let n = n.clone();
        handles.push(std::thread::spawn(move || {
            // All threads hit the same new clusters at different bytes.
            for i in 0..256u64 {
                let off = i * 4096 * 4 + t * 1024;
                n.write_at(off, &[t as u8 + 1; 1024]).unwrap();
                let mut b = [0u8; 1024];
                n.read_at(off, &mut b).unwrap();
                assert_eq!(b, [t as u8 + 1; 1024]);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    n.flush().unwrap();
    drop(n);
    let q = raw_of(&img, "qcow2");
    for i in 0..256usize {
        for t in 0..4usize {
            let o = i * 16384 + t * 1024;
            assert!(
                q[o..o + 1024].iter().all(|&b| b == t as u8 + 1),
                "cluster {i} thread {t}"
            );
        }
    }
    assert_clean(&img);
    let chk = qemu_check(&img);
    assert_eq!(
        chk["allocated-clusters"].as_u64(),
        Some(256),
        "one cluster each: {chk}"
    );
}

#[test]
fn resize_grow_and_shrink() {
    let s = Scratch::new();
    let img = s.path("r.qcow2");
    create(&img, "size=1M,cluster_size=4096").unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.write_at(0, &[7u8; 1 << 20]).unwrap();
    n.truncate(1000 * 1024, Preallocation::Off).unwrap();
    n.truncate(64 << 20, Preallocation::Off).unwrap();
    n.write_at(60 << 20, &[9u8; 4096]).unwrap();
    let mut b = vec![0u8; 8192];
    n.read_at(1000 * 1024 - 4096, &mut b).unwrap();
    assert!(b[..4096].iter().all(|&x| x == 7));
    assert!(b[4096..].iter().all(|&x| x == 0), "shrunk area reads zeros");
    assert!(n.truncate(1001, Preallocation::Off).is_err());
    drop(n);
    let info: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json", &img])).unwrap();
    assert_eq!(info["virtual-size"].as_u64(), Some(64 << 20));
    assert_clean(&img);
    let q = raw_of(&img, "qcow2");
    assert!(q[..1000 * 1024].iter().all(|&x| x == 7));
    assert!(q[1000 * 1024..60 << 20].iter().all(|&x| x == 0));
    assert!(q[60 << 20..(60 << 20) + 4096].iter().all(|&x| x == 9));
    // Shrink frees the clusters.
    let n = open(&img, OpenFlags::NONE);
    n.truncate(512 << 10, Preallocation::Off).unwrap();
    drop(n);
    assert_clean(&img);
    let chk = qemu_check(&img);
    assert_eq!(chk["allocated-clusters"].as_u64(), Some(128), "{chk}");
}

#[test]
fn fua_and_errors() {
    let s = Scratch::new();
    let img = s.path("f.qcow2");
    create(&img, "size=1M").unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.write_vectored(0, &[IoSlice::new(&[1u8; 100])], ReqFlags::FUA)
        .unwrap();
    // Metadata is on disk without an explicit flush: qemu sees the data
    // while the node is still open.
    assert_eq!(&raw_of(&img, "qcow2")[..100], &[1u8; 100]);
    let e = n.write_at((1 << 20) - 10, &[0u8; 20]).unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::OutOfRange);
    assert!(e.file.is_some());
    let e = n
        .write_vectored(100, &[IoSlice::new(&[0u8; 100])], ReqFlags::COMPRESSED)
        .unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::InvalidInput);
    drop(n);
    let n = open(&img, OpenFlags::READ_ONLY);
    let e = n.write_at(0, &[0u8; 1]).unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::ReadOnly);
}

/// A write that needs a new L2 table allocates the table before the data
/// clusters, as QEMU does: the host offsets qemu-img maps are the same.
#[test]
fn new_l2_table_allocated_before_data_like_qemu() {
    let s = Scratch::new();
    let map = |img: &str| qemu_img(&["map", "--output=json", "-f", "qcow2", img]);
    for (size, off, len) in [("8M", 4u64 << 20, 8192usize), ("8M", 4096, 12288)] {
        let q = s.path("q.qcow2");
        let b = s.path("b.qcow2");
        for p in [&q, &b] {
            qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=4096",
                p,
                size,
            ]);
        }
        qemu_io(&q, &[&format!("write -P 7 {off} {len}")]);
        let n = open(&b, OpenFlags::NONE);
        n.write_at(off, &vec![7u8; len]).unwrap();
        n.flush().unwrap();
        drop(n);
        assert_eq!(map(&b), map(&q), "{off} {len}");
        assert_clean(&b);
    }
    // A compressed write: the L2 table, then the compressed bytes.
    let q = s.path("cq.qcow2");
    let b = s.path("cb.qcow2");
    for p in [&q, &b] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=4096",
            p,
            "8M",
        ]);
    }
    qemu_io(&q, &["write -c -P 7 4M 4k"]);
    let n = open(&b, OpenFlags::NONE);
    n.write_vectored(4 << 20, &[IoSlice::new(&[7u8; 4096])], ReqFlags::COMPRESSED)
        .unwrap();
    n.flush().unwrap();
    drop(n);
    assert_eq!(std::fs::read(&b).unwrap(), std::fs::read(&q).unwrap());
}

/// Shrinking truncates the file after the last used cluster as
/// `qemu-img resize --shrink` does, lazy refcounts included.
#[test]
fn shrink_file_length_like_qemu() {
    let s = Scratch::new();
    for (o, w) in [
        ("cluster_size=65536", "write -P 2 3M 1M"),
        ("cluster_size=4096", "write -P 2 3M 1M"),
        ("lazy_refcounts=on", "write -P 2 3M 1M"),
        ("lazy_refcounts=on", "write -P 2 0 4M"),
        ("cluster_size=512", "write -P 2 0 4M"),
        ("cluster_size=512,refcount_bits=64", "write -P 2 0 4M"),
        ("cluster_size=1024,refcount_bits=1", "write -P 2 1M 3M"),
    ] {
        let q = s.path("q.qcow2");
        let b = s.path("b.qcow2");
        for p in [&q, &b] {
            qemu_img(&["create", "-q", "-f", "qcow2", "-o", o, p, "4M"]);
            qemu_io(p, &["write -P 1 0 64k", w, "write -P 3 64k 64k"]);
        }
        qemu_img(&["resize", "-q", "--shrink", &q, "1M"]);
        let n = open(&b, OpenFlags::NONE);
        n.truncate(1 << 20, Preallocation::Off).unwrap();
        n.flush().unwrap();
        drop(n);
        let len = |p: &str| std::fs::metadata(p).unwrap().len();
        assert_eq!(len(&b), len(&q), "{o}");
        let map = |img: &str| qemu_img(&["map", "--output=json", "-f", "qcow2", img]);
        assert_eq!(map(&b), map(&q), "{o}");
        assert_clean(&b);
    }
}
