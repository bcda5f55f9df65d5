//! The refcount rebuild (meta/rebuild.rs).

use super::{assert_clean, open, qemu_img, qemu_io, raw_of, Scratch};
use block_core::engine::check::RefcountCheck;
use block_core::{CheckControl, CheckMode, CheckReport, OpenFlags};

/// The rebuild writes only where nothing is referenced: until the
/// header switches, the old table and blocks are intact on disk (a
/// crash before the switch leaves the old, consistent image); after
/// it the image checks clean once the leaks are repaired.
#[test]
fn rebuild_leaves_the_old_structure_intact_until_the_header_switch() {
    let s = Scratch::new();
    let img = s.path("r.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        &img,
        "8M",
    ]);
    qemu_io(&img, &["write -P 5 0 1M", "write -P 6 5M 300k"]);
    let want = raw_of(&img, "qcow2");
    let before = std::fs::read(&img).unwrap();
    let (old_rt, old_blocks) = {
        let n = open(&img, OpenFlags::CHECK);
        let ws = n.wlock();
        let m = n.meta_read();
        let blocks: Vec<u64> = ws.reftable.iter().copied().filter(|&o| o != 0).collect();
        (m.h.refcount_table_offset, blocks)
    };
    let n = open(&img, OpenFlags::CHECK);
    {
        let mut ws = n.wlock();
        let mut rep = CheckReport::default();
        let (mut refs, _) = n
            .count_references(&mut ws, CheckMode::REPORT, &mut rep, false)
            .unwrap();
        n.rebuild_refcount_structure(&mut ws, &mut refs).unwrap();
        let m = n.meta_read();
        assert_ne!(m.h.refcount_table_offset, old_rt);
    }
    let after = std::fs::read(&img).unwrap();
    let cs = 4096usize;
    for &o in old_blocks.iter().chain([old_rt].iter()) {
        let o = o as usize;
        assert_eq!(
            before[o..o + cs],
            after[o..o + cs],
            "old structure at {o:#x} changed"
        );
    }
    // Only the header's refcount table fields changed in cluster 0.
    assert_eq!(before[..48], after[..48]);
    assert_eq!(before[60..cs], after[60..cs]);
    let r = n.check(CheckMode::FIX_LEAKS).unwrap();
    assert_eq!((r.corruptions, r.leaks, r.check_errors), (0, 0, 0), "{r:?}");
    drop(n);
    assert_clean(&img);
    assert_eq!(raw_of(&img, "qcow2"), want);
}
