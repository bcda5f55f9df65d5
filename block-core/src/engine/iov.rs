//! Helpers that carve byte ranges out of a request's buffers without
//! copying, so one guest request can be split across mappings.

use std::io::{IoSlice, IoSliceMut};

/// Calls `f` with the buffers covering bytes `[start, start+len)` of `bufs`
/// (as sub-slices of the caller's buffers, no copy).
pub fn with_sub_mut<R>(
    bufs: &mut [IoSliceMut<'_>],
    start: u64,
    len: u64,
    f: impl FnOnce(&mut [IoSliceMut<'_>]) -> R,
) -> R {
    // The whole request (one run): no copy of the iovec list, no allocation.
    if start == 0 && len as usize == bufs.iter().map(|b| b.len()).sum::<usize>() {
        return f(bufs);
    }
    let mut out: Vec<IoSliceMut<'_>> = Vec::new();
    let (mut skip, mut want) = (start as usize, len as usize);
    for b in bufs.iter_mut() {
        if want == 0 {
            break;
        }
        let bl = b.len();
        if skip >= bl {
            skip -= bl;
            continue;
        }
        let n = (bl - skip).min(want);
        out.push(IoSliceMut::new(&mut b[skip..skip + n]));
        want -= n;
        skip = 0;
    }
    f(&mut out)
}

/// The buffers covering bytes `[start, start+len)` of `bufs`.
pub fn sub<'a>(bufs: &'a [IoSlice<'_>], start: u64, len: u64) -> Vec<IoSlice<'a>> {
    let mut out = Vec::new();
    let (mut skip, mut want) = (start as usize, len as usize);
    for b in bufs {
        if want == 0 {
            break;
        }
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        let n = (b.len() - skip).min(want);
        out.push(IoSlice::new(&b[skip..skip + n]));
        want -= n;
        skip = 0;
    }
    out
}

/// Fills every buffer with zeros.
pub fn zero_mut(bufs: &mut [IoSliceMut<'_>]) {
    for b in bufs {
        b.fill(0);
    }
}

/// Copies `src` into the buffers, in order.
pub fn copy_into(bufs: &mut [IoSliceMut<'_>], src: &[u8]) {
    let mut done = 0;
    for b in bufs {
        let n = b.len().min(src.len() - done);
        b[..n].copy_from_slice(&src[done..done + n]);
        done += n;
    }
}
