//! The request scheduler of `blk bench`: qemu-img bench's `bench_cb` state
//! machine (request offsets, queue depth, flush interval with or without
//! draining) served by worker threads that share one `Image`.
//!
//! qemu-img issues requests from completion callbacks; here the completing
//! worker runs the same logic under a lock and queues "tickets" (request
//! offsets) that idle workers pick up, so the sequence of offsets, the
//! number of requests in flight and the flush points are qemu-img's.

use crate::common::errno_of;
use crate::human::strerror;
use plugin_host::Image;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most worker threads started, whatever the queue depth.
const MAX_WORKERS: u64 = 1024;

/// What to run, as qemu-img bench's `BenchData`.
#[derive(Debug, Clone)]
pub struct BenchParams {
    /// The image length in bytes.
    pub image_size: u64,
    /// Bytes per request.
    pub bufsize: u64,
    /// Offset increment between requests (never 0).
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
    error: Option<String>,
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
    p: &'a BenchParams,
    st: Mutex<State>,
    cv: Condvar,
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

    fn fail(&self, st: &mut State, msg: String) {
        if st.error.is_none() {
            st.error = Some(msg);
        }
        self.cv.notify_all();
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
                let msg = format!("Failed request: {}", strerror(errno_of(&e)));
                self.fail(&mut st, msg);
                return;
            }
            let flush = self.completed(&mut st);
            self.cv.notify_all();
            drop(st);
            match flush {
                Flush::No => {}
                Flush::Drained => {
                    let r = self.img.flush();
                    let mut st = self.lock();
                    if let Err(e) = r {
                        let msg = format!("Failed request: {}", strerror(errno_of(&e)));
                        self.fail(&mut st, msg);
                        return;
                    }
                    self.refill(&mut st);
                    self.cv.notify_all();
                }
                Flush::Undrained => {
                    if let Err(e) = self.img.flush() {
                        let msg = format!("Failed flush request: {}", strerror(errno_of(&e)));
                        let mut st = self.lock();
                        self.fail(&mut st, msg);
                        return;
                    }
                }
            }
        }
    }
}

/// Runs the benchmark; returns the elapsed time or the first failure's
/// message ("Failed request: ...").
pub fn run(img: &Image, p: &BenchParams) -> Result<Duration, String> {
    let bench = Bench {
        img,
        p,
        st: Mutex::new(State {
            n: p.count,
            in_flight: 0,
            next_offset: p.offset,
            tickets: VecDeque::new(),
            error: None,
        }),
        cv: Condvar::new(),
    };
    let workers = p.depth.min(p.count).clamp(1, MAX_WORKERS);
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
    let st = bench.lock();
    match &st.error {
        Some(m) => Err(m.clone()),
        None => Ok(elapsed),
    }
}
