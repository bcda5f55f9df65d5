//! make_empty, amend and measure against qemu-img.

use super::*;
use crate::ops::measure::measure;
use block_core::prelude::*;
use block_core::MeasureRequest;

fn kv(s: &str) -> Vec<(String, String)> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',')
        .map(|x| {
            let (k, v) = x.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn info(img: &str) -> serde_json::Value {
    serde_json::from_str(&qemu_img(&["info", "--output=json", img])).unwrap()
}

#[test]
fn make_empty_falls_through_to_backing() {
    for opts in [
        "cluster_size=4k",
        "cluster_size=64k,extended_l2=on",
        "compat=0.10",
    ] {
        let d = Scratch::new();
        let base = d.path("base.qcow2");
        let top = d.path("top.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", &base, "4M"]);
        qemu_io(&base, &["write -P 1 0 4M"]);
        qemu_img(&[
            "create", "-q", "-f", "qcow2", "-o", opts, "-b", &base, "-F", "qcow2", &top, "4M",
        ]);
        let mut io = vec![
            "write -P 2 0 100k",
            "write -P 3 1M 1M",
            "write -c -P 4 3M 64k",
        ];
        if !opts.contains("0.10") {
            io.push("write -z 2M 128k");
        }
        qemu_io(&top, &io);
        qemu_img(&["snapshot", "-c", "s1", &top]);
        qemu_io(&top, &["write -P 5 512k 8k"]);
        let n = open(&top, OpenFlags::NONE);
        n.make_empty().unwrap();
        assert_eq!(read_all(&n), raw_of(&base, "qcow2"), "{opts}");
        drop(n);
        assert_clean(&top);
        let map = qemu_img(&["map", "--output=json", "-f", "qcow2", &top]);
        let v: serde_json::Value = serde_json::from_str(&map).unwrap();
        for e in v.as_array().unwrap() {
            assert!(
                e["depth"].as_u64().unwrap() >= 1,
                "{opts}: top still maps {e}"
            );
        }
        qemu_img(&["compare", "-f", "qcow2", "-F", "qcow2", &top, &base]);
        // The snapshot still has its data.
        qemu_img(&["snapshot", "-a", "s1", &top]);
        let raw = raw_of(&top, "qcow2");
        assert!(raw[..100 << 10].iter().all(|&b| b == 2), "{opts}");
    }
}

#[test]
fn make_empty_without_snapshots_truncates() {
    let d = Scratch::new();
    let base = d.path("base.raw");
    let top = d.path("top.qcow2");
    std::fs::write(&base, vec![7u8; 1 << 20]).unwrap();
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "raw", &top,
    ]);
    qemu_io(&top, &["write -P 2 0 1M"]);
    let before = std::fs::metadata(&top).unwrap().len();
    let n = open(&top, OpenFlags::NONE);
    n.make_empty().unwrap();
    drop(n);
    let after = std::fs::metadata(&top).unwrap().len();
    assert!(after < before / 2, "{before} -> {after}");
    assert_clean(&top);
    qemu_img(&["compare", "-f", "qcow2", "-F", "raw", &top, &base]);
}

/// Amends with this driver and checks with qemu-img; returns info.
fn amend_ok(img: &str, opts: &str) -> serde_json::Value {
    let before = raw_of(img, "qcow2");
    let n = open(img, OpenFlags::NONE);
    n.amend(&kv(opts)).unwrap_or_else(|e| panic!("{opts}: {e}"));
    drop(n);
    assert_clean(img);
    let after = raw_of(img, "qcow2");
    let len = before.len().min(after.len());
    assert!(before[..len] == after[..len], "{opts}: content changed");
    info(img)
}

fn amend_err(img: &str, opts: &str) -> String {
    let n = open(img, OpenFlags::NONE);
    let e = n.amend(&kv(opts)).unwrap_err();
    e.message
}

fn spec(v: &serde_json::Value, k: &str) -> serde_json::Value {
    v["format-specific"]["data"][k].clone()
}

