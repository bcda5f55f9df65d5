//! [`MemFile`]: a sparse in-memory protocol node that records what it is asked.

use crate::error::{BlockError, ErrorKind, Result};
use crate::info::NodeInfo;
use crate::node::{iov_len, iov_len_mut, BlockNode};
use crate::types::{Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::sync::Mutex;

/// Storage granularity of a [`MemFile`]: chunks never written are holes.
const CHUNK: u64 = 4096;

/// The kind of a request a [`MemFile`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildOp {
    /// `read_vectored`.
    Read,
    /// `write_vectored`.
    Write,
    /// `flush`.
    Flush,
    /// `discard`.
    Discard,
    /// `write_zeroes`.
    WriteZeroes,
    /// `truncate`.
    Truncate,
}

/// One request a [`MemFile`] received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// What was asked.
    pub op: ChildOp,
    /// The byte offset (the new size for truncate, 0 for flush).
    pub offset: u64,
    /// The byte length (0 for flush and truncate).
    pub len: u64,
    /// The number of buffers of a vectored request (0 otherwise).
    pub iovecs: usize,
    /// The request flags of a read or write.
    pub flags: ReqFlags,
}

/// Counts over the requests a [`MemFile`] received since the last
/// [`MemFile::clear_log`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLog {
    /// Number of reads.
    pub reads: usize,
    /// Number of writes.
    pub writes: usize,
    /// Number of flushes.
    pub flushes: usize,
    /// Number of discards and write_zeroes.
    pub zeroes_or_discards: usize,
    /// Bytes read in total.
    pub bytes_read: u64,
    /// Bytes written in total.
    pub bytes_written: u64,
    /// Length of every read, in order.
    pub read_sizes: Vec<u64>,
    /// Length of every write, in order.
    pub write_sizes: Vec<u64>,
}

/// An error a [`MemFile`] returns for requests touching a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedError {
    /// A request whose range contains this byte fails.
    pub offset: u64,
    /// Only requests of this kind fail (`None`: reads and writes).
    pub op: Option<ChildOp>,
    /// The error kind returned.
    pub kind: ErrorKind,
}

#[derive(Debug, Default)]
struct State {
    len: u64,
    chunks: BTreeMap<u64, Box<[u8]>>,
    log: Vec<RequestRecord>,
    errors: Vec<InjectedError>,
    read_only: bool,
}

/// A sparse in-memory file node for unit tests.
///
/// It behaves like a regular file: writes past the end grow it, reads past
/// the end fail with `OutOfRange`, never-written (or discarded) ranges read
/// as zeros and are reported as holes by block status. Every request is
/// recorded ([`MemFile::requests`], [`MemFile::stats`]) so tests can assert
/// how a format above it coalesces or splits its child I/O, and errors can be
/// injected at an offset ([`MemFile::inject_error`]).
#[derive(Debug, Default)]
pub struct MemFile {
    state: Mutex<State>,
}

impl MemFile {
    /// An empty (all-hole) file of `len` bytes.
    pub fn new(len: u64) -> MemFile {
        MemFile {
            state: Mutex::new(State {
                len,
                ..State::default()
            }),
        }
    }

    /// A file holding `data`.
    pub fn with_data(data: &[u8]) -> MemFile {
        let f = MemFile::new(data.len() as u64);
        f.poke(0, data);
        f
    }

    /// Makes every write, discard, zero and truncate fail with `ReadOnly`.
    pub fn set_read_only(&self, read_only: bool) {
        self.lock().read_only = read_only;
    }

    /// Writes `data` at `offset` without recording a request (test setup).
    pub fn poke(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        s.store(offset, data);
    }

    /// Reads `len` bytes at `offset` without recording a request (test
    /// assertions); bytes past the end read as zeros.
    pub fn peek(&self, offset: u64, len: usize) -> Vec<u8> {
        let s = self.lock();
        let mut out = vec![0u8; len];
        s.load(offset, &mut out);
        out
    }

    /// The whole content (test assertions).
    pub fn contents(&self) -> Vec<u8> {
        let len = self.lock().len;
        self.peek(0, len as usize)
    }

    /// Every request received since the last [`MemFile::clear_log`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// Counts over [`MemFile::requests`].
    pub fn stats(&self) -> RequestLog {
        let s = self.lock();
        let mut log = RequestLog::default();
        for r in &s.log {
            match r.op {
                ChildOp::Read => {
                    log.reads += 1;
                    log.bytes_read += r.len;
                    log.read_sizes.push(r.len);
                }
                ChildOp::Write => {
                    log.writes += 1;
                    log.bytes_written += r.len;
                    log.write_sizes.push(r.len);
                }
                ChildOp::Flush => log.flushes += 1,
                ChildOp::Discard | ChildOp::WriteZeroes => log.zeroes_or_discards += 1,
                ChildOp::Truncate => {}
            }
        }
        log
    }

