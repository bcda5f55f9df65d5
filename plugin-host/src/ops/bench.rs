//! Bench (qemu-img bench): COUNT read or write requests of BUFSIZE bytes,
//! DEPTH in flight, stepping through the image, timed. The scheduler is
//! qemu-img bench's `bench_cb` state machine (request offsets, queue depth,
//! flush interval with or without draining) served by worker threads that
//! share one `Image`.
//!
//! qemu-img issues requests from completion callbacks; here the completing
//! worker runs the same logic under a lock and queues "tickets" (request
//! offsets) that idle workers pick up, so the sequence of offsets, the
//! number of requests in flight and the flush points are qemu-img's.
//!
//! The image is 0 in [`OpError::At`]; a flush with the queue drained fails
//! as [`Stage::DrainFlush`], one while requests run as [`Stage::Flush`].

use super::{CancelToken, OpError, Progress, ProgressFn, Stage};
use crate::Image;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most worker threads started, whatever the queue depth.
const MAX_WORKERS: u64 = 1024;

/// How many progress reports a run makes at most (besides the last).
const REPORTS: u64 = 1024;

/// What to run, as qemu-img bench's `BenchData` (the image length is the
/// image's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchRequest {
    /// Bytes per request.
    pub bufsize: u64,
    /// Offset increment between requests (0: `bufsize`).
    pub step: u64,
    /// Requests in flight at most (queue depth).
    pub depth: u64,
    /// Requests in total.
    pub count: u64,
    /// Offset of the first request.
    pub offset: u64,
    /// Write instead of read.
    pub write: bool,
    /// The byte written (writes) or the buffer's initial content (reads).
    pub pattern: u8,
    /// Flush after this many requests (0: never).
    pub flush_interval: u64,
    /// Wait for the requests in flight before each flush.
    pub drain_on_flush: bool,
}