#[test]
fn amend_compat_both_ways_with_zero_clusters() {
    let d = Scratch::new();
    let img = d.path("a.qcow2");
    let base = d.path("b.raw");
    std::fs::write(&base, vec![9u8; 2 << 20]).unwrap();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        "-b",
        &base,
        "-F",
        "raw",
        &img,
    ]);
    qemu_io(
        &img,
        &[
            "write -P 1 0 64k",
            "write -z 128k 64k",
            "write -P 2 1M 8k",
            "write -z 1M 4k",
        ],
    );
    qemu_img(&["snapshot", "-c", "s1", &img]);
    qemu_io(&img, &["write -z 256k 16k"]);
    let v = amend_ok(&img, "compat=0.10");
    assert_eq!(spec(&v, "compat"), "0.10");
    let v = amend_ok(&img, "compat=1.1,lazy_refcounts=on");
    assert_eq!(spec(&v, "compat"), "1.1");
    assert_eq!(spec(&v, "lazy-refcounts"), true);
    let v = amend_ok(&img, "lazy_refcounts=off");
    assert_eq!(spec(&v, "lazy-refcounts"), false);
    // The snapshot kept its content through both conversions.
    qemu_img(&["snapshot", "-a", "s1", &img]);
    let raw = raw_of(&img, "qcow2");
    assert!(raw[128 << 10..192 << 10].iter().all(|&b| b == 0));
    assert!(raw[256 << 10..272 << 10].iter().all(|&b| b == 9));
}

#[test]
fn amend_refused_like_qemu() {
    let d = Scratch::new();
    let x = d.path("x.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        &x,
        "1M",
    ]);
    assert_eq!(
        amend_err(&x, "compat=0.10"),
        "Cannot downgrade an image with incompatible features 0x10 set"
    );
    let r = d.path("r.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "refcount_bits=8",
        &r,
        "1M",
    ]);
    assert_eq!(
        amend_err(&r, "compat=0.10"),
        "compat=0.10 requires refcount_bits=16"
    );
    assert!(amend_err(&r, "cluster_size=4k").contains("only supported for image creation"));
    assert!(amend_err(&r, "compression_type=zstd").contains("only supported for image creation"));
    assert!(amend_err(&r, "backing_file=foo").starts_with("Cannot amend the backing file"));
    assert_eq!(
        amend_err(&r, "data_file=foo"),
        "data-file can only be set for images that use an external data file"
    );
    let v2 = d.path("v2.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        &v2,
        "1M",
    ]);
    assert!(amend_err(&v2, "refcount_bits=8").starts_with("Refcount widths other than 16 bits"));
    assert!(amend_err(&v2, "lazy_refcounts=on").starts_with("Lazy refcounts only supported"));
    let s = d.path("s.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &s, "1M"]);
    qemu_io(&s, &["write 0 64k"]);
    qemu_img(&["snapshot", "-c", "s1", &s]);
    assert_eq!(
        amend_err(&s, "refcount_bits=1"),
        "Cannot decrease refcount entry width to 1 bits: Cluster at offset 0x40000 has a refcount of 2"
    );
}

#[test]
fn amend_refcount_bits_and_size() {
    let d = Scratch::new();
    let img = d.path("a.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512",
        &img,
        "2M",
    ]);
    qemu_io(&img, &["write -P 1 0 300k", "write -c -P 2 1M 4k"]);
    qemu_img(&["snapshot", "-c", "s1", &img]);
    for bits in [64u32, 8, 32, 16] {
        let v = amend_ok(&img, &format!("refcount_bits={bits}"));
        assert_eq!(spec(&v, "refcount-bits"), bits, "{bits}");
    }
    let v = amend_ok(&img, "size=3M");
    assert_eq!(v["virtual-size"], 3 << 20);
    let v = amend_ok(&img, "size=1M");
    assert_eq!(v["virtual-size"], 1 << 20);
    // Same backing values are accepted (no change).
    let b = amend_ok(&img, "data_file_raw=off");
    assert_eq!(spec(&b, "compat"), "1.1");
}

#[test]
fn amend_data_file_name() {
    let d = Scratch::new();
    let img = d.path("a.qcow2");
    let df = d.path("a.raw");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={df}"),
        &img,
        "1M",
    ]);
    qemu_io(&img, &["write -P 3 0 64k"]);
    std::fs::copy(&df, d.path("b.raw")).unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.amend(&kv(&format!("data_file={}", d.path("b.raw"))))
        .unwrap();
    assert_eq!(
        n.amend(&kv("data_file_raw=on")).unwrap_err().message,
        "data-file-raw cannot be set on existing images"
    );
    drop(n);
    let v = info(&img);
    assert_eq!(spec(&v, "data-file"), d.path("b.raw"));
    assert!(raw_of(&img, "qcow2")[..65536].iter().all(|&b| b == 3));
}

