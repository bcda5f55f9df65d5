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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Copy-on-write granule of allocations (UNIT unless a test shrinks it).
    granule: u64,
    /// Every commit: (guest offset, written offset, written length).
    commits: Mutex<Vec<(u64, u64, u64)>>,
    /// Every abort.
    aborts: Mutex<Vec<Allocation>>,
    /// Every `will_change` range.
    changes: Mutex<Vec<(u64, u64)>>,
    /// The format-level write gate is shut.
    refuse_writes: AtomicBool,
    /// Host bytes data writes must not touch (a toy "metadata overlap").
    protected: Mutex<Option<(u64, u64)>>,
    /// Data mappings may be file holes (block status RECURSE).
    sparse: AtomicBool,
    /// The in-flight lock requests hold for reading.
    in_flight: std::sync::RwLock<()>,
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
            granule: UNIT,
            commits: Mutex::new(Vec::new()),
            aborts: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
            refuse_writes: AtomicBool::new(false),
            protected: Mutex::new(None),
            sparse: AtomicBool::new(false),
            in_flight: std::sync::RwLock::new(()),
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
            Entry::Unallocated => Mapping::Unallocated { len, host: None },
            Entry::Zero => Mapping::Zero {
                len,
                allocated: true,
                host: None,
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
            granule: self.granule,
            reused: false,
        })
    }
    fn commit(&self, a: &Allocation, written: u64, len: u64) -> Result<()> {
        self.commits
            .lock()
            .unwrap()
            .push((a.guest_offset, written, len));
        let mut t = self.table.lock().unwrap();
        for i in 0..a.len / UNIT {
            t[(a.guest_offset / UNIT + i) as usize] = Entry::Data(a.host_offset + i * UNIT);
        }
        Ok(())
    }
    fn abort(&self, a: &Allocation) {
        self.aborts.lock().unwrap().push(*a);
    }
    fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<bool> {
        // "Compresses" only units of one repeated byte.
        if data.iter().any(|&b| b != data[0]) {
            return Ok(false);
        }
        self.table.lock().unwrap()[(offset / UNIT) as usize] = Entry::Fill(data[0]);
        Ok(true)
    }
    fn check_write(&self, op: &str) -> Result<()> {
        if self.refuse_writes.load(Ordering::SeqCst) {
            return Err(crate::BlockError::corrupt(op, "toy is corrupt"));
        }
        Ok(())
    }
    fn will_change(&self, offset: u64, len: u64) -> Result<()> {
        self.changes.lock().unwrap().push((offset, len));
        Ok(())
    }
    fn check_data_write(&self, _child: ChildRef, host: u64, len: u64) -> Result<()> {
        match *self.protected.lock().unwrap() {
            Some((s, e)) if host < e && s < host + len => {
                Err(crate::BlockError::corrupt("write", "overlaps metadata"))
            }
            _ => Ok(()),
        }
    }
    fn sparse_data(&self) -> bool {
        self.sparse.load(Ordering::SeqCst)
    }
    fn in_flight(&self) -> Option<&std::sync::RwLock<()>> {
        Some(&self.in_flight)
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
fn a_grown_area_reads_zeros_over_stale_data_and_a_longer_backing_file() {
    let base = Arc::new(MemFile::with_data(&pattern(4 * UNIT as usize, 5)));
    let n = FormatNode::new(Toy::new(4 * UNIT, Some(base)), false, false);
    // Stale data past the old end (UNIT + 100) in its unit.
    n.write_at(UNIT, &[9; UNIT as usize]).unwrap();
    zero_grown_area(n.format(), UNIT + 100, 3 * UNIT).unwrap();
    let mut got = vec![0u8; 4 * UNIT as usize];
    n.read_at(0, &mut got).unwrap();
    let mut expect = pattern(4 * UNIT as usize, 5);
    expect[UNIT as usize..UNIT as usize + 100].fill(9);
    expect[UNIT as usize + 100..3 * UNIT as usize].fill(0);
    assert_eq!(got, expect, "the backing file shows past the new end only");
    // Aligned, no backing file: nothing to write.
    let n = node(2 * UNIT);
    zero_grown_area(n.format(), UNIT, 2 * UNIT).unwrap();
    assert_eq!(n.format().file.stats().writes, 0);
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
    // Unit 1 is the backing file's business (the caller walks the chain),
    // unit 2 lies past the backing file's end: zeros.
    let e = n.block_status(UNIT, 3 * UNIT).unwrap();
    assert_eq!((e.flags, e.length), (ExtentFlags(0), UNIT));
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
    // A piece of a data unit cannot be zeroed in metadata.
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
fn create_opens_and_sizes_the_new_image() {
    use crate::testutil::TestHost;
    let host = Arc::new(TestHost::new());
    let mut flags = None;
    let open = |req: &crate::driver::OpenRequest, _| {
        flags = Some(req.flags);
        Ok(Toy::new(UNIT, None))
    };
    let size = |t: &Toy| t.file.write_at(0, b"s");
    create::open_and_size("a.img", host.clone(), open, size).unwrap();
    assert_eq!(flags, Some(crate::types::OpenFlags::NO_BACKING));
    let refuse = |_: &Toy| Err(crate::error::BlockError::invalid("resize", "no"));
    let e = create::open_and_size("a.img", host, |_, _| Ok(Toy::new(UNIT, None)), refuse);
    assert_eq!(e.unwrap_err().file.as_deref(), Some("a.img"));
}

#[test]
fn node_for_request_takes_the_open_flags() {
    use crate::driver::OpenRequest;
    use crate::types::OpenFlags;
    let req = OpenRequest::new("a.img", OpenFlags::READ_ONLY);
    let ro = FormatNode::for_request(Toy::new(UNIT, None), &req);
    assert_eq!(ro.write_at(0, b"x").unwrap_err().kind, ErrorKind::ReadOnly);
    let req = OpenRequest::new("a.img", OpenFlags::INACTIVE);
    let n = FormatNode::for_request(Toy::new(UNIT, None), &req);
    assert!(n.is_inactive());
    n.migration().unwrap().activate().unwrap();
    n.write_at(0, b"x").unwrap();
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
    assert_eq!(n.write_at(0, b"x").unwrap_err().kind, ErrorKind::ReadOnly);
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

fn toy_with(size: u64, backing: Option<Arc<MemFile>>, granule: u64) -> FormatNode<Toy> {
    let mut t = Toy::new(size, backing);
    t.granule = granule;
    FormatNode::new(t, false, false)
}

#[test]
fn granule_smaller_than_the_unit_fills_and_commits_only_touched_granules() {
    let base = Arc::new(MemFile::with_data(&pattern(2 * UNIT as usize, 3)));
    let g = UNIT / 4;
    let n = toy_with(2 * UNIT, Some(base), g);
    // 10 bytes at 1000..1010 (granule 0) and 20 at g+5 (granule 1): one
    // child write of two granules, filled from the backing file.
    n.write_at(1000, &[7; 10]).unwrap();
    assert_eq!(n.format().file.stats().write_sizes, vec![g]);
    assert_eq!(*n.format().commits.lock().unwrap(), vec![(0, 0, g)]);
    let mut b = vec![0u8; g as usize];
    n.format().file.read_at(UNIT, &mut b).unwrap();
    let mut want = pattern(2 * UNIT as usize, 3)[..g as usize].to_vec();
    want[1000..1010].fill(7);
    assert_eq!(b, want);
    // Crossing a granule boundary: both granules, one write.
    n.format().file.clear_log();
    n.write_at(UNIT + g - 5, &[8; 10]).unwrap();
    assert_eq!(n.format().file.stats().write_sizes, vec![2 * g]);
    assert_eq!(n.format().commits.lock().unwrap()[1], (UNIT, UNIT, 2 * g));
}

#[test]
fn a_failed_allocating_write_is_aborted_not_committed() {
    let n = node(2 * UNIT);
    n.format().file.inject_error(InjectedError {
        offset: UNIT,
        op: Some(ChildOp::Write),
        kind: ErrorKind::Io,
    });
    assert_eq!(n.write_at(0, b"abc").unwrap_err().kind, ErrorKind::Io);
    let aborts = n.format().aborts.lock().unwrap().clone();
    assert_eq!(aborts.len(), 1);
    assert_eq!((aborts[0].guest_offset, aborts[0].reused), (0, false));
    assert!(n.format().commits.lock().unwrap().is_empty());
    assert_eq!(n.format().table.lock().unwrap()[0], Entry::Unallocated);
}

#[test]
fn compressed_writes_go_to_the_format_per_unit_or_fall_back() {
    let n = node(3 * UNIT - 100);
    let mut data = vec![5u8; UNIT as usize];
    data.extend(pattern(UNIT as usize, 1));
    data.extend(vec![6u8; UNIT as usize - 100]);
    n.write_vectored(0, &[IoSlice::new(&data)], ReqFlags::COMPRESSED)
        .unwrap();
    let t = n.format().table.lock().unwrap().clone();
    assert_eq!(t[0], Entry::Fill(5));
    assert!(matches!(t[1], Entry::Data(_)), "{t:?}");
    // The short last unit (ending at the end of the disk) is whole.
    assert_eq!(t[2], Entry::Fill(6));
    let mut b = vec![0u8; data.len()];
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, data);
    let e = n
        .write_vectored(1, &[IoSlice::new(&[1; 10])], ReqFlags::COMPRESSED)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
}

#[test]
fn the_format_write_gate_refuses_every_change_but_not_reads() {
    let n = node(UNIT);
    n.format().refuse_writes.store(true, Ordering::SeqCst);
    assert_eq!(n.write_at(0, b"x").unwrap_err().kind, ErrorKind::Corrupt);
    assert_eq!(
        n.write_zeroes(0, UNIT, ZeroFlags::NONE).unwrap_err().kind,
        ErrorKind::Corrupt
    );
    assert_eq!(n.discard(0, UNIT).unwrap_err().kind, ErrorKind::Corrupt);
    let mut b = [0u8; 4];
    n.read_at(0, &mut b).unwrap();
    assert!(n.format().changes.lock().unwrap().is_empty());
}

#[test]
fn every_guest_change_is_announced_once_with_its_range() {
    let n = node(4 * UNIT);
    n.write_at(0, &[1; 2 * UNIT as usize]).unwrap();
    // Zeroing with unaligned edges: the fallback writes are not announced.
    n.write_zeroes(10, UNIT, ZeroFlags::NONE).unwrap();
    n.discard(UNIT, 2 * UNIT).unwrap();
    assert_eq!(
        *n.format().changes.lock().unwrap(),
        vec![(0, 2 * UNIT), (10, UNIT), (UNIT, 2 * UNIT)]
    );
}

#[test]
fn data_writes_are_checked_by_the_format_before_they_go_out() {
    let n = node(2 * UNIT);
    n.write_at(0, &[1; UNIT as usize]).unwrap();
    // Unit 0 lives at host UNIT: protect it; in-place and allocating
    // writes onto it fail, elsewhere pass.
    *n.format().protected.lock().unwrap() = Some((UNIT, UNIT + 1));
    assert_eq!(n.write_at(0, b"x").unwrap_err().kind, ErrorKind::Corrupt);
    n.write_at(UNIT, b"y").unwrap();
    assert_eq!(n.format().file.peek(UNIT, 1), vec![1]);
}

#[test]
fn a_partial_zero_piece_over_zeros_is_zeroed_in_metadata() {
    // Without a backing file an unallocated unit reads as zeros: zeroing
    // ten bytes of it zeroes the unit in metadata, no data is written.
    let n = node(2 * UNIT);
    n.write_zeroes(1, 10, ZeroFlags::NO_FALLBACK).unwrap();
    assert_eq!(n.format().table.lock().unwrap()[0], Entry::Zero);
    assert_eq!(n.format().file.stats().writes, 0);
    // Over backing data the rest of the unit is not zero: zero buffers.
    let base = Arc::new(MemFile::with_data(&[9; 2 * UNIT as usize]));
    let n = FormatNode::new(Toy::new(2 * UNIT, Some(base)), false, false);
    n.write_zeroes(1, 10, ZeroFlags::NONE).unwrap();
    assert!(matches!(
        n.format().table.lock().unwrap()[0],
        Entry::Data(_)
    ));
    let mut b = [0u8; 12];
    n.read_at(0, &mut b).unwrap();
    assert_eq!(b, [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
}

/// A toy variant whose unallocated and zero units keep host space, to
/// check what block status reports of [`HostRef`]s.
struct Reserved(Toy);

impl Format for Reserved {
    fn size(&self) -> u64 {
        self.0.size
    }
    fn allocation_unit(&self) -> u64 {
        UNIT
    }
    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        self.0.child(child)
    }
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let len = len.min(UNIT - offset % UNIT);
        let host = Some(HostRef {
            child: ChildRef::FILE,
            offset: UNIT + offset,
        });
        Ok(if offset < 2 * UNIT {
            Mapping::Zero {
                len,
                allocated: true,
                host,
            }
        } else {
            Mapping::Unallocated { len, host }
        })
    }
    fn sparse_data(&self) -> bool {
        true
    }
    fn info(&self) -> Result<NodeInfo> {
        self.0.info()
    }
}

#[test]
fn block_status_reports_reserved_space_merges_runs_and_recurses_on_sparse_data() {
    let n = FormatNode::new(Reserved(Toy::new(4 * UNIT, None)), false, false);
    let e = n.block_status(0, 4 * UNIT).unwrap();
    assert_eq!(
        e.flags,
        ExtentFlags::ZERO
            .with(ExtentFlags::ALLOCATED)
            .with(ExtentFlags::OFFSET_VALID)
    );
    assert_eq!((e.length, e.mapped_offset), (2 * UNIT, UNIT));
    let e = n.block_status(2 * UNIT, 2 * UNIT).unwrap();
    assert_eq!(e.flags, ExtentFlags::ZERO.with(ExtentFlags::OFFSET_VALID));
    assert_eq!((e.length, e.mapped_offset), (2 * UNIT, 3 * UNIT));
    // Data of a sparse format asks the host to look at the file.
    let t = node(2 * UNIT);
    t.write_at(0, &[1; 2 * UNIT as usize]).unwrap();
    assert!(!t
        .block_status(0, UNIT)
        .unwrap()
        .flags
        .contains(ExtentFlags::RECURSE));
    t.format().sparse.store(true, Ordering::SeqCst);
    let e = t.block_status(0, 2 * UNIT).unwrap();
    assert!(e.flags.contains(ExtentFlags::RECURSE));
    assert_eq!(e.length, 2 * UNIT, "contiguous data units merge");
}

#[test]
fn requests_wait_while_the_format_holds_the_in_flight_lock() {
    let n = Arc::new(node(2 * UNIT));
    n.write_at(0, &[3; UNIT as usize]).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let barrier = n.format().in_flight.write().unwrap();
    let t = {
        let (n, done) = (n.clone(), done.clone());
        std::thread::spawn(move || {
            let mut b = [0u8; 8];
            n.read_at(0, &mut b).unwrap();
            n.write_at(0, &[4; 8]).unwrap();
            done.store(true, Ordering::SeqCst);
            b
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !done.load(Ordering::SeqCst),
        "a request ran past the barrier"
    );
    drop(barrier);
    assert_eq!(t.join().unwrap(), [3; 8]);
    assert!(done.load(Ordering::SeqCst));
}
