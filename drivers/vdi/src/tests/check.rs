//! `check` through the node's CheckControl: clean images, entries that are
//! wrong, and the allocated count (and its repair).

use super::*;
use block_core::{BlockNodeExt, CheckMode, CheckReport};

fn check(host: &Arc<TestHost>, mode: CheckMode) -> CheckReport {
    let node = open(host, OpenFlags::CHECK).unwrap();
    let r = node
        .check_control()
        .expect("the node offers check")
        .check(mode);
    r.unwrap()
}

fn messages(r: &CheckReport) -> Vec<String> {
    r.findings.iter().map(|f| f.message.clone()).collect()
}

#[test]
fn written_and_static_images_have_no_errors() {
    for static_on in ["off", "on"] {
        let (host, _file) = create(&[("size", "5M"), ("static", static_on)]);
        let node = open(&host, OpenFlags::NONE).unwrap();
        node.write_at(BLOCK / 2, &pattern(2 * BLOCK as usize, 1))
            .unwrap();
        node.write_at(4 * BLOCK, b"x").unwrap();
        drop(node);
        let r = check(&host, CheckMode::REPORT);
        assert_eq!(
            (r.corruptions, r.leaks, r.check_errors),
            (0, 0, 0),
            "{:?}",
            r.findings
        );
    }
}

#[test]
fn wrong_entries_and_counts_are_corruptions() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(2 * BLOCK as usize, 3)).unwrap();
    drop(node);
    poke_entry(&file, 2, 1);
    poke_entry(&file, 3, 77);
    let r = check(&host, CheckMode::REPORT);
    let m = messages(&r);
    assert!(
        m.iter().any(|s| s.contains("block index 1 also used by 1")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|s| s.contains("block index 3 too large, is 77")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|s| s.contains("allocated blocks mismatch, is 3, should be 2")),
        "{m:?}"
    );
    assert_eq!(r.corruptions, 3);
    // Repair fixes only the count.
    let r = check(&host, CheckMode::FIX_ALL);
    assert_eq!(
        (r.corruptions, r.corruptions_fixed),
        (2, 1),
        "{:?}",
        r.findings
    );
    assert_eq!(stored_header(&file).blocks_allocated, 3);
}

#[test]
fn a_count_lost_in_a_crash_is_repaired() {
    let (host, file) = create(&[("size", "4M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(0, &pattern(3 * BLOCK as usize, 3)).unwrap();
    drop(node);
    file.poke(0x184, &1u32.to_le_bytes());
    let r = check(&host, CheckMode::REPORT);
    assert_eq!(r.corruptions, 1, "{:?}", r.findings);
    assert_eq!(
        stored_header(&file).blocks_allocated,
        1,
        "report changes nothing"
    );
    let r = check(&host, CheckMode::FIX_ERRORS);
    assert_eq!((r.corruptions, r.corruptions_fixed), (0, 1));
    assert_eq!(stored_header(&file).blocks_allocated, 3);
    assert_eq!(check(&host, CheckMode::REPORT).corruptions, 0);
    // New blocks go after the three that exist.
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(3 * BLOCK, b"y").unwrap();
    assert_eq!(stored_entry(&file, 3), 3);
}
