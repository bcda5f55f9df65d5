//! The log: a crash between the log entry and its application leaves a
//! dirty log that read-only opens refuse and read-write opens replay.

use super::*;
use crate::header::MIB;
use block_core::{BlockNodeExt, CheckMode, ErrorKind};

/// An image whose block 1 was written but whose BAT update stopped after
/// its log entry was durable.
fn crashed_image() -> (Arc<TestHost>, Arc<MemFile>) {
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let n = open_format(&host);
    n.write_at(0, &[1; 4096]).unwrap();
    n.format().stop_after_log_entry();
    n.write_at(MIB, &[2; 4096]).unwrap();
    drop(n);
    (host, file)
}

#[test]
fn a_dirty_log_refuses_read_only_and_is_replayed_read_write() {
    let (host, file) = crashed_image();
    assert!(!current_header(&file).log_guid.is_zero(), "dirty");
    let Err(e) = open(&host, OpenFlags::READ_ONLY) else {
        panic!("a dirty log opened read-only")
    };
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("needs to be replayed"), "{e}");
    let n = open(&host, OpenFlags::NONE).unwrap();
    assert!(
        current_header(&file).log_guid.is_zero(),
        "replayed and emptied"
    );
    let mut b = [0u8; 4096];
    n.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [2; 4096]);
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [1; 4096]);
    let rep = n.check_control().unwrap().check(CheckMode::REPORT).unwrap();
    assert_eq!((rep.corruptions_fixed, rep.corruptions), (1, 0));
    // The next open finds nothing to replay.
    drop(n);
    let n = open(&host, OpenFlags::READ_ONLY).unwrap();
    let rep = n.check_control().unwrap().check(CheckMode::REPORT).unwrap();
    assert_eq!(rep.corruptions_fixed, 0);
}

#[test]
fn a_torn_log_entry_is_not_replayed() {
    let (host, file) = crashed_image();
    let h = current_header(&file);
    // One byte of the entry's data sector changed: its CRC no longer holds.
    let mut s = file.peek(h.log_offset + 4096 + 100, 1);
    s[0] ^= 0xff;
    file.poke(h.log_offset + 4096 + 100, &s);
    let n = open(&host, OpenFlags::NONE).unwrap();
    let mut b = [9u8; 4096];
    n.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [0; 4096], "the block stays unlinked");
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [1; 4096]);
}

#[test]
fn a_log_entry_writing_into_the_log_is_refused() {
    use crate::log::encode_entry;
    let (host, file) = crashed_image();
    let h = current_header(&file);
    let sector = vec![0u8; 4096];
    let e = encode_entry(
        9,
        h.log_guid,
        file.contents().len() as u64,
        &[(h.log_offset, &sector)],
    )
    .unwrap();
    file.poke(h.log_offset, &e);
    let Err(err) = open(&host, OpenFlags::NONE) else {
        panic!("a log writing into the log was replayed")
    };
    assert!(err.to_string().contains("into the log"), "{err}");
}
