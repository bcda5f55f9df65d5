//! [`RangeLock`]: serialises requests that touch overlapping byte ranges
//! (the engine's in-flight allocation table).

use std::sync::{Condvar, Mutex};

/// A set of locked, non-overlapping half-open byte ranges.
#[derive(Debug, Default)]
pub struct RangeLock {
    held: Mutex<Vec<(u64, u64)>>,
    released: Condvar,
}

/// A held range; dropping it releases the range and wakes waiters.
#[derive(Debug)]
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    range: (u64, u64),
}

impl RangeLock {
    /// An empty table.
    pub fn new() -> RangeLock {
        RangeLock::default()
    }

    /// Waits until no held range overlaps `[start, end)` and takes it.
    pub fn lock(&self, start: u64, end: u64) -> RangeGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while held.iter().any(|&(s, e)| s < end && start < e) {
            held = self.released.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.push((start, end));
        RangeGuard {
            lock: self,
            range: (start, end),
        }
    }

    /// Number of held ranges (tests and diagnostics).
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.lock.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.iter().position(|&r| r == self.range) {
            held.swap_remove(i);
        }
        self.lock.released.notify_all();
    }
}
