//! String sinks: pushing a result into a caller-owned [`BcStrSink`]
//! (exporting side) and collecting what a callee pushed (importing side).

use super::errors::call;
use super::{BcErrSink, BcStr, BcStrSink};
use crate::error::Result;
use std::ffi::c_void;

/// Pushes `s` into a string sink.
///
/// # Safety
/// `out` must be NULL or a valid sink.
pub(crate) unsafe fn push_str(out: *const BcStrSink, s: &str) {
    if !out.is_null() {
        ((*out).push)((*out).ctx, BcStr::from_str(s));
    }
}

unsafe extern "C" fn str_push(ctx: *mut c_void, s: BcStr) {
    if !ctx.is_null() {
        (*(ctx as *mut Vec<u8>)).extend_from_slice(s.as_bytes());
    }
}

/// A sink appending to `buf`, valid while `buf` is borrowed.
pub(crate) fn sink_into(buf: &mut Vec<u8>) -> BcStrSink {
    BcStrSink {
        ctx: buf as *mut Vec<u8> as *mut c_void,
        push: str_push,
    }
}

/// Calls `f` with a fresh string sink and returns what it pushed.
pub(crate) fn collect(
    op: &str,
    f: impl FnOnce(*const BcStrSink, *const BcErrSink) -> i32,
) -> Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    let sink = sink_into(&mut buf);
    call(op, |err| f(&sink, err))?;
    Ok(buf)
}

/// Reads a string through a sink-only slot.
pub(crate) fn collect_plain(f: impl FnOnce(*const BcStrSink)) -> String {
    let mut buf: Vec<u8> = Vec::new();
    let sink = sink_into(&mut buf);
    f(&sink);
    String::from_utf8_lossy(&buf).into_owned()
}
