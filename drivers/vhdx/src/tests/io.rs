//! Create, write, reopen: block sizes, fixed and dynamic, the header
//! updates of a session.

use super::*;
use crate::bat::{self, ZERO};
use crate::create::{auto_block_size, CreateParams};
use crate::header::MIB;
use block_core::testutil::pattern;
use block_core::BlockNodeExt;

#[test]
fn create_write_reopen() {
    for pairs in [
        &[("size", "20M"), ("block_size", "1M")][..],
        &[
            ("size", "9000448"),
            ("subformat", "fixed"),
            ("block_size", "2M"),
        ],
        &[
            ("size", "9000448"),
            ("subformat", "fixed"),
            ("block_state_zero", "off"),
        ],
        &[("size", "5M"), ("block_state_zero", "off")],
    ] {
        let (host, _file) = create(pairs);
        let n = open(&host, OpenFlags::NONE).unwrap();
        let size = n.length().unwrap();
        let data = pattern(3 << 20, 3);
        n.write_at(1 << 19, &data).unwrap();
        n.write_at(size - 1000, &[7; 1000]).unwrap();
        n.flush().unwrap();
        drop(n);
        let n = open(&host, OpenFlags::READ_ONLY).unwrap();
        let mut back = vec![0u8; 3 << 20];
        n.read_at(1 << 19, &mut back).unwrap();
        assert_eq!(back, data, "{pairs:?}");
        let mut head = vec![1u8; 1 << 19];
        n.read_at(0, &mut head).unwrap();
        assert!(head.iter().all(|&b| b == 0));
        let mut tail = vec![0u8; 1000];
        n.read_at(size - 1000, &mut tail).unwrap();
        assert_eq!(tail, vec![7; 1000]);
        assert!(n.write_at(0, &[1]).is_err(), "read-only");
    }
}

#[test]
fn block_sizes_and_layout_follow_qemu() {
    assert_eq!(auto_block_size(1 << 30), 8 * MIB);
    assert_eq!(auto_block_size((1 << 30) + 512), 16 * MIB);
    assert_eq!(auto_block_size(200 << 30), 32 * MIB);
    assert_eq!(auto_block_size(40 << 40), 64 * MIB);
    let p = |size, block_size, log_size| CreateParams {
        size,
        log_size,
        block_size,
        block_state_zero: true,
        fixed: false,
    };
    let l = p(1 << 30, 0, MIB).layout().unwrap();
    assert_eq!(
        (
            l.regions.bat.offset,
            l.regions.metadata.offset,
            l.data_offset
        ),
        (2 * MIB, 3 * MIB, 8 * MIB)
    );
    assert_eq!(
        p(10 << 20, 1536 << 10, MIB)
            .layout()
            .unwrap()
            .params
            .block_size,
        2 << 20
    );
    assert_eq!(
        p(10 << 20, 512 << 20, MIB)
            .layout()
            .unwrap()
            .params
            .block_size,
        256 << 20
    );
    assert!(p(10 << 20, 3 << 20, MIB).layout().is_err());
    assert!(p(65 << 40, 0, MIB).layout().is_err());
    assert_eq!(p(1000, 0, MIB).layout().unwrap().params.disk_size, 1024);
    assert_eq!(
        p(10 << 20, 0, 1536 << 10).layout().unwrap().log.length,
        2 * MIB
    );
}

#[test]
fn zero_state_blocks_read_zeros_and_allocate_at_the_end() {
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let n = open(&host, OpenFlags::NONE).unwrap();
    let end = file.contents().len() as u64;
    n.write_at((2 << 20) + 5, &[9; 10]).unwrap();
    let f = open_format(&host);
    let m = f.format().meta();
    assert_eq!(bat::state(m.bat.entries[0]), ZERO);
    let e = m.bat.entries[2];
    assert_eq!(
        (bat::state(e), bat::offset(e)),
        (bat::FULLY_PRESENT, end.div_ceil(MIB) * MIB)
    );
    // The whole block is in the file; the rest of it reads as zeros.
    assert_eq!(file.contents().len() as u64, bat::offset(e) + MIB);
    let mut b = vec![1u8; 1 << 20];
    n.read_at(2 << 20, &mut b).unwrap();
    assert!(b[..5].iter().chain(&b[15..]).all(|&x| x == 0));
    assert_eq!(&b[5..15], &[9; 10]);
}

#[test]
fn a_session_changes_the_write_guids_once_and_leaves_the_log_empty() {
    let (host, file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let h0 = current_header(&file);
    let n = open(&host, OpenFlags::NONE).unwrap();
    let h1 = current_header(&file);
    assert_ne!(
        h1.file_write_guid, h0.file_write_guid,
        "new session GUID at open"
    );
    assert_eq!(h1.data_write_guid, h0.data_write_guid);
    n.write_at(0, &[1; 512]).unwrap();
    let h2 = current_header(&file);
    assert_ne!(h2.data_write_guid, h1.data_write_guid, "first guest write");
    assert_eq!(h2.file_write_guid, h1.file_write_guid);
    n.write_at(MIB, &[2; 512]).unwrap();
    let h3 = current_header(&file);
    assert_eq!(
        h3.data_write_guid, h2.data_write_guid,
        "only the first write"
    );
    assert!(h3.log_guid.is_zero(), "the log is empty after each update");
    assert!(h3.sequence > h2.sequence);
    // A read-only open writes nothing.
    drop(n);
    let before = file.contents();
    let r = open(&host, OpenFlags::READ_ONLY).unwrap();
    let mut b = [0u8; 512];
    r.read_at(0, &mut b).unwrap();
    assert_eq!(file.contents(), before);
    assert_eq!(r.info().unwrap().cluster_size, Some(MIB));
}

#[test]
fn invalidate_reads_what_another_writer_linked() {
    let (host, _file) = create(&[("size", "4M"), ("block_size", "1M")]);
    let reader = open_format(&host);
    let writer = open(&host, OpenFlags::NONE).unwrap();
    writer.write_at(MIB, &[5; 4096]).unwrap();
    let mut b = [1u8; 4096];
    reader.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [0; 4096], "stale BAT before the handoff");
    block_core::engine::Format::invalidate(reader.format()).unwrap();
    reader.read_at(MIB, &mut b).unwrap();
    assert_eq!(b, [5; 4096]);
}
