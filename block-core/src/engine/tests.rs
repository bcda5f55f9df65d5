//! Engine tests over a tiny in-memory format ("toy"): a table of per-unit
//! entries kept in memory and written to the first unit of its file on
//! flush, data units appended to the file after it.

use super::*;
use crate::error::{ErrorKind, Result};
use crate::host::ChildRole;
use crate::info::NodeInfo;
use crate::node::{BlockNode, BlockNodeExt};
use crate::testutil::{ChildOp, InjectedError, MemFile};
use crate::types::{ExtentFlags, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const UNIT: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Unallocated,
    Zero,
    Data(u64),
    /// A unit every byte of which is this value (the toy's "compression").
    Fill(u8),
}

/// The toy format: the worked example of docs/architecture.md.
struct Toy {
    file: Arc<MemFile>,
    backing: Option<Arc<MemFile>>,
    size: u64,
    table: Mutex<Vec<Entry>>,
    next_host: Mutex<u64>,
    allocations: AtomicUsize,
}

impl Toy {
    fn new(size: u64, backing: Option<Arc<MemFile>>) -> Toy {
        Toy {
            file: Arc::new(MemFile::new(UNIT)),
            backing,
            size,
            table: Mutex::new(vec![Entry::Unallocated; size.div_ceil(UNIT) as usize]),
            next_host: Mutex::new(UNIT),
            allocations: AtomicUsize::new(0),
        }
    }
}

impl Format for Toy {
    fn size(&self) -> u64 {
        self.size
    }
    fn allocation_unit(&self) -> u64 {
        UNIT
    }
    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone() as Arc<dyn BlockNode>)
    }
    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        self.backing.clone().map(|b| b as Arc<dyn BlockNode>)
    }
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let in_unit = offset % UNIT;
        let len = len.min(UNIT - in_unit);
        Ok(match self.table.lock().unwrap()[(offset / UNIT) as usize] {
            Entry::Unallocated => Mapping::Unallocated { len },
            Entry::Zero => Mapping::Zero {
                len,
                allocated: true,
            },
            Entry::Data(h) => Mapping::Data {
                child: ChildRef::FILE,
                host_offset: h + in_unit,
                len,
                writable: true,
            },
            Entry::Fill(_) => Mapping::Special { len },
        })
    }
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.table.lock().unwrap()[(offset / UNIT) as usize] {
            Entry::Fill(v) => buf.fill(v),
            _ => unreachable!("read_special on a plain unit"),
        }
        Ok(())
    }
    fn allocate(&self, offset: u64, len: u64) -> Result<Allocation> {
        let mut next = self.next_host.lock().unwrap();
        let host_offset = *next;
        *next += len;
        self.allocations.fetch_add(1, Ordering::SeqCst);
        Ok(Allocation {
            guest_offset: offset,
            len,
            child: ChildRef::FILE,
            host_offset,
        })
    }
    fn commit(&self, a: &Allocation) -> Result<()> {
        let mut t = self.table.lock().unwrap();
        for i in 0..a.len / UNIT {
            t[(a.guest_offset / UNIT + i) as usize] = Entry::Data(a.host_offset + i * UNIT);
        }
        Ok(())
    }
    fn make_zero(&self, offset: u64, len: u64, _unmap: bool) -> Result<bool> {
        let mut t = self.table.lock().unwrap();
        for i in offset / UNIT..(offset + len).div_ceil(UNIT) {
            t[i as usize] = Entry::Zero;
        }
        Ok(true)
    }
    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        let mut t = self.table.lock().unwrap();
        for i in offset / UNIT..(offset + len).div_ceil(UNIT) {
            t[i as usize] = Entry::Unallocated;
        }
        Ok(true)
    }
    fn flush_metadata(&self) -> Result<()> {
        let t = self.table.lock().unwrap();
        let bytes: Vec<u8> = t
            .iter()
            .map(|e| match e {
                Entry::Unallocated => 0,
                Entry::Zero => 1,
                Entry::Data(_) => 2,
                Entry::Fill(_) => 3,
            })
            .collect();
        self.file.write_at(0, &bytes)
    }
    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "toy".into(),
            virtual_size: self.size,
            cluster_size: Some(UNIT),
            ..NodeInfo::default()
        })
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn node(size: u64) -> FormatNode<Toy> {
    FormatNode::new(Toy::new(size, None), false, false)
}

