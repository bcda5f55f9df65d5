//! Convert (qemu-img convert): copies the sources, one after the other, into
//! a target. Only allocated data is copied and holes stay sparse (block
//! status, plus zero detection of `min_sparse` runs); the backing chains are
//! flattened unless `top_only`; several workers copy 2 MiB chunks, their
//! writes in guest order unless `out_of_order`.
//!
//! Images are numbered for [`OpError::At`]: the sources `0..n`, the target
//! `n`. Offsets in errors are target offsets.

use super::progress::Reporter;
use super::sparse::{is_allocated_sectors_min, SECTOR};
use super::{BlockError, CancelToken, OpError, ProgressFn, RateLimit, Stage};
use crate::Image;
use block_core::{ExtentFlags, ReqFlags, ZeroFlags};
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// The unit of work of one worker (qemu-img's 2 MiB buffer).
pub const CHUNK: u64 = 2 << 20;

/// Told about each 512-byte sector that a salvaging convert could not read
/// (and wrote as zeroes): the source's index, the offset in that source and
/// the read error.
pub type SalvageFn<'a> = &'a (dyn Fn(usize, u64, &BlockError) + Sync);

/// What to copy and how. The images are given to [`convert`] beside it.
#[derive(Clone, Copy)]
pub struct ConvertRequest<'a> {
    /// The shortest run of zero bytes in copied data that is left sparse
    /// (a multiple of 512; qemu-img's `-S`, default 4096). 0 allocates the
    /// whole target, writing zeroes as data.
    pub min_sparse: u64,
    /// Write compressed clusters (the target's format must support it).
    pub compress: bool,
    /// Parallel workers (qemu-img's `-m`, default 8).
    pub workers: usize,
    /// Let writes go out in any order (qemu-img's `-W`); by default they go
    /// out in guest order, so that clusters are allocated in that order.
    pub out_of_order: bool,
    /// Copy only what the top image of each source allocates, leaving the
    /// rest to the target's own backing file (qemu-img's `-B`).
    pub top_only: bool,
    /// Whether the target reads as zeros already: `Some(true)` as
    /// `--target-is-zero`, `Some(false)` for an existing target of unknown
    /// content, `None` to ask the target's driver (a new image).
    pub target_is_zero: Option<bool>,
    /// Keep going past read errors of the sources: unreadable sectors are
    /// written as zeroes and reported here (qemu-img's `--salvage`).
    pub salvage: Option<SalvageFn<'a>>,
    /// The most bytes per second to copy (0: no limit).
    pub rate: u64,
}

impl Default for ConvertRequest<'_> {
    fn default() -> Self {
        ConvertRequest {
            min_sparse: 4096,
            compress: false,
            workers: 8,
            out_of_order: false,
            top_only: false,
            target_is_zero: None,
            salvage: None,
            rate: 0,
        }
    }
}

impl std::fmt::Debug for ConvertRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertRequest")
            .field("min_sparse", &self.min_sparse)
            .field("compress", &self.compress)
            .field("workers", &self.workers)
            .field("out_of_order", &self.out_of_order)
            .field("top_only", &self.top_only)
            .field("target_is_zero", &self.target_is_zero)
            .field("salvage", &self.salvage.is_some())
            .field("rate", &self.rate)
            .finish()
    }
}

/// What a finished convert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertResult {
    /// The guest bytes walked: the sum of the sources' lengths.
    pub bytes: u64,
}

/// The copy state shared by the workers.
struct Job<'a> {
    target: &'a Image,
    /// The target's index in [`OpError::At`].
    target_index: usize,
    has_zero_init: bool,
    top_only: bool,
    min_sparse: u64,
    compress: bool,
    cluster: u64,
    zero_flags: ZeroFlags,
    salvage: Option<SalvageFn<'a>>,
    failed: AtomicBool,
    error: Mutex<Option<OpError>>,
}

