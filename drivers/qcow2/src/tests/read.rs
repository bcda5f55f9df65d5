//! Reading images written by qemu-io: byte-identical to `qemu-img convert`.

use super::*;
use block_core::ExtentFlags;

fn scenario(opts: &str, cs: u64) {
    let s = Scratch::new();
    let img = s.path("a.qcow2");
    let size = (4u64 << 20).max(6 * cs);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        opts,
        &img,
        &size.to_string(),
    ]);
    let c = cs.to_string();
    let c2 = (2 * cs).to_string();
    let c4 = (4 * cs).to_string();
    let c8 = (3 << 20) / cs * cs;
    let mut cmds = vec![
        "write -P 0xab 0 5000".to_string(),
        format!("write -P 0x11 {c2} {c}"),
        format!("write -z {c4} {c}"),
        "write -P 0x22 1000000 70000".to_string(),
        format!("write -P 0x33 {} 3", size - 3),
        format!("discard {c2} {c}"),
    ];
    if !opts.contains("data_file") && cs < (1 << 20) {
        cmds.push(format!("write -c -P 0x44 {c8} {c}"));
        cmds.push(format!("write -c -P 0x45 {} {c}", c8 + cs));
    }
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io(&img, &refs);
    let expect = raw_of(&img, "qcow2");
    let n = open(&img, OpenFlags::READ_ONLY);
    assert_eq!(read_all(&n), expect, "opts {opts}");
    // Unaligned small reads too.
    let mut rng = Rng(cs);
    for _ in 0..50 {
        let off = rng.below(expect.len() as u64 - 1);
        let len = 1 + rng.below((expect.len() as u64 - off).min(3 * cs)) as usize;
        let mut b = vec![0u8; len];
        n.read_at(off, &mut b).unwrap();
        assert_eq!(&b[..], &expect[off as usize..off as usize + len]);
    }
}

#[test]
fn reads_default_images() {
    scenario("cluster_size=65536", 65536);
}

#[test]
fn reads_small_and_large_clusters() {
    scenario("cluster_size=512", 512);
    scenario("cluster_size=4096,refcount_bits=1", 4096);
    scenario("cluster_size=2M", 2 << 20);
}

#[test]
fn reads_refcount_widths_v2_and_zstd() {
    for rb in [2, 8, 32, 64] {
        scenario(&format!("cluster_size=4096,refcount_bits={rb}"), 4096);
    }
    scenario("compat=0.10,cluster_size=4096", 4096);
    scenario("compression_type=zstd,cluster_size=8192", 8192);
}

#[test]
fn reads_extended_l2() {
    let s = Scratch::new();
    let img = s.path("x.qcow2");
    let base = s.path("b.raw");
    let mut rng = Rng(7);
    let bdata = rng.bytes(1 << 20);
    std::fs::write(&base, &bdata).unwrap();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on,cluster_size=64k",
        "-b",
        &base,
        "-F",
        "raw",
        &img,
        "2M",
    ]);
    // Subclusters are 2 KiB: partial writes, zeroed subclusters.
    qemu_io(
        &img,
        &[
            "write -P 0x5a 2048 2048",
            "write -P 0x5b 10000 100",
            "write -z 8192 4096",
            "write -P 0x5c 1048576 65536",
            "write -z 1200000 2048",
            "write -c -P 0x5d 1376256 65536",
        ],
    );
    let expect = raw_of(&img, "qcow2");
    let n = open(&img, OpenFlags::READ_ONLY);
    assert_eq!(read_all(&n), expect);
    // Allocated subcluster vs backing-read subcluster.
    let e = n.block_status(2048, 4096).unwrap();
    assert!(e
        .flags
        .contains(ExtentFlags::DATA.with(ExtentFlags::ALLOCATED)));
    assert_eq!(e.length, 2048);
    let e = n.block_status(0, 2048).unwrap();
    assert!(!e.flags.contains(ExtentFlags::ALLOCATED));
    let e = n.block_status(8192, 4096).unwrap();
    assert!(e
        .flags
        .contains(ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED)));
}

