//! Commit (qemu-img commit): writes the data of the images above a base
//! into the base, then (optionally) empties the top so that it reads
//! through to the base. The top is image 0 and the base image 1 in
//! [`OpError::At`].

use super::progress::Reporter;
use super::{CancelToken, OpError, ProgressFn, RateLimit, Stage};
use crate::Image;
use block_core::{ErrorKind, ExtentFlags, Preallocation, ZeroFlags};

/// The largest data request of a commit.
const COPY_MAX: u64 = 2 << 20;

/// What to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRequest {
    /// The depth of the base in the top's backing chain (1, the default:
    /// the immediate backing file). What an image above it provides is
    /// written into the base. A top opened without its backing chain
    /// commits what the top itself allocates.
    pub base_depth: usize,
    /// Empty the top afterwards (qemu-img commit without `-d`); a format
    /// that cannot be emptied (raw) is left as it is.
    pub empty_top: bool,
    /// The most bytes per second to write (0: no limit), paced as a block
    /// job.
    pub rate: u64,
}

impl Default for CommitRequest {
    fn default() -> Self {
        CommitRequest {
            base_depth: 1,
            empty_top: false,
            rate: 0,
        }
    }
}

/// What a finished commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitResult {
    /// The bytes written into the base (data and zeroes).
    pub bytes_committed: u64,
    /// Whether the top was emptied.
    pub emptied: bool,
}

/// Commits `top` into `base` (open read-write, without its own backing
/// chain). The base grows to the top's length first. The base is flushed
/// before the top is emptied, so a crash leaves the data in one of them.
/// Cancelled between chunks, the base is flushed and the top left as it
/// was.
pub fn commit(
    top: &Image,
    base: &Image,
    req: &CommitRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<CommitResult, OpError> {
    let len = top.length()?;
    if base.length()? < len {
        base.truncate(len, Preallocation::Off)?;
    }
    let reporter = Reporter::new(progress, len, Stage::Copy);
    reporter.report(0);
    let rate = RateLimit::new(req.rate);
    // Opened without its chain, the top answers "unallocated" as zeros at
    // depth 0: only what it allocates is its own.
    let chain = top.graph().backing().is_some();
    let flush_base = || base.flush().map_err(|e| OpError::at(Stage::Flush, 1, 0, e));
    let mut committed = 0u64;
    let mut off = 0u64;
    let mut buf = Vec::new();
    while off < len {
        if cancel.is_cancelled() {
            flush_base()?;
            return Err(OpError::Cancelled);
        }
        let (e, depth) = top
            .block_status_above(off, (len - off).min(1 << 30))
            .map_err(|e| OpError::at(Stage::BlockStatus, 0, off, e))?;
        let n = e.length.clamp(1, len - off);
        let own = chain || e.flags.contains(ExtentFlags::ALLOCATED);
        if depth < req.base_depth && own {
            if e.flags.contains(ExtentFlags::ZERO) {
                base.write_zeroes(off, n, ZeroFlags::MAY_UNMAP)
                    .map_err(|e| OpError::at(Stage::Write, 1, off, e))?;
                rate.pay_after(n);
            } else {
                let mut pos = off;
                while pos < off + n {
                    let m = (off + n - pos).min(COPY_MAX);
                    buf.resize(m as usize, 0);
                    top.read(pos, &mut buf)
                        .map_err(|e| OpError::at(Stage::Read, 0, pos, e))?;
                    base.write(pos, &buf)
                        .map_err(|e| OpError::at(Stage::Write, 1, pos, e))?;
                    rate.pay_after(m);
                    pos += m;
                }
            }
            committed += n;
        }
        off += n;
        reporter.report(off);
    }
    flush_base()?;
    let mut emptied = false;
    if req.empty_top {
        match top.make_empty() {
            Ok(()) => emptied = true,
            Err(e) if e.kind == ErrorKind::Unsupported => {
                log::info!("{}: not emptied: {e}", top.filename());
            }
            Err(e) => return Err(OpError::from(e)),
        }
    }
    if !top.is_read_only() {
        top.flush()
            .map_err(|e| OpError::at(Stage::Flush, 0, 0, e))?;
    }
    reporter.report(len);
    Ok(CommitResult {
        bytes_committed: committed,
        emptied,
    })
}