impl Job<'_> {
    fn stopped(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Records the first failure; every worker stops at its next chunk.
    fn fail(&self, e: OpError) {
        self.failed.store(true, Ordering::SeqCst);
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn write_error(&self, off: u64, e: BlockError) -> OpError {
        log::debug!("write failed: {e}");
        OpError::at(Stage::Write, self.target_index, off, e)
    }

    fn write_zeroes(&self, off: u64, n: u64) -> Result<(), OpError> {
        self.target
            .write_zeroes(off, n, self.zero_flags)
            .map_err(|e| self.write_error(off, e))
    }

    fn write(&self, off: u64, buf: &[u8], flags: ReqFlags) -> Result<(), OpError> {
        self.target
            .write_vectored(off, &[IoSlice::new(buf)], flags)
            .map_err(|e| self.write_error(off, e))
    }
}

/// Copies `sources` (concatenated, in order) into `target`, which must be
/// at least as long as they are together. On success the target is
/// flushed. Cancelled, the workers stop at their next chunk, the target is
/// flushed and [`OpError::Cancelled`] returned.
pub fn convert(
    sources: &[&Image],
    target: &Image,
    req: &ConvertRequest<'_>,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<ConvertResult, OpError> {
    let mut bases = Vec::with_capacity(sources.len());
    let mut total = 0u64;
    for s in sources {
        let len = s.length()?;
        bases.push((total, len));
        total += len;
    }
    if target.length()? < total {
        return Err(OpError::Invalid(
            "output file is smaller than input file".to_string(),
        ));
    }
    let has_zero_init = match req.target_is_zero {
        Some(z) => z,
        None if req.top_only || req.min_sparse == 0 => false,
        None => target.node().has_zero_init(),
    };
    let cluster = super::chunk_size(target);
    let job = Job {
        target,
        target_index: sources.len(),
        has_zero_init,
        top_only: req.top_only,
        min_sparse: req.min_sparse,
        compress: req.compress,
        cluster,
        zero_flags: if req.min_sparse > 0 {
            ZeroFlags::MAY_UNMAP
        } else {
            ZeroFlags::NONE
        },
        salvage: req.salvage,
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    // Work items: (source index, offset, length), never crossing sources.
    let chunk = if req.compress {
        CHUNK.div_ceil(cluster) * cluster
    } else {
        CHUNK
    };
    let mut items = Vec::new();
    for (i, &(_, len)) in bases.iter().enumerate() {
        let mut off = 0;
        while off < len {
            let n = chunk.min(len - off);
            items.push((i, off, n));
            off += n;
        }
    }
    let reporter = Reporter::new(progress, total, Stage::Copy);
    reporter.report(0);
    let rate = (req.rate > 0).then(|| RateLimit::new(req.rate));
    let done = AtomicU64::new(0);
    // The index of the next chunk to hand out.
    let next = Mutex::new(0usize);
    let turn = (Mutex::new(0usize), Condvar::new());
    let wake_all = || {
        // Under the lock, so that no waiter misses the failure.
        let _t = turn.0.lock().unwrap_or_else(|p| p.into_inner());
        turn.1.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..req.workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                // Chunks are handed out and booked against the rate limit
                // in one step, so they are paced in copy order.
                let (i, start_at) = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *n;
                    *n += 1;
                    let at = items
                        .get(i)
                        .and_then(|&(_, _, len)| rate.as_ref().and_then(|r| r.reserve(len)));
                    (i, at)
                };
                let Some(&(src, off, len)) = items.get(i) else {
                    break;
                };
                if job.stopped() {
                    break;
                }
                if let Err(e) = cancel.check() {
                    job.fail(e);
                    wake_all();
                    break;
                }
                RateLimit::wait_until(start_at);
                let mut ops = Vec::new();
                let mut r = copy_range(&job, src, sources[src], bases[src].0, off, len, &mut ops);
                if !req.out_of_order {
                    let mut t = turn.0.lock().unwrap_or_else(|p| p.into_inner());
                    while *t != i && !job.stopped() {
                        t = turn.1.wait(t).unwrap_or_else(|p| p.into_inner());
                    }
                    if r.is_ok() && !job.stopped() {
                        r = apply(&job, ops);
                    }
                    *t += 1;
                    turn.1.notify_all();
                } else if r.is_ok() {
                    r = apply(&job, ops);
                }
                if let Err(e) = r {
                    job.fail(e);
                    wake_all();
                    break;
                }
                reporter.report(done.fetch_add(len, Ordering::SeqCst) + len);
            });
        }
    });
    let flush = || {
        target
            .flush()
            .map_err(|e| OpError::at(Stage::Flush, sources.len(), 0, e))
    };
    match job.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(OpError::Cancelled) => {
            // What was copied stays copied, the metadata on disk.
            flush()?;
            Err(OpError::Cancelled)
        }
        Some(e) => Err(e),
        None => {
            flush()?;
            reporter.report(total);
            Ok(ConvertResult { bytes: total })
        }
    }
}

