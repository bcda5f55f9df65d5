//! Lifecycle: inactive opens, invalidate_cache, inactivate/activate, lazy
//! refcounts and the dirty bit.

use super::*;
use block_core::prelude::*;
use block_core::ErrorKind;

fn info(img: &str) -> serde_json::Value {
    serde_json::from_str(&qemu_img(&["info", "-U", "--output=json", img])).unwrap()
}

#[test]
fn inactive_open_writes_nothing_until_activated() {
    let s = Scratch::new();
    let img = s.path("i.qcow2");
    create(&img, "size=1M,lazy_refcounts=on").unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.write_at(0, &[1u8; 100]).unwrap();
    n.flush().unwrap();
    std::mem::forget(n); // crash: the dirty bit stays set
    assert_eq!(info(&img)["dirty-flag"], true);
    let before = std::fs::read(&img).unwrap();
    let n = open(&img, OpenFlags::INACTIVE);
    let mut b = [0u8; 100];
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [1u8; 100]);
    let e = n.write_at(0, &[2u8; 10]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ReadOnly);
    assert!(e.message.contains("inactive"));
    assert_eq!(
        n.truncate(2 << 20, Preallocation::Off).unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    n.flush().unwrap();
    drop(n);
    assert!(
        std::fs::read(&img).unwrap() == before,
        "inactive open wrote to the image"
    );
    // Activation repairs the dirty image and accepts writes.
    let n = open(&img, OpenFlags::INACTIVE);
    n.activate().unwrap();
    assert_eq!(info(&img)["dirty-flag"], false);
    n.write_at(0, &[2u8; 10]).unwrap();
    drop(n);
    assert_clean(&img);
    assert_eq!(info(&img)["dirty-flag"], false);
}

#[test]
fn lazy_refcounts_dirty_and_repair_on_open() {
    let s = Scratch::new();
    let img = s.path("l.qcow2");
    create(&img, "size=4M,lazy_refcounts=on,cluster_size=4096").unwrap();
    let n = open(&img, OpenFlags::NONE);
    assert_eq!(info(&img)["dirty-flag"], false);
    let d = Rng(3).bytes(1 << 20);
    n.write_at(4096, &d).unwrap();
    assert_eq!(info(&img)["dirty-flag"], true);
    n.flush().unwrap();
    std::mem::forget(n);
    // Refcounts on disk are stale: qemu sees corruptions.
    let q = qemu_check(&img);
    assert!(q["corruptions"].as_u64().unwrap_or(0) > 0, "{q}");
    // Read-only open of a dirty image works and reads the data.
    let n = open(&img, OpenFlags::READ_ONLY);
    let mut b = vec![0u8; d.len()];
    n.read_at(4096, &mut b).unwrap();
    assert!(b == d);
    drop(n);
    // A writable open repairs it.
    let n = open(&img, OpenFlags::NONE);
    assert!(!n.info().unwrap().dirty_flag);
    drop(n);
    assert_clean(&img);
    assert_eq!(info(&img)["dirty-flag"], false);
    assert!(raw_of(&img, "qcow2")[4096..4096 + d.len()] == d[..]);
}

#[test]
fn invalidate_cache_rereads_everything() {
    let s = Scratch::new();
    let img = s.path("v.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    let n = open(&img, OpenFlags::READ_ONLY);
    let mut b = [0u8; 16];
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [0u8; 16]);
    // Another process writes, snapshots and resizes.
    qemu_io(&img, &["write -P 7 0 64k"]);
    qemu_img(&["snapshot", "-c", "s", &img]);
    qemu_img(&["resize", "-q", &img, "2M"]);
    n.invalidate_cache().unwrap();
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [7u8; 16]);
    assert_eq!(n.length().unwrap(), 2 << 20);
    assert_eq!(n.snapshot_list().unwrap().len(), 1);
    // An incompatible change (new cluster size) fails cleanly.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        &img,
        "1M",
    ]);
    assert!(n.invalidate_cache().is_err());
    assert!(n.read_at(0, &mut b).is_err());
}

#[test]
fn inactivate_hands_over() {
    let s = Scratch::new();
    let img = s.path("h.qcow2");
    create(&img, "size=1M,lazy_refcounts=on").unwrap();
    let a = open(&img, OpenFlags::NONE);
    a.write_at(0, &[5u8; 4096]).unwrap();
    a.inactivate().unwrap();
    // Everything is on disk and clean while the source still has it open.
    assert_clean(&img);
    assert_eq!(info(&img)["dirty-flag"], false);
    assert_eq!(a.write_at(0, &[1]).unwrap_err().kind, ErrorKind::ReadOnly);
    // The destination takes over, writes, hands back.
    let b = open(&img, OpenFlags::INACTIVE);
    b.activate().unwrap();
    b.write_at(8192, &[6u8; 4096]).unwrap();
    b.inactivate().unwrap();
    a.activate().unwrap();
    let mut x = [0u8; 4096];
    a.read_at(8192, &mut x).unwrap();
    assert_eq!(x, [6u8; 4096]);
    a.write_at(100_000, &[7u8; 10]).unwrap();
    drop(a);
    drop(b);
    assert_clean(&img);
    let q = raw_of(&img, "qcow2");
    assert_eq!(&q[..4096], &[5u8; 4096]);
    assert_eq!(&q[100_000..100_010], &[7u8; 10]);
}

#[test]
fn cache_size_options() {
    let s = Scratch::new();
    let img = s.path("c.qcow2");
    create(&img, "size=16M,cluster_size=512").unwrap();
    let req = OpenRequest {
        filename: img.clone(),
        options: vec![
            ("l2-cache-size".into(), "4k".into()),
            ("refcount-cache-size".into(), "2k".into()),
        ],
        flags: OpenFlags::NONE,
    };
    let n = super::node_of(
        crate::open::open(&req, Arc::new(TestHost)).unwrap(),
        OpenFlags::NONE,
    );
    let d = Rng(1).bytes(2 << 20);
    for (i, c) in d.chunks(4096).enumerate() {
        n.write_at(i as u64 * 8192, c).unwrap();
    }
    assert!(n.l2.len() < 64, "L2 cache bounded: {}", n.l2.len());
    drop(n);
    assert_clean(&img);
    let bad = OpenRequest {
        filename: img,
        options: vec![("nonsense".into(), "1".into())],
        flags: OpenFlags::NONE,
    };
    assert!(crate::open::open(&bad, Arc::new(TestHost)).is_err());
}