    /// Forgets the recorded requests.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Makes requests touching `error.offset` fail until
    /// [`MemFile::clear_errors`].
    pub fn inject_error(&self, error: InjectedError) {
        self.lock().errors.push(error);
    }

    /// Removes every injected error.
    pub fn clear_errors(&self) {
        self.lock().errors.clear();
    }

    /// Number of bytes held in memory (allocated chunks).
    pub fn allocated_bytes(&self) -> u64 {
        self.lock().chunks.len() as u64 * CHUNK
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request and applies the read-only and injected-error rules.
    fn begin(
        &self,
        s: &mut State,
        op: ChildOp,
        offset: u64,
        len: u64,
        iovecs: usize,
        flags: ReqFlags,
    ) -> Result<()> {
        s.log.push(RequestRecord {
            op,
            offset,
            len,
            iovecs,
            flags,
        });
        let name = op_name(op);
        let writes = !matches!(op, ChildOp::Read | ChildOp::Flush);
        if writes && s.read_only {
            return Err(BlockError::read_only(name, "in-memory file is read-only").at(offset));
        }
        let end = offset.saturating_add(len);
        for e in &s.errors {
            let kind_matches = match e.op {
                Some(o) => o == op,
                None => matches!(op, ChildOp::Read | ChildOp::Write),
            };
            let hits = if op == ChildOp::Flush {
                true
            } else {
                e.offset >= offset && e.offset < end
            };
            if kind_matches && hits {
                return Err(BlockError::new(e.kind, name, "injected error").at(e.offset));
            }
        }
        Ok(())
    }
}

fn op_name(op: ChildOp) -> &'static str {
    match op {
        ChildOp::Read => "read",
        ChildOp::Write => "write",
        ChildOp::Flush => "flush",
        ChildOp::Discard => "discard",
        ChildOp::WriteZeroes => "write_zeroes",
        ChildOp::Truncate => "truncate",
    }
}

impl State {
    fn store(&mut self, offset: u64, data: &[u8]) {
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let base = pos - pos % CHUNK;
            let within = (pos - base) as usize;
            let n = rest.len().min(CHUNK as usize - within);
            let chunk = self
                .chunks
                .entry(base)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            chunk[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.len = self.len.max(offset + data.len() as u64);
    }

    fn load(&self, offset: u64, out: &mut [u8]) {
        let mut pos = offset;
        let mut done = 0usize;
        while done < out.len() {
            let base = pos - pos % CHUNK;
            let within = (pos - base) as usize;
            let n = (out.len() - done).min(CHUNK as usize - within);
            match self.chunks.get(&base) {
                Some(c) => out[done..done + n].copy_from_slice(&c[within..within + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
            pos += n as u64;
        }
    }

    /// Zeroes `[offset, offset+len)`, dropping whole chunks.
    fn zero(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.len);
        let mut pos = offset;
        while pos < end {
            let base = pos - pos % CHUNK;
            let chunk_end = (base + CHUNK).min(end);
            if pos == base && chunk_end == base + CHUNK {
                self.chunks.remove(&base);
            } else if let Some(c) = self.chunks.get_mut(&base) {
                c[(pos - base) as usize..(chunk_end - base) as usize].fill(0);
            }
            pos = chunk_end;
        }
    }
}

impl BlockNode for MemFile {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        flags: ReqFlags,
    ) -> Result<()> {
        let len = iov_len_mut(bufs);
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::Read, offset, len, bufs.len(), flags)?;
        if offset.checked_add(len).is_none_or(|end| end > s.len) {
            return Err(BlockError::new(
                ErrorKind::OutOfRange,
                "read",
                format!("read of {len} bytes past the end ({} bytes)", s.len),
            )
            .at(offset));
        }
        let mut pos = offset;
        for b in bufs.iter_mut() {
            s.load(pos, b);
            pos += b.len() as u64;
        }
        Ok(())
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let len = iov_len(bufs);
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::Write, offset, len, bufs.len(), flags)?;
        let mut pos = offset;
        for b in bufs {
            s.store(pos, b);
            pos += b.len() as u64;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::Flush, 0, 0, 0, ReqFlags::NONE)
    }

