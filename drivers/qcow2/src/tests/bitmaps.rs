//! Persistent dirty bitmaps in the driver: store round trips across close,
//! inactivate and activate, crashes, lazy-refcount repair, multi-cluster
//! bitmap data, and the answers of the control call.

use super::*;
use block_core::prelude::*;
use serde_json::{json, Value};

fn ctl(n: &Qcow2Node, req: Value) -> Result<Value> {
    let s = n.bitmap_control(&req.to_string())?;
    Ok(serde_json::from_str(&s).unwrap())
}

fn ranges(n: &Qcow2Node, name: &str) -> Vec<(u64, u64)> {
    let v = ctl(n, json!({"op": "get", "name": name})).unwrap();
    v["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

fn qemu_flags(img: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&qemu_img(&["info", "-U", "--output=json", img])).unwrap();
    v["format-specific"]["data"]["bitmaps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| b["flags"].clone())
        .collect()
}

#[test]
fn store_round_trip_across_inactivate_and_activate() {
    let s = Scratch::new();
    let img = s.path("b.qcow2");
    create(&img, "size=64M").unwrap();
    let n = open(&img, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "a", "granularity": 65536})).unwrap();
    ctl(&n, json!({"op": "add", "name": "d", "disabled": true})).unwrap();
    n.write_at(1 << 20, &[1u8; 4096]).unwrap();
    n.inactivate().unwrap();
    // Stored, not in use (bitmaps new in one session newest first, as
    // QEMU stores them), and QEMU finds the image clean.
    assert_eq!(qemu_flags(&img), vec![json!([]), json!(["auto"])]);
    assert_clean(&img);
    n.activate().unwrap();
    assert_eq!(
        qemu_flags(&img),
        vec![json!(["in-use"]), json!(["in-use", "auto"])]
    );
    n.write_zeroes(5 << 20, 1 << 20, block_core::ZeroFlags::MAY_UNMAP)
        .unwrap();
    n.discard(10 << 20, 65536).unwrap();
    drop(n);
    assert_eq!(qemu_flags(&img), vec![json!([]), json!(["auto"])]);
    assert_clean(&img);
    let n = open(&img, OpenFlags::READ_ONLY);
    assert_eq!(
        ranges(&n, "a"),
        vec![
            (1 << 20, (1 << 20) + 65536),
            (5 << 20, 6 << 20),
            (10 << 20, (10 << 20) + 65536)
        ]
    );
    assert_eq!(ranges(&n, "d"), vec![]);
    // Read-only: queries only.
    let e = ctl(&n, json!({"op": "clear", "name": "a"})).unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::ReadOnly);
}

#[test]
fn multi_cluster_bitmap_data() {
    // 512-byte clusters, 512-byte granularity over 64 MiB: 16 KiB of bits
    // in 32 data clusters.
    let s = Scratch::new();
    let img = s.path("m.qcow2");
    create(&img, "size=64M,cluster_size=512").unwrap();
    let n = open(&img, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "fine", "granularity": 512})).unwrap();
    let mut rng = Rng(7);
    let mut want = Vec::new();
    for _ in 0..40 {
        let off = (rng.next() % (64 << 11)) * 512;
        n.write_at(off, &[9u8; 512]).unwrap();
        want.push((off, off + 512));
    }
    // The last bit of the disk too.
    n.write_at((64 << 20) - 512, &[1u8; 512]).unwrap();
    want.push(((64 << 20) - 512, 64 << 20));
    want.sort_unstable();
    want.dedup();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in want {
        match merged.last_mut() {
            Some(l) if l.1 >= a => l.1 = l.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    drop(n);
    assert_clean(&img);
    let n = open(&img, OpenFlags::READ_ONLY);
    assert_eq!(ranges(&n, "fine"), merged);
}

#[test]
fn crash_leaves_bitmaps_inconsistent_and_refcounts_intact() {
    let s = Scratch::new();
    let img = s.path("c.qcow2");
    create(&img, "size=16M,lazy_refcounts=on").unwrap();
    let n = open(&img, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "x"})).unwrap();
    n.write_at(0, &[1u8; 4096]).unwrap();
    drop(n);
    let n = open(&img, OpenFlags::NONE);
    n.write_at(8 << 20, &[2u8; 4096]).unwrap();
    n.flush().unwrap();
    std::mem::forget(n); // crash: in-use and dirty bits stay set
    assert_eq!(qemu_flags(&img), vec![json!(["in-use", "auto"])]);
    // The dirty-image repair at the next writable open must keep the
    // bitmap's clusters.
    let n = open(&img, OpenFlags::NONE);
    let v = ctl(&n, json!({"op": "list"})).unwrap();
    assert_eq!(v[0]["inconsistent"], true);
    let e = n.truncate(32 << 20, Preallocation::Off).unwrap_err();
    assert!(e.message.contains("inconsistent"), "{e}");
    let e = ctl(&n, json!({"op": "enable", "name": "x"})).unwrap_err();
    assert!(e.message.contains("inconsistent"), "{e}");
    drop(n);
    assert_clean(&img);
    assert_eq!(qemu_flags(&img), vec![json!(["in-use", "auto"])]);
    // Removal is what an inconsistent bitmap is good for.
    let n = open(&img, OpenFlags::NONE);
    ctl(&n, json!({"op": "remove", "name": "x"})).unwrap();
    drop(n);
    assert_clean(&img);
    assert!(qemu_flags(&img).is_empty());
}

