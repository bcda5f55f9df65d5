//! Internal snapshots interoperate with qemu-img.

use super::*;
use block_core::prelude::*;

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

/// A snapshot's entry is written as qemu-img writes one: icount 0 in the
/// extra data, dates with microsecond precision; `snapshot -l` shows the
/// same ICOUNT column for both.
#[test]
fn snapshot_metadata_like_qemu() {
    let s = Scratch::new();
    let img = s.path("s.qcow2");
    create(&img, "size=1M").unwrap();
    let n = open(&img, OpenFlags::NONE);
    n.snapshot_create("ours").unwrap();
    n.flush().unwrap();
    drop(n);
    qemu_img(&["snapshot", "-c", "theirs", &img]);
    let v: serde_json::Value =
        serde_json::from_str(&qemu_img(&["info", "--output=json", &img])).unwrap();
    let sn = v["snapshots"].as_array().unwrap();
    assert_eq!(sn.len(), 2);
    for k in ["icount", "vm-state-size", "vm-clock-sec", "vm-clock-nsec"] {
        assert_eq!(sn[0][k], sn[1][k], "{k}: {sn:?}");
    }
    for x in sn {
        assert_eq!(x["date-nsec"].as_u64().unwrap() % 1000, 0, "{x}");
    }
    // Both entries have the same extra data (24 bytes, icount 0).
    let b = std::fs::read(&img).unwrap();
    let be32 = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let mut off = u64::from_be_bytes(b[64..72].try_into().unwrap()) as usize;
    let mut extras = Vec::new();
    for _ in 0..2 {
        let id_len = u16::from_be_bytes(b[off + 12..off + 14].try_into().unwrap()) as usize;
        let name_len = u16::from_be_bytes(b[off + 14..off + 16].try_into().unwrap()) as usize;
        let es = be32(off + 36);
        extras.push(b[off + 40..off + 40 + es].to_vec());
        off += (40 + es + id_len + name_len).div_ceil(8) * 8;
    }
    assert_eq!(extras[0], extras[1]);
    assert_eq!(extras[0].len(), 24);
    let list = qemu_img(&["snapshot", "-l", &img]);
    let icount: Vec<&str> = list
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(icount, ["0", "0"], "{list}");
}
