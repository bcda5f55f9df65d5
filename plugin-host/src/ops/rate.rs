//! A limit on the bytes per second an operation copies. Two pacings:
//! [`RateLimit::reserve`] paces as qemu-img's convert (a chunk may start
//! once the chunks before it have had their time at the given rate, the
//! first starts at once, so N bytes take about (N - last chunk) / RATE);
//! [`RateLimit::pay_after`] paces as a block job (after each chunk it waits
//! for that chunk's time, so N bytes take N / RATE).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A shared limiter for the copy workers.
pub struct RateLimit {
    /// Bytes per second; 0 is unlimited.
    rate: u64,
    /// When the copy started and how many bytes were dispatched since.
    state: Mutex<(Instant, u64)>,
}

impl RateLimit {
    /// A limiter of `rate` bytes per second (0: no limit).
    pub fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// The limit in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Books a chunk of `n` bytes, the next in copy order, and returns when
    /// it may start (`None` without a limit). Callers book chunks in their
    /// order (under the lock that hands them out), then wait with
    /// [`RateLimit::wait_until`].
    pub fn reserve(&self, n: u64) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let at = s.0 + Duration::from_secs_f64(s.1 as f64 / self.rate as f64);
        s.1 += n;
        Some(at)
    }

    /// Sleeps until `at` (a time from [`RateLimit::reserve`]).
    pub fn wait_until(at: Option<Instant>) {
        let now = Instant::now();
        if let Some(at) = at.filter(|at| *at > now) {
            std::thread::sleep(at - now);
        }
    }
}

impl RateLimit {
    /// Accounts for a chunk of `n` bytes just copied and waits for its time
    /// (block job pacing).
    pub fn pay_after(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let at = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.1 += n;
            s.0 + Duration::from_secs_f64(s.1 as f64 / self.rate as f64)
        };
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}