#[test]
fn control_call_errors() {
    let s = Scratch::new();
    let img = s.path("e.qcow2");
    create(&img, "size=1M").unwrap();
    let n = open(&img, OpenFlags::NONE);
    for (req, msg) in [
        (json!({"op": "frob"}), "unknown bitmap operation"),
        (
            json!({"op": "remove", "name": "no"}),
            "Dirty bitmap 'no' not found",
        ),
        (
            json!({"op": "add", "name": "g", "granularity": 1000}),
            "Granularity must be power of 2",
        ),
        (
            json!({"op": "add", "name": "g", "granularity": 256}),
            "Granularity must be power of 2",
        ),
        (
            json!({"op": "add", "name": "n".repeat(1024)}),
            "Name length exceeds maximum",
        ),
    ] {
        let e = ctl(&n, req.clone()).unwrap_err();
        assert!(e.message.contains(msg), "{req}: {e}");
    }
    assert!(n.format().bitmap_control("not json").is_err());
    ctl(&n, json!({"op": "add", "name": "g"})).unwrap();
    let e = ctl(&n, json!({"op": "add", "name": "g"})).unwrap_err();
    assert_eq!(e.message, "Bitmap already exists: g");
    // Version 2 images cannot keep bitmaps.
    let v2 = s.path("v2.qcow2");
    create(&v2, "size=1M,compat=0.10").unwrap();
    let n2 = open(&v2, OpenFlags::NONE);
    let e = ctl(&n2, json!({"op": "add", "name": "g"})).unwrap_err();
    assert!(
        e.message
            .contains("Cannot store dirty bitmaps in qcow2 v2 files"),
        "{e}"
    );
    assert_eq!(
        ctl(&n2, json!({"op": "list"})).unwrap_err().kind,
        block_core::ErrorKind::Unsupported
    );
}

/// A file node that keeps only the first `budget` writes (a power cut:
/// later writes never reach the disk); counts the writes it was asked for.
struct CutNode {
    inner: Arc<dyn BlockNode>,
    budget: Arc<std::sync::atomic::AtomicI64>,
}

impl BlockNode for CutNode {
    fn read_vectored(&self, offset: u64, bufs: &mut [IoSliceMut<'_>], f: ReqFlags) -> Result<()> {
        self.inner.read_vectored(offset, bufs, f)
    }
    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], f: ReqFlags) -> Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            self.inner.write_vectored(offset, bufs, f)
        } else {
            Ok(())
        }
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn length(&self) -> Result<u64> {
        self.inner.length()
    }
    fn info(&self) -> Result<NodeInfo> {
        self.inner.info()
    }
    fn truncate(&self, size: u64, p: Preallocation) -> Result<()> {
        if self.budget.load(Ordering::SeqCst) > 0 {
            self.inner.truncate(size, p)
        } else {
            Ok(())
        }
    }
    fn discard(&self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
}

struct CutHost(Arc<std::sync::atomic::AtomicI64>);

impl HostServices for CutHost {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        let inner = TestHost.open_child(req)?;
        Ok(Arc::new(CutNode {
            inner,
            budget: self.0.clone(),
        }))
    }
    fn create_file(&self, filename: &str, size: u64, p: Preallocation) -> Result<()> {
        TestHost.create_file(filename, size, p)
    }
}

