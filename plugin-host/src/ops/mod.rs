//! Image operations as a library: convert, compare, map, commit, rebase,
//! measure and bench (qemu-img's
//! operations of those names), each a typed request, a result, a progress
//! callback and a cancellation token, so that an NBD server, a backup tool
//! or a VMM runs them without the `blk` command line.
//!
//! The shape every operation shares:
//!
//! - a request struct with public fields and a [`Default`] (the images it
//!   works on are passed beside it, already open, so the caller decides how
//!   they are opened and locked);
//! - a [`ProgressFn`], called with a [`Progress`] (bytes done out of a
//!   total, and the [`Stage`]); `done` never decreases and reaches `total`
//!   when the operation succeeds;
//! - a [`CancelToken`]: once cancelled, the operation stops at its next
//!   chunk, leaves its target consistent (flushed; what was copied stays
//!   copied) and returns [`OpError::Cancelled`];
//! - errors as [`OpError`]: where the operation was ([`Stage`], image,
//!   offset) and the [`BlockError`] underneath.
//!
//! Operations never print, exit or read the environment; the `blk` command
//! turns their results and errors into qemu-img's text and exit statuses.

pub mod bench;
mod cancel;
pub mod commit;
pub mod compare;
pub mod convert;
mod error;
pub mod map;
pub mod measure;
mod progress;
mod rate;
pub mod rebase;
mod sparse;

pub use bench::{bench, BenchRequest, BenchResult};
pub use cancel::CancelToken;
pub use commit::{commit, CommitRequest, CommitResult};
pub use compare::{compare, CompareOutcome, CompareRequest, CompareResult};
pub use convert::{convert, ConvertRequest, ConvertResult, SalvageFn};
pub use error::{OpError, Stage};
pub use map::{map, map_each, MapEntry, MapRequest};
pub use measure::{measure, MeasureQuery};
pub use progress::{no_progress, Progress, ProgressFn};
pub use rate::RateLimit;
pub use rebase::{rebase, RebaseRequest, RebaseResult};

use block_core::BlockError;

/// The chunk size qemu-img copies and reports progress in for `img`: its
/// cluster size when it has one of at least 512 bytes, else 64 KiB.
pub fn chunk_size(img: &crate::Image) -> u64 {
    img.info()
        .ok()
        .and_then(|i| i.node.cluster_size)
        .filter(|c| *c >= 512)
        .unwrap_or(65536)
}