#[test]
fn reads_backing_chain_shorter_backing() {
    let s = Scratch::new();
    let base = s.path("base.qcow2");
    let mid = s.path("mid.qcow2");
    let top = s.path("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &base, "1M"]);
    qemu_io(&base, &["write -P 0x61 0 1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &mid,
        "2M",
    ]);
    qemu_io(&mid, &["write -P 0x62 512k 64k"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        &top,
        "3M",
    ]);
    qemu_io(&top, &["write -P 0x63 1000 10"]);
    let expect = raw_of(&top, "qcow2");
    let n = open(&top, OpenFlags::READ_ONLY);
    let got = read_all(&n);
    assert_eq!(got.len(), 3 << 20);
    assert_eq!(got, expect);
    assert!(got[(1 << 20) + 5..].iter().all(|&b| b == 0));
    let info = n.info().unwrap();
    assert_eq!(info.backing_filename.as_deref(), Some("mid.qcow2"));
    assert_eq!(info.backing_filename_format.as_deref(), Some("qcow2"));
    // Unallocated without ALLOCATED; allocated data with its host offset.
    let e = n.block_status(128 << 10, 64 << 10).unwrap();
    assert!(!e.flags.contains(ExtentFlags::ALLOCATED));
    let e = n.block_status(0, 4096).unwrap();
    assert!(e
        .flags
        .contains(ExtentFlags::DATA.with(ExtentFlags::OFFSET_VALID)));
    let mut b = [0u8; 10];
    n.file.read_at(e.mapped_offset + 1000, &mut b).unwrap();
    assert_eq!(b, [0x63; 10]);
    // NO_BACKING: unallocated reads as zeros.
    let n = open(&top, OpenFlags::READ_ONLY.with(OpenFlags::NO_BACKING));
    let got = read_all(&n);
    assert!(
        got[..1000].iter().all(|&x| x == 0x61),
        "COW copied the backing data"
    );
    assert!(got[128 << 10..].iter().all(|&x| x == 0));
}

#[test]
fn reads_external_data_file() {
    for raw in ["on", "off"] {
        let s = Scratch::new();
        let d = s.path("d.raw");
        scenario(
            &format!("data_file={d},data_file_raw={raw},cluster_size=4096"),
            4096,
        );
    }
}

#[test]
fn vectored_read_and_info() {
    let s = Scratch::new();
    let img = s.path("v.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 0x71 0 100k", "write -c -P 0x72 128k 64k"]);
    let n = open(&img, OpenFlags::READ_ONLY);
    let expect = raw_of(&img, "qcow2");
    let mut a = vec![0u8; 3];
    let mut b = vec![0u8; 70000];
    let mut c = vec![0u8; 100000];
    n.read_vectored(
        50,
        &mut [
            IoSliceMut::new(&mut a),
            IoSliceMut::new(&mut b),
            IoSliceMut::new(&mut c),
        ],
        ReqFlags::NONE,
    )
    .unwrap();
    let mut all = a.clone();
    all.extend_from_slice(&b);
    all.extend_from_slice(&c);
    assert_eq!(&all[..], &expect[50..50 + all.len()]);
    let e = n.block_status(128 << 10, 64 << 10).unwrap();
    assert!(e.flags.contains(ExtentFlags::COMPRESSED));
    let info = n.info().unwrap();
    let want: serde_json::Value = serde_json::from_str(
        r#"{"type":"qcow2","data":{"compat":"1.1","compression-type":"zlib","lazy-refcounts":false,"refcount-bits":16,"corrupt":false,"extended-l2":false}}"#,
    )
    .unwrap();
    assert_eq!(info.format_specific.unwrap(), want);
    let q: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json", &img])).unwrap();
    assert_eq!(q["format-specific"], want);
    assert_eq!(q["virtual-size"].as_u64().unwrap(), info.virtual_size);
    assert_eq!(
        q["cluster-size"].as_u64().unwrap(),
        info.cluster_size.unwrap()
    );
    assert_eq!(
        q["actual-size"].as_u64().unwrap(),
        n.allocated_size().unwrap()
    );
    // Reads past the end fail cleanly.
    let mut x = [0u8; 2];
    assert!(n.read_at((1 << 20) - 1, &mut x).is_err());
}

