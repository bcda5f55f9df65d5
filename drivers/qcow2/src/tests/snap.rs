//! Internal snapshots interoperate with qemu-img.

use super::*;

fn qemu_snapshots(img: &str) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json", img])).unwrap();
    v.get("snapshots")
        .and_then(|s| s.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn create_apply_delete_with_qemu() {
    let s = Scratch::new();
    let img = s.path("s.qcow2");
    create(&img, "size=2M,cluster_size=4096").unwrap();
    let n = open(&img, OpenFlags::NONE);
    let mut rng = Rng(5);
    let v1 = rng.bytes(2 << 20);
    n.write_at(0, &v1).unwrap();
    n.write_vectored(1 << 20, &[IoSlice::new(&[0u8; 4096])], ReqFlags::COMPRESSED)
        .unwrap();
    let mut v1c = v1.clone();
    patch(&mut v1c, 1 << 20, &[0u8; 4096]);
    n.snapshot_create("first").unwrap();
    let v2 = rng.bytes(300_000);
    n.write_at(12345, &v2).unwrap();
    let mut cur = v1c.clone();
    patch(&mut cur, 12345, &v2);
    assert!(read_all(&n) == cur);
    n.snapshot_create("second").unwrap();
    let names: Vec<String> = n
        .snapshot_list()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["first", "second"]);
    n.flush().unwrap();
    drop(n);
    assert_clean(&img);
    assert_eq!(
        qemu_snapshots(&img),
        [
            ("1".to_string(), "first".to_string()),
            ("2".to_string(), "second".to_string())
        ]
    );
    let out = s.path("first.raw");
    qemu_img(&[
        "convert", "-f", "qcow2", "-l", "first", "-O", "raw", &img, &out,
    ]);
    assert!(std::fs::read(&out).unwrap() == v1c);
    assert!(raw_of(&img, "qcow2") == cur);
    // Apply and delete through this driver.
    let n = open(&img, OpenFlags::NONE);
    n.snapshot_apply("1").unwrap();
    assert!(read_all(&n) == v1c);
    n.write_at(0, &[0xee; 5000]).unwrap();
    n.snapshot_delete("second").unwrap();
    drop(n);
    assert_clean(&img);
    let mut exp = v1c.clone();
    patch(&mut exp, 0, &[0xee; 5000]);
    assert!(raw_of(&img, "qcow2") == exp);
    assert_eq!(
        qemu_snapshots(&img),
        [("1".to_string(), "first".to_string())]
    );
    let n = open(&img, OpenFlags::NONE);
    n.snapshot_delete("first").unwrap();
    assert!(n.snapshot_apply("first").is_err());
    drop(n);
    assert_clean(&img);
    assert!(qemu_snapshots(&img).is_empty());
    assert!(raw_of(&img, "qcow2") == exp);
}

#[test]
fn reads_and_applies_qemu_snapshots() {
    let s = Scratch::new();
    let img = s.path("q.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 1 0 1M"]);
    qemu_img(&["snapshot", "-c", "base", &img]);
    qemu_io(&img, &["write -P 2 0 64k", "write -z 512k 64k"]);
    let n = open(&img, OpenFlags::NONE);
    let l = n.snapshot_list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].id.as_str(), l[0].name.as_str()), ("1", "base"));
    // Writing over shared clusters copies them.
    n.write_at(100_000, &[3u8; 10]).unwrap();
    n.snapshot_apply("base").unwrap();
    assert!(read_all(&n).iter().all(|&b| b == 1));
    drop(n);
    assert_clean(&img);
    assert!(raw_of(&img, "qcow2").iter().all(|&b| b == 1));
}