    fn length(&self) -> Result<u64> {
        Ok(self.lock().len)
    }

    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "memfile".into(),
            virtual_size: self.lock().len,
            ..NodeInfo::default()
        })
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::Discard, offset, len, 0, ReqFlags::NONE)?;
        s.zero(offset, len);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, _flags: ZeroFlags) -> Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::WriteZeroes, offset, len, 0, ReqFlags::NONE)?;
        s.zero(offset, len);
        s.len = s.len.max(offset.saturating_add(len));
        Ok(())
    }

    fn truncate(&self, size: u64, _prealloc: Preallocation) -> Result<()> {
        let mut s = self.lock();
        self.begin(&mut s, ChildOp::Truncate, size, 0, 0, ReqFlags::NONE)?;
        if size < s.len {
            let old = s.len;
            s.zero(size, old - size);
        }
        s.len = size;
        Ok(())
    }

    fn allocated_size(&self) -> Result<u64> {
        Ok(self.allocated_bytes())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let s = self.lock();
        let len = len.min(s.len.saturating_sub(offset));
        if len == 0 {
            return Ok(Extent {
                length: 0,
                flags: ExtentFlags::ZERO,
                ..Extent::default()
            });
        }
        let allocated = |pos: u64| s.chunks.contains_key(&(pos - pos % CHUNK));
        let first = allocated(offset);
        let mut pos = offset - offset % CHUNK + CHUNK;
        while pos < offset + len && allocated(pos) == first {
            pos += CHUNK;
        }
        let length = pos.min(offset + len) - offset;
        let flags = if first {
            ExtentFlags::DATA.with(ExtentFlags::ALLOCATED)
        } else {
            ExtentFlags::ZERO.with(ExtentFlags::ALLOCATED)
        };
        Ok(Extent {
            length,
            flags,
            ..Extent::default()
        })
    }

    fn has_zero_init(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::BlockNodeExt;

    #[test]
    fn sparse_reads_and_writes() {
        let f = MemFile::new(3 * CHUNK);
        f.write_at(CHUNK - 2, b"abcd").unwrap();
        let mut buf = [0xffu8; 8];
        f.read_at(CHUNK - 4, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0abcd\0\0");
        assert_eq!(f.allocated_bytes(), 2 * CHUNK);
        let st = f.block_status(2 * CHUNK, CHUNK).unwrap();
        assert!(st.flags.contains(ExtentFlags::ZERO));
        assert_eq!(st.length, CHUNK);
        let st = f.block_status(0, 3 * CHUNK).unwrap();
        assert!(st.flags.contains(ExtentFlags::DATA));
        assert_eq!(st.length, 2 * CHUNK);
    }

    #[test]
    fn records_requests() {
        let f = MemFile::new(1 << 20);
        let mut a = [0u8; 100];
        let mut b = [0u8; 200];
        f.read_vectored(
            0,
            &mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)],
            ReqFlags::NONE,
        )
        .unwrap();
        f.write_at(5, &[1; 7]).unwrap();
        f.flush().unwrap();
        let st = f.stats();
        assert_eq!((st.reads, st.writes, st.flushes), (1, 1, 1));
        assert_eq!(st.read_sizes, vec![300]);
        assert_eq!(st.write_sizes, vec![7]);
        assert_eq!(f.requests()[0].iovecs, 2);
        f.clear_log();
        assert_eq!(f.stats(), RequestLog::default());
    }

    #[test]
    fn bounds_growth_and_truncate() {
        let f = MemFile::new(10);
        let mut buf = [0u8; 4];
        let e = f.read_at(8, &mut buf).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfRange);
        f.write_at(8, &[9; 4]).unwrap();
        assert_eq!(f.length().unwrap(), 12);
        f.truncate(9, Preallocation::Off).unwrap();
        f.truncate(12, Preallocation::Off).unwrap();
        assert_eq!(f.peek(8, 4), vec![9, 0, 0, 0]);
    }

    #[test]
    fn injected_errors_and_read_only() {
        let f = MemFile::with_data(&[7u8; 8192]);
        f.inject_error(InjectedError {
            offset: 5000,
            op: Some(ChildOp::Read),
            kind: ErrorKind::Io,
        });
        let mut buf = [0u8; 100];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(f.read_at(4990, &mut buf).unwrap_err().kind, ErrorKind::Io);
        f.write_at(4990, &buf).unwrap();
        f.clear_errors();
        f.read_at(4990, &mut buf).unwrap();
        f.set_read_only(true);
        assert_eq!(f.write_at(0, &buf).unwrap_err().kind, ErrorKind::ReadOnly);
        assert_eq!(f.peek(0, 1), vec![7]);
    }

    #[test]
    fn zeroes_and_discard_punch_holes() {
        let f = MemFile::with_data(&[1u8; 3 * CHUNK as usize]);
        f.discard(CHUNK, CHUNK).unwrap();
        f.write_zeroes(10, 10, ZeroFlags::NONE).unwrap();
        assert_eq!(f.allocated_bytes(), 2 * CHUNK);
        assert_eq!(f.peek(CHUNK, 4), vec![0; 4]);
        assert_eq!(f.peek(9, 12)[1..11], [0; 10]);
        assert_eq!(f.peek(2 * CHUNK, 1), vec![1]);
    }
}
