//! Cancellation of a running operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cloneable cancellation flag: every clone sees [`CancelToken::cancel`].
/// An operation checks it before each chunk; a cancelled operation leaves
/// its target consistent and returns [`super::OpError::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not (yet) cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every operation holding a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`CancelToken::cancel`] has been called on any clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancelled.
    pub(crate) fn check(&self) -> Result<(), super::OpError> {
        if self.is_cancelled() {
            Err(super::OpError::Cancelled)
        } else {
            Ok(())
        }
    }
}