fn qemu_measure(args: &[&str]) -> (u64, u64) {
    let mut a = vec!["measure", "--output=json", "-O", "qcow2"];
    a.extend_from_slice(args);
    let v: serde_json::Value = serde_json::from_str(&qemu_img(&a)).unwrap();
    (
        v["required"].as_u64().unwrap(),
        v["fully-allocated"].as_u64().unwrap(),
    )
}

#[test]
fn measure_size_matrix_matches_qemu() {
    let sizes = [0u64, 1, 512, 65537, 100 << 20, 3 << 30];
    let opts = [
        "",
        "cluster_size=512",
        "cluster_size=2M",
        "cluster_size=4k,refcount_bits=1",
        "refcount_bits=64",
        "cluster_size=16k,extended_l2=on",
        "compat=0.10",
        "preallocation=metadata",
        "preallocation=full,cluster_size=8k",
        "preallocation=falloc",
        "backing_file=x.qcow2,backing_fmt=qcow2",
    ];
    for o in opts {
        for s in sizes {
            let ss = s.to_string();
            let mut a = vec!["--size", &ss];
            if !o.is_empty() {
                a.extend(["-o", o]);
            }
            let want = qemu_measure(&a);
            let got = measure(&MeasureRequest {
                options: kv(o),
                virtual_size: s,
                data_extents: None,
                source_bitmaps: None,
            })
            .unwrap();
            assert_eq!(
                (got.required, got.fully_allocated),
                want,
                "-o {o} --size {s}"
            );
        }
    }
}

/// Data extents as qemu-img map reports them (data, not zero).
fn data_extents(img: &str) -> Vec<(u64, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img(&["map", "--output=json", img])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true && e["zero"] == false)
        .map(|e| (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect()
}

#[test]
fn measure_source_matches_qemu() {
    let d = Scratch::new();
    let src = d.path("src.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        &src,
        "10M",
    ]);
    qemu_io(
        &src,
        &[
            "write -P 1 0 5000",
            "write -P 2 70000 3",
            "write -z 1M 64k",
            "write -c -P 3 2M 64k",
            "write -P 4 9M 1M",
            "write -P 5 6000 100",
        ],
    );
    let size = 10u64 << 20;
    let ext = data_extents(&src);
    for o in [
        "",
        "cluster_size=512",
        "cluster_size=1M",
        "cluster_size=64k,extended_l2=on,refcount_bits=8",
        "preallocation=full",
        "backing_file=x.qcow2,backing_fmt=qcow2",
    ] {
        let mut a = vec![];
        if !o.is_empty() {
            a.extend(["-o", o]);
        }
        a.push(src.as_str());
        let want = qemu_measure(&a);
        let got = measure(&MeasureRequest {
            options: kv(o),
            virtual_size: size,
            data_extents: Some(ext.clone()),
            source_bitmaps: None,
        })
        .unwrap();
        assert_eq!((got.required, got.fully_allocated), want, "-o {o}");
    }
}

#[test]
fn amend_options_parse_like_qemu() {
    let p = |s: &str| crate::ops::amend::parse(&kv(s));
    let e = p("cluster_size=4k").unwrap_err();
    assert!(
        e.message.contains("only supported for image creation"),
        "{e}"
    );
    // Encryption options of create also get the hint.
    let e = p("encrypt.format=luks").unwrap_err();
    assert!(
        e.message.contains("only supported for image creation"),
        "{e}"
    );
    let e = p("foo=bar").unwrap_err();
    assert_eq!(e.message, "Invalid parameter 'foo'");
    let e = p("lazy_refcounts=maybe").unwrap_err();
    assert_eq!(
        e.message,
        "Parameter 'lazy_refcounts' expects 'on' or 'off'"
    );
    let e = p("refcount_bits=3").unwrap_err();
    assert!(e
        .message
        .starts_with("Refcount width must be a power of two"));
    let e = p("compat=0.9").unwrap_err();
    assert_eq!(e.message, "Unknown compatibility level 0.9");
    let e = p("encrypt.keyslot=1").unwrap_err();
    assert_eq!(
        e.message,
        "Can't amend encryption options - encryption not present"
    );
    let (o, version) = p("compat=v2,size=1M,refcount_bits=64,lazy_refcounts=y").unwrap();
    assert_eq!(version, Some(2));
    assert_eq!(o.get_size("size").unwrap(), Some(1 << 20));
    assert_eq!(o.get_u64("refcount_bits").unwrap(), Some(64));
    assert_eq!(o.get_flag("lazy_refcounts"), Some(true));
}