/// One session on a copy of `base` whose writes stop reaching the disk
/// after `budget` of them: open, a guest write at 5 MiB, close. Returns
/// how many writes the session asked for.
fn cut_session(base: &str, img: &str, budget: i64) -> i64 {
    std::fs::copy(base, img).unwrap();
    let b = Arc::new(std::sync::atomic::AtomicI64::new(budget));
    let n = super::node_of(
        crate::open::open(
            &OpenRequest::new(img, OpenFlags::NONE),
            Arc::new(CutHost(b.clone())),
        )
        .unwrap(),
        OpenFlags::NONE,
    );
    n.write_at(5 << 20, &[2u8; 4096]).unwrap();
    drop(n);
    budget - b.load(Ordering::SeqCst)
}

#[test]
fn power_cut_at_every_write_of_a_session_with_bitmaps() {
    let s = Scratch::new();
    let base = s.path("base.qcow2");
    create(&base, "size=16M").unwrap();
    let n = open(&base, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "a"})).unwrap();
    n.write_at(1 << 20, &[1u8; 4096]).unwrap();
    drop(n);
    let img = s.path("cut.qcow2");
    let total = cut_session(&base, &img, i64::MAX / 2);
    assert!(total > 8, "{total} writes");
    let mut outcomes = std::collections::BTreeSet::new();
    for k in 0..=total {
        cut_session(&base, &img, k);
        let v = qemu_check(&img);
        assert_eq!(v["corruptions"].as_u64().unwrap_or(0), 0, "cut at {k}: {v}");
        let flags = qemu_flags(&img);
        let n = open(&img, OpenFlags::READ_ONLY);
        let mut data = [0u8; 4096];
        n.read_at(5 << 20, &mut data).unwrap();
        let written = data == [2u8; 4096];
        match flags.first() {
            // Dropped with the autoclear bit off (as QEMU would drop it).
            None => {
                outcomes.insert("dropped");
            }
            Some(f) if f == &json!(["in-use", "auto"]) => {
                outcomes.insert("in-use");
            }
            Some(f) => {
                assert_eq!(f, &json!(["auto"]), "cut at {k}");
                let r = ranges(&n, "a");
                assert!(
                    r.contains(&(1 << 20, (1 << 20) + 65536)),
                    "cut at {k}: {r:?}"
                );
                if written {
                    // A consistent bitmap must show the write.
                    assert!(
                        r.contains(&(5 << 20, (5 << 20) + 65536)),
                        "cut at {k}: {r:?}"
                    );
                }
                outcomes.insert(if written { "stored" } else { "untouched" });
            }
        }
    }
    // The sweep saw the untouched image, the in-use window and the store.
    for o in ["untouched", "in-use", "stored"] {
        assert!(outcomes.contains(o), "{outcomes:?}");
    }
}

/// The directory entries of an image (parsed by this driver's code).
fn directory(img: &str) -> Vec<crate::bitmap::dir::DirEntry> {
    let buf = std::fs::read(img).unwrap();
    let h = crate::layout::header::Header::parse(&buf[..65536], buf.len() as u64).unwrap();
    let ext = crate::bitmap::ext_of(&h).unwrap().unwrap();
    let d = &buf[ext.dir_offset as usize..(ext.dir_offset + ext.dir_size) as usize];
    crate::bitmap::dir::parse_directory(d, &ext, 65536, h.size).unwrap()
}

