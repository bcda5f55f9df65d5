//! check() counts like `qemu-img check` and repairs what it reports.

use super::*;
use block_core::CheckMode;

fn compare_with_qemu(img: &str) -> block_core::CheckReport {
    let q = qemu_check(img);
    let n = open(img, OpenFlags::READ_ONLY.with(OpenFlags::CHECK));
    let r = n.check(CheckMode::REPORT).unwrap();
    let g = |k: &str| q.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(r.corruptions, g("corruptions"), "corruptions: {q}");
    assert_eq!(r.leaks, g("leaks"), "leaks: {q}");
    assert_eq!(r.check_errors, g("check-errors"), "errors: {q}");
    assert_eq!(
        r.image_end_offset,
        q["image-end-offset"].as_u64(),
        "end: {q}"
    );
    assert_eq!(r.total_clusters, q["total-clusters"].as_u64(), "{q}");
    assert_eq!(
        r.allocated_clusters,
        q["allocated-clusters"].as_u64(),
        "{q}"
    );
    assert_eq!(
        r.fragmented_clusters,
        q["fragmented-clusters"].as_u64(),
        "{q}"
    );
    assert_eq!(
        r.compressed_clusters,
        q["compressed-clusters"].as_u64(),
        "{q}"
    );
    r
}

fn l2_of(img: &str, l1_index: u64) -> u64 {
    let b = peek(img, 0x30000 + 8 * l1_index, 8);
    u64::from_be_bytes(b.try_into().unwrap()) & crate::mapping::L1E_OFFSET_MASK
}

fn base_image(s: &Scratch) -> String {
    let img = s.path("c.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "4M"]);
    qemu_io(
        &img,
        &[
            "write -P 1 0 256k",
            "write -P 2 1M 64k",
            "write -P 3 512k 64k",
            "write -c -P 4 2M 64k",
            "write -c -P 5 3M 64k",
            "write -z 3200k 64k",
        ],
    );
    img
}

#[test]
fn clean_image_same_numbers() {
    let s = Scratch::new();
    let img = base_image(&s);
    let r = compare_with_qemu(&img);
    assert_eq!(r.corruptions + r.leaks, 0);
    assert!(r.fragmented_clusters.unwrap() > 0);
}

fn repair_matches(img: &str, expect_fix: bool) {
    let before = raw_of(img, "qcow2");
    let copy = format!("{img}.q");
    std::fs::copy(img, &copy).unwrap();
    let n = open(img, OpenFlags::CHECK);
    let r = n.check(CheckMode::FIX_ALL).unwrap();
    assert!(
        !expect_fix || r.corruptions_fixed + r.leaks_fixed > 0,
        "{r:?}"
    );
    drop(n);
    assert_clean(img);
    // qemu's own repair gives the same content.
    let _ = Command::new("qemu-img")
        .args(["check", "-q", "-r", "all", &copy])
        .output();
    assert!(raw_of(img, "qcow2") == raw_of(&copy, "qcow2"));
    let _ = before;
}

#[test]
fn leak_counted_and_repaired() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    // Drop the reference of guest cluster 3: its host cluster leaks.
    poke(&img, l2 + 3 * 8, &[0u8; 8]);
    let r = compare_with_qemu(&img);
    assert_eq!(r.leaks, 1);
    let n = open(&img, OpenFlags::CHECK);
    let r = n.check(CheckMode::FIX_LEAKS).unwrap();
    assert_eq!(r.leaks_fixed, 1);
    drop(n);
    assert_clean(&img);
}

#[test]
fn corruptions_counted_and_repaired() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    // Guest cluster 1 now shares host cluster of guest cluster 0.
    let e0 = peek(&img, l2, 8);
    poke(&img, l2 + 8, &e0);
    // A refcount dropped to zero for the L2 table.
    let rb = 0x20000u64;
    poke(&img, rb + 2 * (l2 / 65536), &[0, 0]);
    let r = compare_with_qemu(&img);
    assert!(r.corruptions >= 2, "{r:?}");
    repair_matches(&img, true);
}

#[test]
fn reserved_bits_and_copied_flags() {
    let s = Scratch::new();
    let img = base_image(&s);
    let l2 = l2_of(&img, 0);
    let mut e = peek(&img, l2 + 16, 8);
    e[0] &= 0x7f; // clear COPIED
    e[7] |= 0x02; // reserved bit
    poke(&img, l2 + 16, &e);
    let r = compare_with_qemu(&img);
    assert_eq!(r.corruptions, 2);
}

#[test]
fn snapshot_images_same_numbers() {
    let s = Scratch::new();
    let img = base_image(&s);
    qemu_img(&["snapshot", "-c", "one", &img]);
    qemu_io(&img, &["write -P 9 0 100k", "write -c -P 8 2560k 64k"]);
    qemu_img(&["snapshot", "-c", "two", &img]);
    compare_with_qemu(&img);
    let l2 = l2_of(&img, 0);
    poke(&img, l2 + 5 * 8, &[0x80, 0, 0, 0, 0, 0x0f, 0, 0]);
    compare_with_qemu(&img);
}

#[test]
fn small_clusters_and_narrow_refcounts() {
    let s = Scratch::new();
    let img = s.path("n.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=512,refcount_bits=2",
        &img,
        "1M",
    ]);
    qemu_io(
        &img,
        &[
            "write -P 1 0 300k",
            "write -c -P 2 512k 4k",
            "write -P 3 700k 1k",
        ],
    );
    compare_with_qemu(&img);
}

#[test]
fn repair_never_writes_through_a_refcount_block_in_data() {
    let s = Scratch::new();
    let img = s.path("rb.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &img, "1M"]);
    qemu_io(&img, &["write -P 7 0 64k"]);
    // Point refcount table entry 0 at the data cluster of guest offset 0.
    let data = {
        let n = open(&img, OpenFlags::READ_ONLY);
        let m = n.meta_read();
        let lk = n.lookup(&m, 0).unwrap();
        (
            lk.entry & crate::mapping::L2E_OFFSET_MASK,
            m.h.refcount_table_offset,
        )
    };
    poke(&img, data.1, &data.0.to_be_bytes());
    let before = std::fs::read(&img).unwrap();
    let n = open(&img, OpenFlags::CHECK);
    let r = n.check(CheckMode::FIX_ALL).unwrap();
    assert!(r.corruptions > 0 && r.check_errors > 0, "{r:?}");
    drop(n);
    let after = std::fs::read(&img).unwrap();
    let d = data.0 as usize;
    assert_eq!(before[d..d + 65536], after[d..d + 65536]);
}
