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

/// A one-sector entry of sequence `seq` in log `guid` zeroing `len` bytes
/// at `at` (a zero descriptor), with tail `tail`.
fn zero_entry(
    seq: u64,
    guid: crate::guid::Guid,
    file_len: u64,
    at: u64,
    len: u64,
    tail: u32,
) -> Vec<u8> {
    use crate::header::{seal, ENDIAN};
    use crate::log::{EntryHeader, ZERO_DESC_SIGNATURE};
    let mut b = vec![0u8; 4096];
    EntryHeader {
        checksum: 0,
        entry_length: 4096,
        tail,
        sequence: seq,
        descriptor_count: 1,
        log_guid: guid,
        flushed_file_offset: file_len,
        last_file_offset: file_len,
    }
    .encode(&mut b);
    ENDIAN.put_u32(&mut b, 64, ZERO_DESC_SIGNATURE);
    ENDIAN.put_u64(&mut b, 72, len);
    ENDIAN.put_u64(&mut b, 80, at);
    ENDIAN.put_u64(&mut b, 88, seq);
    seal(&mut b, 4);
    b
}

#[test]
fn the_active_sequence_wraps_around_the_log_and_stale_entries_stay() {
    use crate::bat;
    use crate::guid::Guid;
    use crate::header::Headers;
    use crate::log::encode_entry;
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[1; 2 << 20]).unwrap();
    drop(n);
    let (b0, b1) = {
        let f = open_format(&host);
        let m = f.format().meta();
        (bat::offset(m.bat.entries[0]), bat::offset(m.bat.entries[1]))
    };
    // A dirty log: the header names a log GUID.
    let guid = Guid::random();
    let mut hs = Headers::load(file.as_ref()).unwrap();
    let mut h = hs.current();
    h.log_guid = guid;
    hs.update(file.as_ref(), h).unwrap();
    let (log, len) = (h.log_offset, u64::from(h.log_length));
    let flen = file.contents().len() as u64;
    // Entry 7 (two sectors) starts in the last sector and wraps to the
    // first; entry 8 follows it; entry 3 elsewhere is an older sequence.
    let data = vec![0x33u8; 4096];
    let e7 = encode_entry(7, guid, flen, &[(b0, &data)]).unwrap();
    file.poke(log + len - 4096, &e7[..4096]);
    file.poke(log, &e7[4096..]);
    file.poke(
        log + 4096,
        &zero_entry(8, guid, flen, b1, 8192, (len - 4096) as u32),
    );
    file.poke(
        log + (64 << 10),
        &zero_entry(3, guid, flen, b0 + 4096, 4096, 0),
    );
    let n = open(&host, OpenFlags::NONE).unwrap();
    let mut got = vec![0u8; 12288];
    n.read_at(0, &mut got).unwrap();
    assert!(got[..4096].iter().all(|&x| x == 0x33), "entry 7 applied");
    assert!(got[4096..].iter().all(|&x| x == 1), "entry 3 not applied");
    n.read_at(MIB, &mut got).unwrap();
    assert!(got[..8192].iter().all(|&x| x == 0), "entry 8 applied");
    assert!(got[8192..].iter().all(|&x| x == 1));
    assert!(current_header(&file).log_guid.is_zero());
}

#[test]
fn hostile_log_entries_are_ignored_or_refused() {
    use crate::header::{seal, ENDIAN};
    let (host, file) = crashed_image();
    let h = current_header(&file);
    // A descriptor count far beyond the entry: not a valid entry, skipped
    // without allocating for it (block 1 stays unlinked).
    let mut e = file.peek(h.log_offset, 8192);
    ENDIAN.put_u32(&mut e, 24, u32::MAX);
    seal(&mut e, 4);
    file.poke(h.log_offset, &e);
    let n = open(&host, OpenFlags::NONE).unwrap();
    let mut b = [9u8; 4096];
    n.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [0; 4096]);
    drop(n);
    // A valid entry asking for an enormous file: refused.
    let (host, file) = crashed_image();
    let h = current_header(&file);
    let mut e = file.peek(h.log_offset, 8192);
    ENDIAN.put_u64(&mut e, 56, u64::MAX / 2);
    seal(&mut e, 4);
    file.poke(h.log_offset, &e);
    let before = file.contents().len();
    let Err(err) = open(&host, OpenFlags::NONE) else {
        panic!("an entry for an enormous file was replayed")
    };
    assert!(err.to_string().contains("needs a file of"), "{err}");
    assert_eq!(file.contents().len(), before);
}

#[test]
fn a_new_block_is_durable_before_its_log_entry_and_the_entry_before_the_bat() {
    use block_core::testutil::ChildOp;
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    n.write_at(0, &[1; 512]).unwrap();
    let f = open_format(&host);
    let (log, bat) = {
        let m = f.format().meta();
        (m.log.log, m.regions.bat)
    };
    drop(f);
    let data_at = file.contents().len() as u64;
    file.clear_log();
    n.write_at(2 * MIB, &[2; 512]).unwrap();
    let reqs: Vec<_> = file
        .requests()
        .into_iter()
        .filter(|r| r.op != ChildOp::Read)
        .collect();
    let first = |p: &dyn Fn(&block_core::testutil::RequestRecord) -> bool| {
        reqs.iter().position(p).expect("request made")
    };
    let data = first(&|r| r.op == ChildOp::Write && r.offset == data_at);
    let entry = first(&|r| r.op == ChildOp::Write && r.offset == log.offset);
    let table =
        first(&|r| r.op == ChildOp::Write && bat.offset <= r.offset && r.offset < bat.end());
    let flush_between = |a: usize, b: usize| reqs[a..b].iter().any(|r| r.op == ChildOp::Flush);
    assert!(data < entry && flush_between(data, entry), "{reqs:?}");
    assert!(entry < table && flush_between(entry, table), "{reqs:?}");
    // The log is emptied (headers written) only after the BAT is durable.
    let last_header = reqs
        .iter()
        .rposition(|r| r.op == ChildOp::Write && r.offset < MIB)
        .unwrap();
    assert!(
        table < last_header && flush_between(table, last_header),
        "{reqs:?}"
    );
    assert_eq!(reqs.last().unwrap().op, ChildOp::Flush);
}

#[test]
fn an_inactive_open_defers_the_replay_to_its_activation() {
    let (host, file) = crashed_image();
    let before = file.contents();
    let n = open(&host, OpenFlags::INACTIVE).unwrap();
    assert_eq!(file.contents(), before, "an inactive open writes nothing");
    n.migration().unwrap().activate().unwrap();
    assert!(current_header(&file).log_guid.is_zero(), "replayed");
    let mut b = [0u8; 4096];
    n.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [2; 4096]);
    // Handed off again, a re-read writes nothing.
    n.migration().unwrap().inactivate().unwrap();
    let after = file.contents();
    n.migration().unwrap().invalidate_cache().unwrap();
    assert_eq!(file.contents(), after);
}