/// A write to the target gathered by [`copy_range`].
enum Op {
    /// Write zeroes at `(offset, length)`.
    Zero(u64, u64),
    /// Write data at an offset (through [`write_data`]).
    Data(u64, Vec<u8>),
}

/// Performs gathered writes.
fn apply(job: &Job<'_>, ops: Vec<Op>) -> Result<(), OpError> {
    for op in ops {
        match op {
            Op::Zero(toff, n) => job.write_zeroes(toff, n)?,
            Op::Data(toff, buf) => write_data(job, toff, &buf)?,
        }
    }
    Ok(())
}

/// Writes `buf` (source data at target offset `toff`), skipping or zeroing
/// runs of `min_sparse` zero bytes.
fn write_data(job: &Job<'_>, toff: u64, buf: &[u8]) -> Result<(), OpError> {
    if job.compress {
        // One cluster per request; zero clusters are skipped or zeroed.
        let mut pos = 0usize;
        while pos < buf.len() {
            let n =
                ((job.cluster - (toff + pos as u64) % job.cluster) as usize).min(buf.len() - pos);
            let piece = &buf[pos..pos + n];
            let off = toff + pos as u64;
            if piece.iter().all(|&b| b == 0) {
                if !job.has_zero_init {
                    job.write_zeroes(off, n as u64)?;
                }
            } else {
                job.write(off, piece, ReqFlags::COMPRESSED)?;
            }
            pos += n;
        }
        return Ok(());
    }
    if job.min_sparse == 0 {
        return job.write(toff, buf, ReqFlags::NONE);
    }
    // Split into data runs and zero runs as qemu-img's convert_co_write
    // does (is_allocated_sectors_min): leading zeroes are skipped, zero runs
    // inside data only from min_sparse bytes on, aligned to the sparse size.
    let min = (job.min_sparse / SECTOR) as usize;
    let alignment = 1u64 << (63 - (job.min_sparse / SECTOR).leading_zeros());
    let total = buf.len().div_ceil(SECTOR as usize);
    let mut pos = 0usize;
    while pos < total {
        let at = pos * SECTOR as usize;
        let (alloc, n) = is_allocated_sectors_min(
            &buf[at..],
            total - pos,
            min,
            toff / SECTOR + pos as u64,
            alignment,
        );
        let end = ((pos + n) * SECTOR as usize).min(buf.len());
        let off = toff + at as u64;
        if alloc {
            job.write(off, &buf[at..end], ReqFlags::NONE)?;
        } else if !job.has_zero_init {
            job.write_zeroes(off, (end - at) as u64)?;
        }
        pos += n;
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset` of source `index`; with salvage,
/// sectors that cannot be read are reported and zero-filled instead of
/// failing (after the whole range failed, it is read again sector by
/// sector, as qemu-img does).
fn read_source(
    job: &Job<'_>,
    index: usize,
    src: &Image,
    offset: u64,
    toff: u64,
    buf: &mut [u8],
) -> Result<(), OpError> {
    let fail = |e: BlockError| {
        log::debug!("read failed: {e}");
        OpError::at(Stage::Read, index, toff, e)
    };
    match (src.read(offset, buf), job.salvage) {
        (Ok(()), _) => Ok(()),
        (Err(e), None) => Err(fail(e)),
        (Err(e), Some(report)) => {
            log::debug!("read failed, salvaging sector by sector: {e}");
            for (i, sector) in buf.chunks_mut(SECTOR as usize).enumerate() {
                let at = offset + i as u64 * SECTOR;
                if let Err(e) = src.read(at, sector) {
                    report(index, at, &e);
                    sector.fill(0);
                }
            }
            Ok(())
        }
    }
}

fn status_error(index: usize, toff: u64, e: BlockError) -> OpError {
    log::debug!("block status failed: {e}");
    OpError::at(Stage::BlockStatus, index, toff, e)
}

/// Copies `[off, off+len)` of source `src` to target offset `base + off` in
/// whole target clusters (holes read as zeroes), as compressed writes need.
fn copy_range_compressed(
    job: &Job<'_>,
    index: usize,
    src: &Image,
    base: u64,
    off: u64,
    len: u64,
    ops: &mut Vec<Op>,
) -> Result<(), OpError> {
    let end = off + len;
    let mut cur = off;
    let mut buf = Vec::new();
    while cur < end {
        if job.stopped() {
            return Ok(());
        }
        let toff = base + cur;
        let n = (job.cluster - toff % job.cluster).min(end - cur);
        let (e, _) = src
            .block_status_above(cur, n)
            .map_err(|e| status_error(index, toff, e))?;
        if e.flags.contains(ExtentFlags::ZERO) && e.length >= n {
            if !job.has_zero_init {
                ops.push(Op::Zero(toff, n));
            }
        } else {
            buf.resize(n as usize, 0);
            read_source(job, index, src, cur, toff, &mut buf)?;
            ops.push(Op::Data(toff, std::mem::take(&mut buf)));
        }
        cur += n;
    }
    Ok(())
}

/// Reads `[off, off+len)` of source `src` and gathers the writes that copy it
/// to target offset `base + off` into `ops`.
fn copy_range(
    job: &Job<'_>,
    index: usize,
    src: &Image,
    base: u64,
    off: u64,
    len: u64,
    ops: &mut Vec<Op>,
) -> Result<(), OpError> {
    if job.compress && !job.top_only {
        return copy_range_compressed(job, index, src, base, off, len, ops);
    }
    let end = off + len;
    let mut cur = off;
    let mut buf = Vec::new();
    while cur < end {
        if job.stopped() {
            return Ok(());
        }
        let want = end - cur;
        let toff = base + cur;
        let (zero, data, n) = if job.top_only {
            let e = src
                .block_status(cur, want)
                .map_err(|e| status_error(index, toff, e))?;
            let alloc = e.flags.contains(ExtentFlags::ALLOCATED);
            // Unallocated in a source without a backing file reads as
            // zeroes, which must hide the target's backing file.
            let no_backing = src.graph().backing().is_none();
            let z = e.flags.contains(ExtentFlags::ZERO);
            (
                if no_backing { z || !alloc } else { alloc && z },
                alloc && !z,
                e.length,
            )
        } else {
            let (e, _) = src
                .block_status_above(cur, want)
                .map_err(|e| status_error(index, toff, e))?;
            let z = e.flags.contains(ExtentFlags::ZERO);
            (z, !z, e.length)
        };
        let n = n.clamp(1, want);
        if zero && job.min_sparse == 0 {
            // min_sparse 0: zeroes are written as data, fully allocating the
            // target (qemu-img's convert_co_do_copy).
            ops.push(Op::Data(toff, vec![0; n as usize]));
        } else if zero {
            if !job.has_zero_init {
                ops.push(Op::Zero(toff, n));
            }
        } else if data {
            buf.resize(n as usize, 0);
            read_source(job, index, src, cur, toff, &mut buf)?;
            ops.push(Op::Data(toff, std::mem::take(&mut buf)));
        }
        // Neither: unallocated above a target backing file; leave it.
        cur += n;
    }
    Ok(())
}