#[test]
fn bitmap_clusters_shared_with_metadata_are_refused() {
    let s = Scratch::new();
    let base = s.path("base.qcow2");
    create(&base, "size=16M").unwrap();
    let n = open(&base, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "a"})).unwrap();
    ctl(&n, json!({"op": "add", "name": "b"})).unwrap();
    n.write_at(0, &[1u8; 512]).unwrap();
    drop(n);
    let dir = directory(&base);
    let table_of = |name: &str| dir.iter().find(|e| e.name == name).unwrap().table_offset;
    let data_of_a = u64::from_be_bytes(peek(&base, table_of("a"), 8).try_into().unwrap());
    assert_ne!(data_of_a, 0);
    let reftable = u64::from_be_bytes(peek(&base, 48, 8).try_into().unwrap());
    let l1 = u64::from_be_bytes(peek(&base, 40, 8).try_into().unwrap());
    for (what, at, value) in [
        (
            "a table entry on the refcount table",
            table_of("a"),
            reftable,
        ),
        ("a table entry on the L1 table", table_of("a"), l1),
        (
            "two bitmaps sharing a data cluster",
            table_of("b"),
            data_of_a,
        ),
        (
            "a table entry on another bitmap's table",
            table_of("b"),
            table_of("a"),
        ),
    ] {
        let img = s.path("h.qcow2");
        std::fs::copy(&base, &img).unwrap();
        poke(&img, at, &value.to_be_bytes());
        let before = std::fs::read(&img).unwrap();
        let e = try_open(&img, OpenFlags::NONE).unwrap_err();
        assert!(
            e.message.contains("overlaps") || e.message.contains("used twice"),
            "{what}: {e}"
        );
        assert!(
            std::fs::read(&img).unwrap() == before,
            "{what}: the open wrote"
        );
    }
}

#[test]
fn check_of_damaged_bitmap_structures_frees_nothing_they_name() {
    use block_core::CheckMode;
    let s = Scratch::new();
    let base = s.path("base.qcow2");
    create(&base, "size=16M").unwrap();
    let n = open(&base, OpenFlags::NONE);
    ctl(&n, json!({"op": "add", "name": "a", "granularity": 512})).unwrap();
    n.write_at(0, &[1u8; 512]).unwrap();
    drop(n);
    let dir = directory(&base);
    let table = dir[0].table_offset;
    let data = u64::from_be_bytes(peek(&base, table, 8).try_into().unwrap());
    let dir_off = {
        let buf = std::fs::read(&base).unwrap();
        let h = crate::layout::header::Header::parse(&buf[..65536], buf.len() as u64).unwrap();
        crate::bitmap::ext_of(&h).unwrap().unwrap().dir_offset
    };
    // A reserved bit in the table entry, a granularity out of range in the
    // directory entry: QEMU refuses to open the image, check included, and
    // so does the driver, changing nothing.
    for (what, at, bytes) in [
        ("table entry", table, (data | 2).to_be_bytes().to_vec()),
        ("granularity", dir_off + 17, vec![60u8]),
    ] {
        let img = s.path("d.qcow2");
        std::fs::copy(&base, &img).unwrap();
        poke(&img, at, &bytes);
        let before = std::fs::read(&img).unwrap();
        let e = super::try_open(&img, OpenFlags::CHECK).err();
        assert!(e.is_some(), "{what}: opened");
        assert_eq!(std::fs::read(&img).unwrap(), before, "{what}: changed");
        assert_eq!(qemu_check_relaxed(&img), 0, "{what}");
    }
    // A damaged table of a bitmap in use: QEMU opens the image (it does not
    // read that table) and its check fails with EINVAL; so does this one,
    // and a repair frees neither the table nor the data cluster.
    let img = s.path("u.qcow2");
    std::fs::copy(&base, &img).unwrap();
    poke(&img, table, &(data | 2).to_be_bytes());
    let flags = u32::from_be_bytes(peek(&img, dir_off + 12, 4).try_into().unwrap());
    poke(&img, dir_off + 12, &(flags | 1).to_be_bytes());
    let n = open(&img, OpenFlags::CHECK);
    let e = n.check_impl(CheckMode::FIX_ALL).unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::InvalidInput, "{e}");
    drop(n);
    let rc = |off: u64| {
        let n = open(&img, OpenFlags::CHECK.with(OpenFlags::READ_ONLY));
        let ws = n.wlock();
        n.get_refcount(&ws, off / 65536).unwrap()
    };
    assert_eq!(rc(table), 1, "table freed");
    assert_eq!(rc(data), 1, "data freed");
}

/// Corruptions qemu-img check finds in an image with a broken bitmap
/// extension (QEMU cannot open such an image: a copy with the autoclear
/// bit cleared makes it ignore the extension; its clusters are then leaks).
fn qemu_check_relaxed(img: &str) -> u64 {
    let copy = format!("{img}.noext");
    std::fs::copy(img, &copy).unwrap();
    // Clearing the autoclear bit makes QEMU ignore the extension.
    poke(&copy, 88, &0u64.to_be_bytes());
    let v = qemu_check(&copy);
    v["corruptions"].as_u64().unwrap_or(0)
}