impl Default for BenchRequest {
    /// qemu-img bench's defaults: 75000 reads of 4 KiB, 64 in flight.
    fn default() -> Self {
        BenchRequest {
            bufsize: 4096,
            step: 0,
            depth: 64,
            count: 75000,
            offset: 0,
            write: false,
            pattern: 0,
            flush_interval: 0,
            drain_on_flush: true,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchResult {
    /// From the first request issued to the last completed.
    pub elapsed: Duration,
}

/// The parameters of one run: the request and the image length.
struct Params {
    image_size: u64,
    bufsize: u64,
    step: u64,
    depth: u64,
    count: u64,
    offset: u64,
    write: bool,
    pattern: u8,
    flush_interval: u64,
    drain_on_flush: bool,
}

/// The shared scheduler state (`bench_cb`'s counters).
struct State {
    /// Requests not yet completed.
    n: u64,
    /// Requests issued and not completed.
    in_flight: u64,
    /// The offset of the next request.
    next_offset: u64,
    /// Issued requests no worker has picked up yet.
    tickets: VecDeque<u64>,
    /// The first failure; every worker stops.
    error: Option<OpError>,
}

/// What a worker must do after a completion.
enum Flush {
    No,
    /// Flush with the queue drained, then issue more requests.
    Drained,
    /// Flush while other requests run.
    Undrained,
}

struct Bench<'a> {
    img: &'a Image,
    p: Params,
    st: Mutex<State>,
    cv: Condvar,
    progress: ProgressFn<'a>,
    /// Completions between progress reports.
    report_every: u64,
    cancel: &'a CancelToken,
}

impl Bench<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues requests while the queue depth allows (the loop at the end of
    /// `bench_cb`).
    fn refill(&self, st: &mut State) {
        while st.n > st.in_flight && st.in_flight < self.p.depth {
            st.in_flight += 1;
            st.tickets.push_back(st.next_offset);
            // QEMU 10.0's wrap rule (modulo the image size; later QEMU wraps
            // modulo `image_size - bufsize` so wrapped requests stay in range).
            st.next_offset = if self.p.image_size == 0 {
                0
            } else {
                // u128: offset + step cannot overflow.
                ((st.next_offset as u128 + self.p.step as u128) % self.p.image_size as u128) as u64
            };
        }
    }

    /// A request completed (the first half of `bench_cb`).
    fn completed(&self, st: &mut State) -> Flush {
        let remaining = st.n - st.in_flight;
        st.n -= 1;
        st.in_flight -= 1;
        let mut flush = Flush::No;
        let fi = self.p.flush_interval;
        if fi > 0 && remaining.is_multiple_of(fi) {
            if st.in_flight == 0 || !self.p.drain_on_flush {
                if self.p.drain_on_flush {
                    return Flush::Drained;
                }
                flush = Flush::Undrained;
            }
            if self.p.drain_on_flush {
                return Flush::No;
            }
        }
        self.refill(st);
        flush
    }

    fn fail(&self, st: &mut State, e: OpError) {
        if st.error.is_none() {
            st.error = Some(e);
        }
        self.cv.notify_all();
    }

    /// Reports progress every `report_every` completions (under the state
    /// lock, so reports never go backwards).
    fn report(&self, st: &State) {
        let done = self.p.count - st.n;
        if done.is_multiple_of(self.report_every) || st.n == 0 {
            (self.progress)(Progress {
                done: done * self.p.bufsize,
                total: self.p.count * self.p.bufsize,
                stage: if self.p.write {
                    Stage::Write
                } else {
                    Stage::Read
                },
            });
        }
    }

    /// One worker: takes tickets until every request completed.
    fn worker(&self) {
        let mut buf = vec![self.p.pattern; self.p.bufsize as usize];
        loop {
            let offset = {
                let mut st = self.lock();
                loop {
                    if st.error.is_some() {
                        return;
                    }
                    if self.cancel.is_cancelled() {
                        self.fail(&mut st, OpError::Cancelled);
                        return;
                    }
                    if let Some(o) = st.tickets.pop_front() {
                        break o;
                    }
                    if st.n == 0 {
                        return;
                    }
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let r = if self.p.write {
                self.img.write(offset, &buf)
            } else {
                self.img.read(offset, &mut buf)
            };
            let mut st = self.lock();
            if let Err(e) = r {
                log::debug!("request at {offset} failed: {e}");
                let stage = if self.p.write {
                    Stage::Write
                } else {
                    Stage::Read
                };
                self.fail(&mut st, OpError::at(stage, 0, offset, e));
                return;
            }
            let flush = self.completed(&mut st);
            self.report(&st);
            self.cv.notify_all();
            drop(st);
            match flush {
                Flush::No => {}
                Flush::Drained => {
                    let r = self.img.flush();
                    let mut st = self.lock();
                    if let Err(e) = r {
                        self.fail(&mut st, OpError::at(Stage::DrainFlush, 0, 0, e));
                        return;
                    }
                    self.refill(&mut st);
                    self.cv.notify_all();
                }
                Flush::Undrained => {
                    if let Err(e) = self.img.flush() {
                        let mut st = self.lock();
                        self.fail(&mut st, OpError::at(Stage::Flush, 0, 0, e));
                        return;
                    }
                }
            }
        }
    }
}

/// Runs the benchmark on `img` (opened read-write for a write run).
/// Progress counts the bytes of the completed requests. Cancelled, the
/// workers take no new request; the ones in flight finish.
pub fn bench(
    img: &Image,
    req: &BenchRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<BenchResult, OpError> {
    let p = Params {
        image_size: img.length()?,
        bufsize: req.bufsize,
        step: if req.step == 0 { req.bufsize } else { req.step },
        depth: req.depth,
        count: req.count,
        offset: req.offset,
        write: req.write,
        pattern: req.pattern,
        flush_interval: req.flush_interval,
        drain_on_flush: req.drain_on_flush,
    };
    let workers = p.depth.min(p.count).clamp(1, MAX_WORKERS);
    let bench = Bench {
        img,
        st: Mutex::new(State {
            n: p.count,
            in_flight: 0,
            next_offset: p.offset,
            tickets: VecDeque::new(),
            error: None,
        }),
        cv: Condvar::new(),
        progress,
        report_every: (p.count / REPORTS).max(1),
        cancel,
        p,
    };
    let mut elapsed = Duration::ZERO;
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| bench.worker());
        }
        // The workers wait for tickets; start the clock and issue the first
        // requests, then wait for the workers to finish.
        let t0 = Instant::now();
        {
            let mut st = bench.lock();
            bench.refill(&mut st);
            bench.cv.notify_all();
        }
        let mut st = bench.lock();
        while st.n > 0 && st.error.is_none() {
            st = bench.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        // Pending flushes finish before the workers exit.
        elapsed = t0.elapsed();
    });
    let mut st = bench.lock();
    match st.error.take() {
        Some(e) => Err(e),
        None => Ok(BenchResult { elapsed }),
    }
}
