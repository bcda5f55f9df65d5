//! Rebase (qemu-img rebase, safe mode): before an image's backing file is
//! replaced, every range the image does not allocate itself and that reads
//! differently through the old backing file than through the new one is
//! copied into the image, so that it reads the same afterwards. Changing
//! the recorded backing file is then [`Image::change_backing_file`].
//!
//! The images are numbered in [`OpError::At`]: the image 0, the old
//! backing file 1, the new one 2.

use super::{CancelToken, OpError, ProgressFn, Stage};
use crate::Image;
use block_core::{ExtentFlags, ReqFlags};
use std::io::IoSlice;

/// The largest block status range (qemu-img's rebase step, its
/// IO_BUF_SIZE).
pub const STEP: u64 = 2 << 20;
/// The unit compared (and copied) without compression.
const PIECE: u64 = 64 << 10;

/// How to rebase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebaseRequest {
    /// Write the copied data as compressed clusters, a whole cluster of the
    /// image at a time (the format must support compressed writes).
    pub compress: bool,
}

/// What a rebase copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebaseResult {
    /// The bytes written into the image.
    pub bytes_copied: u64,
}

/// Reads `buf.len()` bytes at `off` of `img`; what lies past its end (or
/// the whole buffer without an image) reads as zeros.
fn read_or_zero(
    img: Option<&Image>,
    index: usize,
    off: u64,
    buf: &mut [u8],
) -> Result<(), OpError> {
    buf.fill(0);
    if let Some(img) = img {
        let len = img.length()?;
        if off < len {
            let n = ((len - off) as usize).min(buf.len());
            img.read(off, &mut buf[..n])
                .map_err(|e| OpError::at(Stage::Read, index, off, e))?;
        }
    }
    Ok(())
}

/// Copies into `top` (opened read-write without its backing chain) what
/// it needs to read the same over `new` as over `old` (`None`: no backing
/// file). Progress is reported after each block status step: with
/// [`Stage::Compare`] for a step the image does not allocate (compared and
/// perhaps copied), [`Stage::BlockStatus`] for one it allocates (skipped).
/// Cancelled between steps, what was copied stays (the image reads the
/// same over the old backing file either way) and the image is flushed.
pub fn rebase(
    top: &Image,
    old: Option<&Image>,
    new: Option<&Image>,
    req: &RebaseRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<RebaseResult, OpError> {
    let len = top.length()?;
    let cluster = super::chunk_size(top);
    let report = |done: u64, stage: Stage| {
        progress(super::Progress {
            done,
            total: len,
            stage,
        })
    };
    let flush = || top.flush().map_err(|e| OpError::at(Stage::Flush, 0, 0, e));
    let mut copied = 0u64;
    let mut off = 0u64;
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    while off < len {
        if cancel.is_cancelled() {
            flush()?;
            return Err(OpError::Cancelled);
        }
        let e = top
            .block_status(off, (len - off).min(STEP))
            .map_err(|e| OpError::at(Stage::BlockStatus, 0, off, e))?;
        let n = e.length.clamp(1, len - off);
        let unallocated = !e.flags.contains(ExtentFlags::ALLOCATED);
        if unallocated {
            let mut pos = off;
            while pos < off + n {
                let m = if req.compress {
                    (cluster - pos % cluster).min(off + n - pos)
                } else {
                    (off + n - pos).min(PIECE)
                } as usize;
                b1.resize(m, 0);
                b2.resize(m, 0);
                read_or_zero(old, 1, pos, &mut b1)?;
                read_or_zero(new, 2, pos, &mut b2)?;
                if b1 != b2 {
                    let flags = if req.compress {
                        ReqFlags::COMPRESSED
                    } else {
                        ReqFlags::NONE
                    };
                    top.write_vectored(pos, &[IoSlice::new(&b1)], flags)
                        .map_err(|e| OpError::at(Stage::Write, 0, pos, e))?;
                    copied += m as u64;
                }
                pos += m as u64;
            }
        }
        off += n;
        report(
            off,
            if unallocated {
                Stage::Compare
            } else {
                Stage::BlockStatus
            },
        );
    }
    flush()?;
    Ok(RebaseResult {
        bytes_copied: copied,
    })
}
