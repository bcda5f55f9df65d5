//! Images created by this driver match qemu-img's and pass its check.

use super::*;
use block_core::prelude::*;

fn info(img: &str) -> serde_json::Value {
    serde_json::from_str(&qemu_img(&["info", "--output=json", img])).unwrap()
}

#[test]
fn layout_matches_qemu() {
    let s = Scratch::new();
    for (i, opts) in [
        "",
        "cluster_size=4096",
        "compat=0.10",
        "compat=v3,lazy_refcounts=on",
        "refcount_bits=1",
        "refcount_bits=64,cluster_size=512",
        "extended_l2=on",
        "compression_type=zstd",
        "cluster_size=2M",
    ]
    .iter()
    .enumerate()
    {
        let ours = s.path(&format!("o{i}.qcow2"));
        let theirs = s.path(&format!("t{i}.qcow2"));
        let o = if opts.is_empty() {
            "size=1G".to_string()
        } else {
            format!("size=1G,{opts}")
        };
        create(&ours, &o).unwrap();
        let mut args = vec!["create", "-q", "-f", "qcow2"];
        if !opts.is_empty() {
            args.push("-o");
            args.push(opts);
        }
        args.push(&theirs);
        args.push("1G");
        qemu_img(&args);
        assert_clean(&ours);
        let (a, b) = (info(&ours), info(&theirs));
        for k in [
            "virtual-size",
            "cluster-size",
            "format-specific",
            "dirty-flag",
        ] {
            assert_eq!(a[k], b[k], "{k} for {opts}");
        }
        assert_eq!(
            std::fs::metadata(&ours).unwrap().len(),
            std::fs::metadata(&theirs).unwrap().len(),
            "file length for {opts}"
        );
        // Our driver reads qemu's fresh image and vice versa.
        let mut head = vec![1u8; 4 << 20];
        open(&theirs, OpenFlags::READ_ONLY)
            .read_at(0, &mut head)
            .unwrap();
        assert!(head.iter().all(|&b| b == 0));
        let out = run(
            "qemu-img",
            &["compare", "-f", "qcow2", "-F", "qcow2", &ours, &theirs],
        );
        assert!(out.contains("identical"), "{out}");
    }
}

#[test]
fn zero_size_and_preallocation() {
    let s = Scratch::new();
    let z = s.path("z.qcow2");
    create(&z, "size=0").unwrap();
    assert_eq!(std::fs::metadata(&z).unwrap().len(), 196608);
    assert_clean(&z);
    for mode in ["metadata", "falloc", "full"] {
        let p = s.path(&format!("p-{mode}.qcow2"));
        create(
            &p,
            &format!("size=4M,cluster_size=4096,preallocation={mode}"),
        )
        .unwrap();
        assert_clean(&p);
        let chk = qemu_check(&p);
        assert_eq!(
            chk["allocated-clusters"].as_u64(),
            Some(1024),
            "{mode}: {chk}"
        );
        assert!(read_all(&open(&p, OpenFlags::READ_ONLY))
            .iter()
            .all(|&b| b == 0));
        assert!(raw_of(&p, "qcow2").iter().all(|&b| b == 0));
    }
}

#[test]
fn backing_options() {
    let s = Scratch::new();
    let base = s.path("base.raw");
    std::fs::write(&base, vec![3u8; 3 << 20]).unwrap();
    let img = s.path("o.qcow2");
    let e = create(&img, &format!("backing_file={base}")).unwrap_err();
    assert_eq!(e.message, "Backing file specified without backing format");
    // Size defaults to the backing file's size; relative names are kept.
    create(&img, "backing_file=base.raw,backing_fmt=raw").unwrap();
    let i = info(&img);
    assert_eq!(i["virtual-size"].as_u64(), Some(3 << 20));
    assert_eq!(i["backing-filename"], "base.raw");
    assert_eq!(i["backing-filename-format"], "raw");
    assert_clean(&img);
    assert!(raw_of(&img, "qcow2").iter().all(|&b| b == 3));
    let n = open(&img, OpenFlags::READ_ONLY);
    assert!(read_all(&n).iter().all(|&b| b == 3));
}

#[test]
fn invalid_options() {
    let s = Scratch::new();
    let img = s.path("bad.qcow2");
    for o in [
        "size=1M,cluster_size=1000",
        "size=1M,cluster_size=4M",
        "size=1M,refcount_bits=3",
        "size=1M,refcount_bits=128",
        "size=1M,compat=0.10,lazy_refcounts=on",
        "size=1M,compat=0.10,refcount_bits=8",
        "size=1M,extended_l2=on,cluster_size=4096",
        "size=1M,data_file_raw=on",
        "cluster_size=4096",
    ] {
        let e = create(&img, o).unwrap_err();
        assert_eq!(e.kind, block_core::ErrorKind::InvalidInput, "{o}: {e}");
    }
}

/// The error messages (and which of several errors wins) are qemu-img's.
#[test]
fn invalid_option_messages_like_qemu() {
    let s = Scratch::new();
    let img = s.path("bad.qcow2");
    for o in [
        "compat=0.10,extended_l2=on",
        "compat=0.10,lazy_refcounts=on",
        "compat=0.10,compression_type=zstd",
        "compat=0.10,refcount_bits=8",
        "compat=0.10,data_file=x.raw",
        "compat=0.10,extended_l2=on,lazy_refcounts=on",
        "compat=0.10,extended_l2=on,cluster_size=3k",
        "compat=0.10,lazy_refcounts=on,refcount_bits=3",
        "compat=0.10,lazy_refcounts=on,cluster_size=3k",
        "compat=0.10,data_file=x.raw,refcount_bits=8",
        "compat=0.10,compression_type=zstd,data_file=x.raw",
        "compat=0.10,compression_type=zstd,data_file_raw=on",
        "extended_l2=on,cluster_size=8k,refcount_bits=3",
    ] {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-o", o, &img, "1M"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{o}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = err
            .trim()
            .strip_prefix(&format!("qemu-img: {img}: "))
            .unwrap_or_else(|| panic!("{o}: {err}"));
        let e = create(&img, &format!("size=1M,{o}")).unwrap_err();
        assert_eq!(e.message, want, "{o}");
        assert!(!exists(&img), "{o}");
    }
}

#[test]
fn change_backing_file_rewrites_header() {
    let s = Scratch::new();
    let img = s.path("c.qcow2");
    let base = s.path("b.raw");
    std::fs::write(&base, vec![5u8; 1 << 20]).unwrap();
    create(&img, "size=1M").unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.write_at(0, &[1u8; 10]).unwrap();
    n.change_backing_file(Some("b.raw"), Some("raw")).unwrap();
    drop(n);
    let i = info(&img);
    assert_eq!(i["backing-filename"], "b.raw");
    assert_eq!(i["backing-filename-format"], "raw");
    assert_clean(&img);
    let q = raw_of(&img, "qcow2");
    assert_eq!(&q[..10], &[1u8; 10]);
    assert!(q[65536..].iter().all(|&b| b == 5));
    let n = open(&img, OpenFlags::NONE);
    n.change_backing_file(None, None).unwrap();
    drop(n);
    assert!(info(&img).get("backing-filename").is_none());
}
