//! Compare (qemu-img compare): whether two images read the same, walking
//! both by block status so that ranges reading as zeros in both are not
//! read. The images are numbered 0 and 1 in [`OpError::At`].

use super::progress::Reporter;
use super::{CancelToken, OpError, ProgressFn, Stage};
use crate::Image;
use block_core::{Extent, ExtentFlags};

/// The largest chunk read at once (qemu-img's IO_BUF_SIZE).
const IO_BUF_SIZE: u64 = 2 << 20;

/// How to compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompareRequest {
    /// Strict (qemu-img's `-s`): the sizes must be equal and the block
    /// status (allocated, zero, data) must match too, not only the content.
    pub strict: bool,
}

/// The verdict of a compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOutcome {
    /// Both read the same (up to the shorter length; the rest of the
    /// longer one reads as zeros).
    Identical,
    /// Strict: the images have different sizes.
    SizeMismatch,
    /// Strict: the block status differs at this offset.
    StatusMismatch(u64),
    /// The content differs in the 512-byte sector at this offset.
    ContentMismatch(u64),
}

/// What a compare found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareResult {
    /// The verdict.
    pub outcome: CompareOutcome,
    /// The length of the first image.
    pub len1: u64,
    /// The length of the second image.
    pub len2: u64,
}

impl CompareResult {
    /// True when the images read the same.
    pub fn identical(&self) -> bool {
        self.outcome == CompareOutcome::Identical
    }
}

/// The first 512-byte sector (as a byte offset from the buffer start) where
/// the buffers differ.
fn first_diff_sector(a: &[u8], b: &[u8]) -> Option<u64> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .map(|p| (p as u64 / 512) * 512)
}

fn read(img: &Image, index: usize, off: u64, buf: &mut [u8]) -> Result<(), OpError> {
    img.read(off, buf)
        .map_err(|e| OpError::at(Stage::Read, index, off, e))
}

fn status(img: &Image, index: usize, off: u64, n: u64) -> Result<Extent, OpError> {
    img.block_status_above(off, n)
        .map(|(e, _)| e)
        .map_err(|e| OpError::at(Stage::BlockStatus, index, off, e))
}

/// Compares `img1` with `img2`. Progress counts the bytes of the longer
/// image walked; when the sizes differ, the walk past the shorter image
/// is reported as [`Stage::CompareTail`] (entered with one report before
/// its first chunk).
pub fn compare(
    img1: &Image,
    img2: &Image,
    req: &CompareRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<CompareResult, OpError> {
    let len1 = img1.length()?;
    let len2 = img2.length()?;
    let verdict = |outcome| CompareResult {
        outcome,
        len1,
        len2,
    };
    let total = len1.min(len2);
    let reporter = Reporter::new(progress, len1.max(len2), Stage::Compare);
    reporter.report(0);
    if len1 != len2 && req.strict {
        return Ok(verdict(CompareOutcome::SizeMismatch));
    }
    let bits = ExtentFlags::ALLOCATED
        .with(ExtentFlags::ZERO)
        .with(ExtentFlags::DATA);
    let mut buf1 = Vec::new();
    let mut buf2 = Vec::new();
    let mut offset = 0u64;
    while offset < total {
        cancel.check()?;
        let e1 = status(img1, 0, offset, len1 - offset)?;
        let e2 = status(img2, 1, offset, len2 - offset)?;
        let s1 = ExtentFlags(e1.flags.0 & bits.0);
        let s2 = ExtentFlags(e2.flags.0 & bits.0);
        let mut chunk = e1.length.min(e2.length).min(total - offset).max(1);
        if req.strict && s1 != s2 {
            return Ok(verdict(CompareOutcome::StatusMismatch(offset)));
        }
        let z1 = s1.contains(ExtentFlags::ZERO);
        let z2 = s2.contains(ExtentFlags::ZERO);
        if !(z1 && z2) {
            chunk = chunk.min(IO_BUF_SIZE);
            buf1.resize(chunk as usize, 0);
            buf2.resize(chunk as usize, 0);
            read(img1, 0, offset, &mut buf1)?;
            read(img2, 1, offset, &mut buf2)?;
            if let Some(d) = first_diff_sector(&buf1, &buf2) {
                return Ok(verdict(CompareOutcome::ContentMismatch(offset + d)));
            }
        }
        offset += chunk;
        reporter.report(offset);
    }
    if len1 != len2 {
        // The rest of the longer image must read as zeros.
        reporter.enter(Stage::CompareTail);
        let (over, index, over_len) = if len1 > len2 {
            (img1, 0, len1)
        } else {
            (img2, 1, len2)
        };
        let mut off = total;
        while off < over_len {
            cancel.check()?;
            let e = status(over, index, off, over_len - off)?;
            let mut chunk = e.length.clamp(1, over_len - off);
            if e.flags.contains(ExtentFlags::ALLOCATED) {
                chunk = chunk.min(IO_BUF_SIZE);
            }
            if !e.flags.contains(ExtentFlags::ZERO) {
                buf1.resize(chunk as usize, 0);
                read(over, index, off, &mut buf1)?;
                if let Some(p) = buf1.iter().position(|&b| b != 0) {
                    let d = (p as u64 / 512) * 512;
                    return Ok(verdict(CompareOutcome::ContentMismatch(off + d)));
                }
            }
            off += chunk;
            reporter.report(off);
        }
    }
    reporter.report(len1.max(len2));
    Ok(verdict(CompareOutcome::Identical))
}
