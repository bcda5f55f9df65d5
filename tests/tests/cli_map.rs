//! `blk map` against `qemu-img map`, byte for byte in both output formats,
//! on images whose file has holes inside mapped clusters: qcow2 with
//! preallocation=metadata/falloc/full and sub-cluster writes (4 KiB into
//! 64 KiB clusters, extended L2), a hole punched into a data cluster, raw
//! sparse files, backing chains (a top longer than its base), zero and
//! discarded clusters, compressed clusters, 4 KiB and 2 MiB clusters; images
//! written by QEMU and by blk. Also convert's sparse detection: the targets
//! both tools make from such sources map and allocate the same.

use blk_tests::{blk, blk_bin, blk_ok, plugin_dir, qemu_img, qemu_img_ok, qemu_io_ok, rng, s};
use rand::Rng;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Stdout, stderr without the program prefix, exit code.
fn norm(o: &std::process::Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr)
            .replace("qemu-img: ", "")
            .replace("blk: ", ""),
        o.status.code().unwrap_or(-1),
    )
}

/// `map` of `p` (with `extra` arguments) in both formats: qemu-img and blk
/// must print the same.
fn same_map(p: &Path, extra: &[&str]) {
    for out in ["--output=human", "--output=json"] {
        let mut a = vec!["map", out];
        a.extend_from_slice(extra);
        a.push(s(p));
        let q = norm(&qemu_img(&a));
        let b = norm(&blk(&a));
        assert_eq!(q, b, "qemu-img vs blk {a:?}");
    }
}

/// Creates `p` with qemu-img or blk.
fn create(tool: &str, p: &Path, opts: &str, size: &str, backing: Option<&Path>) {
    let mut a = vec!["create", "-q", "-f", "qcow2"];
    if !opts.is_empty() {
        a.extend(["-o", opts]);
    }
    if let Some(b) = backing {
        a.extend(["-b", s(b), "-F", "qcow2"]);
    }
    a.extend([s(p), size]);
    if tool == "qemu" {
        qemu_img_ok(&a);
    } else {
        blk_ok(&a);
    }
}

/// Runs qemu-io commands with qemu-io or blk io.
fn io(tool: &str, p: &Path, fmt: &str, cmds: &[String]) {
    let mut a = vec!["-f", fmt];
    for c in cmds {
        a.extend(["-c", c.as_str()]);
    }
    a.push(s(p));
    if tool == "qemu" {
        qemu_io_ok(&a);
    } else {
        let mut v = vec!["io"];
        v.extend(a);
        blk_ok(&v);
    }
}

/// Seeded sub-cluster writes (4 KiB and 512-byte pieces at random places).
fn small_writes(seed: u64, size: u64, count: usize) -> Vec<String> {
    let mut r = rng(seed);
    (0..count)
        .map(|i| {
            let len = if i % 3 == 0 { 512 } else { 4096 };
            let off = r.gen_range(0..(size - len) / 512) * 512;
            format!("write -P {} {off} {len}", i % 250 + 1)
        })
        .collect()
}

/// Punches a hole of `len` bytes at `off` into the file `p`.
fn punch_hole(p: &Path, off: u64, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
}

/// The preallocated and sparse qcow2 images of the matrix, made by `tool`.
fn qcow2_matrix(dir: &Path, tool: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (i, opts) in [
        "preallocation=metadata",
        "preallocation=falloc",
        "preallocation=full",
        "preallocation=metadata,extended_l2=on",
        "preallocation=metadata,cluster_size=4k",
        "preallocation=metadata,cluster_size=2M",
        "cluster_size=64k",
        "extended_l2=on",
    ]
    .iter()
    .enumerate()
    {
        let p = dir.join(format!("{tool}{i}.qcow2"));
        create(tool, &p, opts, "8M", None);
        let mut cmds = small_writes(i as u64, 8 << 20, 12);
        cmds.push("write -P 7 1M 192k".to_string());
        cmds.push("write -z 3M 64k".to_string());
        cmds.push("write -z -u 3200k 128k".to_string());
        cmds.push("discard 5M 128k".to_string());
        io(tool, &p, "qcow2", &cmds);
        v.push(p);
    }
    v
}

#[test]
fn map_of_preallocated_qcow2_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["qemu", "blk"] {
        for p in qcow2_matrix(dir.path(), tool) {
            same_map(&p, &[]);
            same_map(&p, &["--start-offset", "6000", "--max-length", "3M"]);
        }
    }
    // Metadata preallocation with nothing written: every cluster is mapped
    // and reads as zeros.
    let p = dir.path().join("blank.qcow2");
    create("qemu", &p, "preallocation=metadata", "4M", None);
    same_map(&p, &[]);
    let json = qemu_img_ok(&["map", "--output=json", s(&p)]);
    assert!(json.contains("\"zero\": true, \"data\": true"), "{json}");
}

#[test]
fn map_of_a_hole_punched_into_data_clusters_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("punched.qcow2");
    create("qemu", &p, "", "2M", None);
    io("qemu", &p, "qcow2", &["write -P 5 0 256k".to_string()]);
    // The first data cluster follows the header, refcount and L1/L2 tables.
    let map = qemu_img_ok(&["map", "--output=json", s(&p)]);
    let v: serde_json::Value = serde_json::from_str(&map).unwrap();
    let host = v[0]["offset"].as_u64().unwrap();
    punch_hole(&p, host + 4096, 32768);
    same_map(&p, &[]);
    // The hole is a zero extent of its own (4 KiB data, 32 KiB zero, data).
    let json = qemu_img_ok(&["map", "--output=json", s(&p)]);
    assert!(
        json.contains("{ \"start\": 4096, \"length\": 32768, \"depth\": 0, \"present\": true, \"zero\": true, \"data\": true"),
        "{json}"
    );
}

