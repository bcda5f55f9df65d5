//! The read-only snapshot view (`snapshot.id` / `snapshot.name` open
//! options) against `qemu-img convert -l`.

use super::*;
use crate::layout::snapshot::{Snapshot, SnapshotSel};
use block_core::prelude::*;
use block_core::ErrorKind;

fn open_view(path: &str, flags: OpenFlags, opts: &[(&str, &str)]) -> Result<super::Node> {
    let mut r = OpenRequest::new(path, flags);
    r.options = opts
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    crate::open::open(&r, Arc::new(TestHost)).map(|i| super::node_of(i, flags))
}

/// What qemu-img convert -l makes of `sel`.
fn qemu_view(img: &str, sel: &str) -> Vec<u8> {
    let out = format!("{img}.view.raw");
    qemu_img(&["convert", "-O", "raw", "-l", sel, img, &out]);
    let d = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    d
}

#[test]
fn views_match_qemu_convert_l() {
    let s = Scratch::new();
    let img = s.path("v.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 1 0 1M"]);
    qemu_img(&["snapshot", "-c", "s1", &img]);
    // Grow after s1: the view keeps the current size, the snapshot's L1
    // covers less.
    qemu_img(&["resize", "-q", &img, "3M"]);
    qemu_io(&img, &["write -P 2 64k 2M", "write -z 0 64k"]);
    qemu_img(&["snapshot", "-c", "s2", &img]);
    qemu_io(&img, &["write -P 3 0 3M"]);
    for (opts, sel) in [
        (vec![("snapshot.name", "s1")], "snapshot.name=s1"),
        (vec![("snapshot.id", "2")], "snapshot.id=2"),
        (
            vec![("snapshot.id", "1"), ("snapshot.name", "s1")],
            "snapshot.id=1,snapshot.name=s1",
        ),
    ] {
        let n = open_view(&img, OpenFlags::READ_ONLY, &opts).unwrap();
        assert_eq!(read_all(&n), qemu_view(&img, sel), "{sel}");
        let e = n.write_at(0, &[1u8; 512]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly);
        assert_eq!(n.discard(0, 65536).unwrap_err().kind, ErrorKind::ReadOnly);
        assert!(n.check(block_core::CheckMode(0)).is_err());
        // A cache invalidation keeps the view.
        n.invalidate_cache().unwrap();
        assert_eq!(read_all(&n), qemu_view(&img, sel), "{sel} after invalidate");
    }
    // The image itself is untouched.
    assert_clean(&img);
    assert!(raw_of(&img, "qcow2").iter().all(|&b| b == 3));
}

#[test]
fn view_errors() {
    let s = Scratch::new();
    let img = s.path("e.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_img(&["snapshot", "-c", "s1", &img]);
    let e = open_view(&img, OpenFlags::READ_ONLY, &[("snapshot.name", "nope")]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.message, "Can't find snapshot");
    let e = open_view(
        &img,
        OpenFlags::READ_ONLY,
        &[("snapshot.id", "1"), ("snapshot.name", "x")],
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = open_view(&img, OpenFlags::NONE, &[("snapshot.id", "1")]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "Device is not readonly");
    // A snapshot whose L1 offset is unaligned.
    let n = open(&img, OpenFlags::READ_ONLY);
    let snap_off = n.meta_read().h.snapshots_offset;
    drop(n);
    poke(&img, snap_off, &0x1234u64.to_be_bytes());
    let e = open_view(
        &img,
        OpenFlags::READ_ONLY.with(OpenFlags::CHECK),
        &[("snapshot.id", "1")],
    )
    .unwrap_err();
    assert_eq!(e.message, "Snapshot L1 table offset invalid");
}

fn sn(id: &str, name: &str) -> Snapshot {
    Snapshot {
        l1_offset: 0,
        l1_size: 0,
        id: id.into(),
        name: name.into(),
        date_sec: 0,
        date_nsec: 0,
        vm_clock_nsec: 0,
        vm_state_size: 0,
        disk_size: None,
        icount: None,
        extra_tail: Vec::new(),
    }
}

#[test]
fn find_by_id_name_and_both() {
    let l = [sn("1", "a"), sn("2", "b"), sn("3", "1")];
    let sel = |id: Option<&str>, name: Option<&str>| SnapshotSel {
        id: id.map(str::to_string),
        name: name.map(str::to_string),
    };
    assert_eq!(sel(Some("2"), None).find(&l), Some(1));
    assert_eq!(sel(None, Some("1")).find(&l), Some(2));
    assert_eq!(sel(Some("1"), Some("a")).find(&l), Some(0));
    assert_eq!(sel(Some("1"), Some("b")).find(&l), None);
    assert_eq!(sel(None, Some("zz")).find(&l), None);
}