#[test]
fn contiguous_units_read_as_one_child_request() {
    let n = node(64 * UNIT);
    let data = pattern(32 * UNIT as usize, 1);
    n.write_at(0, &data).unwrap();
    let file = n.format().file.clone();
    file.clear_log();
    // Three odd-sized buffers over 32 contiguous units: one child read.
    let mut a = vec![0u8; 1000];
    let mut b = vec![0u8; 70_000];
    let mut c = vec![0u8; 32 * UNIT as usize - 71_000];
    n.read_vectored(
        0,
        &mut [
            IoSliceMut::new(&mut a),
            IoSliceMut::new(&mut b),
            IoSliceMut::new(&mut c),
        ],
        ReqFlags::NONE,
    )
    .unwrap();
    let st = file.stats();
    assert_eq!(st.reads, 1, "{:?}", st.read_sizes);
    assert_eq!(st.read_sizes, vec![32 * UNIT]);
    assert_eq!(file.requests()[0].iovecs, 3);
    assert_eq!([a, b, c].concat(), data);
}

#[test]
fn one_allocating_write_is_one_child_write() {
    let n = node(64 * UNIT);
    n.write_at(0, &pattern(16 * UNIT as usize, 2)).unwrap();
    let st = n.format().file.stats();
    assert_eq!(st.write_sizes, vec![16 * UNIT]);
    assert_eq!(n.format().allocations.load(Ordering::SeqCst), 1);
}

#[test]
fn scattered_units_split_where_the_host_is_not_contiguous() {
    let n = node(8 * UNIT);
    n.write_at(0, &[1; UNIT as usize]).unwrap();
    n.write_at(2 * UNIT, &[3; UNIT as usize]).unwrap();
    n.write_at(UNIT, &[2; UNIT as usize]).unwrap();
    let file = n.format().file.clone();
    file.clear_log();
    let mut buf = vec![0u8; 4 * UNIT as usize];
    n.read_at(0, &mut buf).unwrap();
    // Units 0,1,2 live at host 1,3,2: three data reads; unit 3 is a hole.
    assert_eq!(file.stats().reads, 3);
    assert_eq!(&buf[..UNIT as usize], &[1; UNIT as usize][..]);
    assert_eq!(
        &buf[UNIT as usize..2 * UNIT as usize],
        &[2; UNIT as usize][..]
    );
    assert_eq!(
        &buf[2 * UNIT as usize..3 * UNIT as usize],
        &[3; UNIT as usize][..]
    );
    assert!(buf[3 * UNIT as usize..].iter().all(|&b| b == 0));
}

#[test]
fn copy_on_write_fills_from_backing_and_short_backing_reads_zeros() {
    let base = Arc::new(MemFile::with_data(&pattern(3 * UNIT as usize / 2, 7)));
    let n = FormatNode::new(Toy::new(4 * UNIT, Some(base.clone())), false, false);
    n.write_at(100, b"hello").unwrap();
    let mut expect = pattern(3 * UNIT as usize / 2, 7);
    expect.resize(4 * UNIT as usize, 0);
    expect[100..105].copy_from_slice(b"hello");
    let mut got = vec![0u8; 4 * UNIT as usize];
    n.read_at(0, &mut got).unwrap();
    assert_eq!(got, expect);
    // The copy-on-write went out as one unit-sized child write.
    assert_eq!(n.format().file.stats().write_sizes, vec![UNIT]);
    // The backing file is never written.
    assert_eq!(base.stats().writes, 0);
    // Block status: unit 0 allocated data, unit 1 from the backing file.
    let e = n.block_status(0, 4 * UNIT).unwrap();
    assert!(e
        .flags
        .contains(ExtentFlags::ALLOCATED.with(ExtentFlags::OFFSET_VALID)));
    assert_eq!((e.length, e.mapped_offset), (UNIT, UNIT));
    let e = n.block_status(UNIT, 3 * UNIT).unwrap();
    assert!(!e.flags.contains(ExtentFlags::ALLOCATED));
    assert!(e.flags.contains(ExtentFlags::DATA));
    let e = n.block_status(2 * UNIT, 2 * UNIT).unwrap();
    assert_eq!(e.flags, ExtentFlags::ZERO);
}

#[test]
fn copy_on_write_from_old_special_data() {
    let n = node(2 * UNIT);
    n.format().table.lock().unwrap()[0] = Entry::Fill(9);
    n.write_at(10, &[1, 2]).unwrap();
    let got = {
        let mut b = vec![0u8; UNIT as usize];
        n.read_at(0, &mut b).unwrap();
        b
    };
    assert_eq!(&got[8..14], &[9, 9, 1, 2, 9, 9]);
    assert!(matches!(
        n.format().table.lock().unwrap()[0],
        Entry::Data(_)
    ));
}