#[test]
fn map_of_raw_sparse_files_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["qemu", "blk"] {
        let p = dir.path().join(format!("{tool}.raw"));
        std::fs::File::create(&p).unwrap().set_len(3 << 20).unwrap();
        let mut cmds = small_writes(9, 3 << 20, 10);
        cmds.push("write -P 3 2M 100k".to_string());
        io(tool, &p, "raw", &cmds);
        same_map(&p, &["-f", "raw"]);
        same_map(
            &p,
            &["-f", "raw", "--start-offset", "1000", "--max-length", "2M"],
        );
    }
}

#[test]
fn map_of_chains_and_compressed_clusters_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    create("qemu", &base, "", "1M", None);
    io("qemu", &base, "qcow2", &["write -P 1 0 64k".to_string()]);
    // A top longer than its base: past the base's end the top answers zero.
    let top = dir.path().join("top.qcow2");
    create("qemu", &top, "", "2M", Some(&base));
    io(
        "qemu",
        &top,
        "qcow2",
        &[
            "write -P 2 128k 4k".to_string(),
            "write -z 512k 64k".to_string(),
        ],
    );
    same_map(&top, &[]);
    same_map(&top, &["--start-offset", "900k"]);
    // Preallocated top (extended L2 allows it with a backing file).
    let ptop = dir.path().join("ptop.qcow2");
    create(
        "qemu",
        &ptop,
        "preallocation=metadata,extended_l2=on",
        "2M",
        Some(&base),
    );
    io("qemu", &ptop, "qcow2", &["write -P 3 300k 4k".to_string()]);
    same_map(&ptop, &[]);
    // Compressed clusters: JSON lists them, human output refuses.
    let c = dir.path().join("c.qcow2");
    create("qemu", &c, "", "1M", None);
    io(
        "qemu",
        &c,
        "qcow2",
        &[
            "write -c -P 4 0 64k".to_string(),
            "write -P 5 64k 64k".to_string(),
        ],
    );
    same_map(&c, &[]);
}

/// Bytes the file `p` stores, once written back (delayed allocation
/// reserves blocks until then).
fn allocated(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::open(p).unwrap();
    f.sync_all().unwrap();
    f.metadata().unwrap().blocks() * 512
}

#[test]
fn convert_of_preallocated_sources_allocates_as_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let srcs = qcow2_matrix(dir.path(), "qemu");
    for src in srcs.iter().take(4) {
        for (fmt, extra) in [
            ("raw", &[][..]),
            ("qcow2", &[]),
            ("raw", &["-S", "0"]),
            ("qcow2", &["-S", "64k"]),
        ] {
            let q = dir.path().join("q.out");
            let b = dir.path().join("b.out");
            let _ = std::fs::remove_file(&q);
            let _ = std::fs::remove_file(&b);
            let args = |t: &Path| {
                let mut a = vec!["convert", "-p", "-O", fmt];
                a.extend_from_slice(extra);
                a.extend([s(src), s(t)]);
                a.into_iter().map(str::to_string).collect::<Vec<_>>()
            };
            let qa = args(&q);
            let ba = args(&b);
            let qo = norm(&qemu_img(
                &qa.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
            ));
            let bo = norm(&blk(&ba.iter().map(|x| x.as_str()).collect::<Vec<_>>()));
            // The same progress too: only data the block status still calls
            // data is counted.
            assert_eq!(qo, bo, "{ba:?}");
            assert_eq!(
                qemu_img_ok(&["map", "--output=json", "-f", fmt, s(&q)]),
                qemu_img_ok(&["map", "--output=json", "-f", fmt, s(&b)]),
                "{ba:?}"
            );
            // A raw target stores exactly what was written (qcow2 targets
            // differ in how each driver fills new clusters, not in what).
            if fmt == "raw" {
                assert_eq!(allocated(&q), allocated(&b), "{ba:?}");
            }
            let c = qemu_img(&["compare", "-F", fmt, s(src), s(&b)]);
            assert!(c.status.success(), "{ba:?}");
        }
    }
}

#[test]
fn map_through_plugin_libraries_matches_qemu_img() {
    // The RECURSE flag crosses the C ABI: the same maps with the drivers
    // loaded as plugins only.
    let dir = tempfile::tempdir().unwrap();
    let plugins = plugin_dir();
    for p in qcow2_matrix(dir.path(), "qemu").iter().take(4) {
        for out in ["--output=human", "--output=json"] {
            let a = ["map", out, s(p)];
            let q = norm(&qemu_img(&a));
            let b = norm(
                &std::process::Command::new(blk_bin())
                    .env("BLK_BUILTIN_DRIVERS", "0")
                    .env("BLK_PLUGIN_PATH", &plugins)
                    .args(a)
                    .output()
                    .unwrap(),
            );
            assert_eq!(q, b, "qemu-img vs blk (plugins) {a:?}");
        }
    }
}
