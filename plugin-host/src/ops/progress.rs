//! Progress reports of the operations.

use super::Stage;
use std::sync::Mutex;

/// How far an operation has got: `done` of `total` bytes in `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes finished (never decreases within one operation).
    pub done: u64,
    /// Bytes the operation walks in all.
    pub total: u64,
    /// What the operation is doing.
    pub stage: Stage,
}

/// The progress callback an operation takes. It may be called from several
/// worker threads (one call at a time) and should return quickly.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// A progress callback that ignores every report.
pub fn no_progress(_: Progress) {}

/// Serialises reports from several threads so that `done` never decreases.
pub(crate) struct Reporter<'a> {
    callback: ProgressFn<'a>,
    total: u64,
    /// The stage reported and the last `done`.
    last: Mutex<(Stage, Option<u64>)>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(callback: ProgressFn<'a>, total: u64, stage: Stage) -> Reporter<'a> {
        Reporter {
            callback,
            total,
            last: Mutex::new((stage, None)),
        }
    }

    /// Reports `done` bytes unless a larger (or equal) value was reported.
    pub(crate) fn report(&self, done: u64) {
        let done = done.min(self.total);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.1.is_some_and(|l| l >= done) {
            return;
        }
        last.1 = Some(done);
        (self.callback)(Progress {
            done,
            total: self.total,
            stage: last.0,
        });
    }

    /// Moves on to `stage`, reported at once (with the `done` reached).
    pub(crate) fn enter(&self, stage: Stage) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.0 = stage;
        (self.callback)(Progress {
            done: last.1.unwrap_or(0),
            total: self.total,
            stage,
        });
    }
}