#[test]
fn zeroing_uses_metadata_for_whole_units_and_writes_the_edges() {
    let n = node(4 * UNIT);
    n.write_at(0, &[5; 4 * UNIT as usize]).unwrap();
    let file = n.format().file.clone();
    file.clear_log();
    n.write_zeroes(UNIT - 10, 2 * UNIT + 20, ZeroFlags::NONE)
        .unwrap();
    // Units 1 and 2 are zeroed in metadata; the two 10-byte edges are written.
    assert_eq!(file.stats().write_sizes, vec![10, 10]);
    let mut b = vec![0u8; 4 * UNIT as usize];
    n.read_at(0, &mut b).unwrap();
    let zero = (UNIT - 10) as usize..(3 * UNIT + 10) as usize;
    assert!(b[zero.clone()].iter().all(|&x| x == 0));
    assert!(b[..zero.start]
        .iter()
        .chain(&b[zero.end..])
        .all(|&x| x == 5));
    let e = n.write_zeroes(1, 10, ZeroFlags::NO_FALLBACK).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

#[test]
fn discard_drops_whole_units_only() {
    let base = Arc::new(MemFile::with_data(&[4; 2 * UNIT as usize]));
    let n = FormatNode::new(Toy::new(2 * UNIT, Some(base)), false, false);
    n.write_at(0, &[6; 2 * UNIT as usize]).unwrap();
    n.discard(10, 2 * UNIT - 10).unwrap();
    let mut b = vec![0u8; 2 * UNIT as usize];
    n.read_at(0, &mut b).unwrap();
    assert!(b[..UNIT as usize].iter().all(|&x| x == 6));
    assert!(b[UNIT as usize..].iter().all(|&x| x == 4));
}

#[test]
fn gates_bounds_and_fua() {
    let ro = FormatNode::new(Toy::new(UNIT, None), true, false);
    assert_eq!(ro.write_at(0, b"x").unwrap_err().kind, ErrorKind::ReadOnly);
    assert_eq!(
        ro.write_zeroes(0, 1, ZeroFlags::NONE).unwrap_err().kind,
        ErrorKind::ReadOnly
    );
    let n = FormatNode::new(Toy::new(UNIT, None), false, true);
    assert_eq!(
        n.write_at(0, b"x").unwrap_err().kind,
        ErrorKind::PermissionDenied
    );
    let mut b = [0u8; 2];
    n.read_at(0, &mut b).unwrap();
    n.migration().unwrap().activate().unwrap();
    n.write_vectored(0, &[IoSlice::new(b"x")], ReqFlags::FUA)
        .unwrap();
    let file = n.format().file.clone();
    let reqs = file.requests();
    assert_eq!(reqs.last().unwrap().op, ChildOp::Flush);
    // The metadata went out before the flush.
    assert_eq!(file.peek(0, 1), vec![2]);
    assert_eq!(
        n.read_at(UNIT - 1, &mut b).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(
        n.write_at(UNIT, b"x").unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    n.migration().unwrap().inactivate().unwrap();
    assert!(n.write_at(0, b"x").is_err());
}

#[test]
fn child_errors_propagate() {
    let n = node(2 * UNIT);
    n.write_at(0, &[1; 2 * UNIT as usize]).unwrap();
    n.format().file.inject_error(InjectedError {
        offset: 2 * UNIT,
        op: Some(ChildOp::Read),
        kind: ErrorKind::Io,
    });
    let mut b = vec![0u8; 2 * UNIT as usize];
    assert_eq!(n.read_at(0, &mut b).unwrap_err().kind, ErrorKind::Io);
    n.read_at(0, &mut b[..UNIT as usize]).unwrap();
}

#[test]
fn concurrent_writes_to_one_unallocated_unit_allocate_once() {
    for round in 0..20u8 {
        let n = Arc::new(node(2 * UNIT));
        let half = UNIT as usize / 2;
        let t: Vec<_> = (0..2u8)
            .map(|i| {
                let n = n.clone();
                std::thread::spawn(move || {
                    n.write_at(i as u64 * half as u64, &vec![round + i + 1; half])
                        .unwrap()
                })
            })
            .collect();
        for h in t {
            h.join().unwrap();
        }
        assert_eq!(n.format().allocations.load(Ordering::SeqCst), 1);
        let mut b = vec![0u8; UNIT as usize];
        n.read_at(0, &mut b).unwrap();
        assert!(b[..half].iter().all(|&x| x == round + 1));
        assert!(b[half..].iter().all(|&x| x == round + 2));
    }
}

#[test]
fn range_lock_serialises_overlaps_only() {
    let l = RangeLock::new();
    let a = l.lock(0, 10);
    let b = l.lock(10, 20);
    assert_eq!(l.held(), 2);
    drop(a);
    let _c = l.lock(5, 10);
    drop(b);
    assert_eq!(l.held(), 1);
}

#[test]
fn child_role_of_data_is_reported() {
    let n = node(UNIT);
    n.write_at(0, b"x").unwrap();
    assert_eq!(
        n.block_status(0, UNIT).unwrap().mapped_child,
        ChildRole::File
    );
}
