//! `check` through the node's CheckControl: clean images, leaks (and their
//! repair), and entries that are wrong.

use super::*;
use block_core::{BlockNodeExt, CheckMode, CheckReport, FindingKind};

fn check(host: &Arc<TestHost>, mode: CheckMode) -> CheckReport {
    let node = open(host, OpenFlags::CHECK).unwrap();
    let r = node
        .check_control()
        .expect("the node offers check")
        .check(mode);
    r.unwrap()
}

#[test]
fn a_written_image_has_no_errors() {
    let (host, _file) = create(&[("size", "1M")]);
    let node = open(&host, OpenFlags::NONE).unwrap();
    node.write_at(BLOCK / 2, &pattern(2 * BLOCK as usize, 1))
        .unwrap();
    node.write_at(8 * BLOCK, b"x").unwrap();
    let r = check(&host, CheckMode::REPORT);
    assert_eq!(
        (r.corruptions, r.leaks, r.check_errors),
        (0, 0, 0),
        "{:?}",
        r.findings
    );
    assert_eq!(r.total_clusters, Some(16));
    assert_eq!(r.allocated_clusters, Some(4));
    assert_eq!(r.image_end_offset, Some(5 * BLOCK));
}

/// A crash after a block's data was written but before its BAT entry:
/// the block is a leak at the end of the file, and `-r leaks` drops it.
#[test]
fn a_block_no_entry_names_is_a_leak_and_repair_truncates_it() {
    let (host, file) = create(&[("size", "1M")]);
    open(&host, OpenFlags::NONE)
        .unwrap()
        .write_at(0, b"kept")
        .unwrap();
    file.poke(2 * BLOCK, &pattern(BLOCK as usize, 2));
    let r = check(&host, CheckMode::REPORT);
    assert_eq!((r.corruptions, r.leaks), (0, 1), "{:?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::Leak);
    assert!(
        r.findings[0]
            .message
            .contains("1 leaked block(s) at offset 0x20000"),
        "{:?}",
        r.findings
    );

    let r = check(&host, CheckMode::FIX_LEAKS);
    assert_eq!((r.leaks, r.leaks_fixed), (0, 1), "{:?}", r.findings);
    assert_eq!(file.length().unwrap(), 2 * BLOCK);
    assert_eq!(check(&host, CheckMode::REPORT).leaks, 0);
    // The data that was named survives, and the next block reuses the space.
    let node = open(&host, OpenFlags::NONE).unwrap();
    let mut b = [0u8; 4];
    node.read_at(0, &mut b).unwrap();
    assert_eq!(&b, b"kept");
    node.write_at(BLOCK, b"next").unwrap();
    assert_eq!(stored_entry(&file, 1), 2);
}

#[test]
fn wrong_entries_are_corruptions() {
    let (host, file) = create(&[("size", "1M")]);
    open(&host, OpenFlags::NONE)
        .unwrap()
        .write_at(0, &[1; 3 * BLOCK as usize])
        .unwrap();
    // Entry 5 shares block 2 with entry 1; entry 6 names a block past the
    // end. Block 1 is now named by nobody: a leak, not at the end of the
    // file, so repair leaves it.
    poke_entry(&file, 5, 2);
    poke_entry(&file, 6, 100);
    poke_entry(&file, 0, 0);
    let r = check(&host, CheckMode::FIX_ALL);
    assert_eq!(
        (r.corruptions, r.leaks, r.leaks_fixed),
        (2, 1, 0),
        "{:?}",
        r.findings
    );
    let text: Vec<&str> = r.findings.iter().map(|f| f.message.as_str()).collect();
    assert!(
        text.iter()
            .any(|m| m.contains("BAT entry 6 names block 100, past the end")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("BAT entries 1 and 5 both name block 2")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|m| m.contains("leaked block(s) at offset 0x10000")),
        "{text:?}"
    );
    assert!(text.iter().all(|m| !m.contains("Repairing")), "{text:?}");
}