/// Checks this driver's block status against every entry of
/// `qemu-img map --output=json` (an image without backing file), at each
/// `step` bytes: flags and host offset as qemu-img reports them.
fn assert_map_like_qemu(img: &str, step: u64) {
    let out = qemu_img(&["map", "--output=json", "-f", "qcow2", img]);
    let map: serde_json::Value = serde_json::from_str(&out).unwrap();
    let n = open(img, OpenFlags::READ_ONLY);
    for m in map.as_array().unwrap() {
        let start = m["start"].as_u64().unwrap();
        let end = start + m["length"].as_u64().unwrap();
        let mut p = start;
        while p < end {
            let e = n.block_status(p, end - p).unwrap();
            let f = e.flags;
            let what = format!("{m} at {p}: {e:?}");
            assert!(e.length <= end - p, "{what}");
            assert_eq!(f.contains(ExtentFlags::ZERO), m["zero"] == true, "{what}");
            assert_eq!(f.contains(ExtentFlags::DATA), m["data"] == true, "{what}");
            assert_eq!(
                f.contains(ExtentFlags::ALLOCATED),
                m["present"] == true,
                "{what}"
            );
            let off = m["offset"].as_u64().map(|o| o + (p - start));
            let got = f
                .contains(ExtentFlags::OFFSET_VALID)
                .then_some(e.mapped_offset);
            assert_eq!(got, off, "{what}");
            p += step;
        }
    }
}

#[test]
fn block_status_offsets_of_allocated_zero_clusters_like_qemu() {
    let s = Scratch::new();
    let img = s.path("z.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 1 0 128k", "write -z 0 64k"]);
    assert_map_like_qemu(&img, 64 << 10);
    // Preallocated zero cluster next to a plain zero cluster and data.
    qemu_io(&img, &["write -z -u 64k 64k", "write -P 2 192k 64k"]);
    assert_map_like_qemu(&img, 64 << 10);
    let e = s.path("e.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        &e,
        "1M",
    ]);
    qemu_io(&e, &["write -P 1 0 2k"]);
    assert_map_like_qemu(&e, 2048);
    // Zero subcluster of an allocated cluster; zeroed unallocated cluster.
    qemu_io(
        &e,
        &["write -z 4k 2k", "write -z 128k 2k", "write -c 192k 64k"],
    );
    assert_map_like_qemu(&e, 2048);
}

#[test]
fn preallocated_images_ask_the_host_to_consult_the_file() {
    let s = Scratch::new();
    // preallocation=metadata: far more clusters in use than the file stores.
    let p = s.path("p.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "preallocation=metadata",
        &p,
        "4M",
    ]);
    qemu_io(&p, &["write -P 1 0 4k", "write -z 1M 64k"]);
    let n = open(&p, OpenFlags::READ_ONLY);
    let e = n.block_status(0, 64 << 10).unwrap();
    assert!(e
        .flags
        .contains(ExtentFlags::DATA.with(ExtentFlags::OFFSET_VALID)));
    assert!(e.flags.contains(ExtentFlags::RECURSE), "{e:?}");
    // Zero clusters are answered as zero already: no file check.
    let z = n.block_status(1 << 20, 64 << 10).unwrap();
    assert!(z.flags.contains(ExtentFlags::ZERO), "{z:?}");
    assert!(!z.flags.contains(ExtentFlags::RECURSE), "{z:?}");
    // A written image stores what it uses: no flag.
    let w = s.path("w.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &w, "4M"]);
    qemu_io(&w, &["write -P 1 0 1M"]);
    let n = open(&w, OpenFlags::READ_ONLY);
    let e = n.block_status(0, 1 << 20).unwrap();
    assert!(e.flags.contains(ExtentFlags::DATA), "{e:?}");
    assert!(!e.flags.contains(ExtentFlags::RECURSE), "{e:?}");
}
