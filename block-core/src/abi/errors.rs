//! Error conversion across the ABI, both directions: a [`BlockError`] (or a
//! panic) into a [`BcErrSink`] report and a negative errno on the
//! exporting side, and a return code plus sink report back into a
//! [`BlockError`] on the importing side.

use super::{BcErrSink, BcError, BcStr};
use crate::error::{BlockError, ErrorKind, Result};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Sends `e` to the error sink and returns its negative errno.
///
/// # Safety
/// `err` must be NULL or a valid sink.
pub unsafe fn report_error(err: *const BcErrSink, e: &BlockError) -> i32 {
    if !err.is_null() {
        let msg = match &e.source {
            Some(src) => format!("{}: {src}", e.message),
            None => e.message.clone(),
        };
        let be = BcError {
            errno: e.errno(),
            has_offset: e.offset.is_some() as u32,
            offset: e.offset.unwrap_or(0),
            op: BcStr::from_str(e.op.as_str()),
            file: BcStr::from_opt(e.file.as_deref()),
            message: BcStr::from_str(&msg),
        };
        ((*err).set)((*err).ctx, &be);
    }
    let n = e.errno();
    if n > 0 {
        -n
    } else {
        -libc::EIO
    }
}

/// The text of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs `f`, turning an error or a panic into a sink report and -errno.
///
/// # Safety
/// `err` must be NULL or a valid sink.
pub unsafe fn guard(err: *const BcErrSink, op: &str, f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => report_error(err, &e),
        Err(p) => {
            let e = BlockError::new(
                ErrorKind::Io,
                op,
                format!("driver panicked: {}", panic_message(&*p)),
            );
            log::error!("{e}");
            report_error(err, &e)
        }
    }
}

unsafe extern "C" fn err_set(ctx: *mut c_void, e: *const BcError) {
    if ctx.is_null() || e.is_null() {
        return;
    }
    let e = &*e;
    let slot = &mut *(ctx as *mut Option<BlockError>);
    let mut be = BlockError::new(
        ErrorKind::from_errno(e.errno),
        e.op.to_string_lossy(),
        e.message.to_string_lossy(),
    );
    if e.has_offset != 0 {
        be.offset = Some(e.offset);
    }
    be.file = e.file.to_opt_string();
    *slot = Some(be);
}

/// Calls `f` with a fresh error sink and turns its return code into a result.
pub(crate) fn call(op: &str, f: impl FnOnce(*const BcErrSink) -> i32) -> Result<()> {
    let mut slot: Option<BlockError> = None;
    let sink = BcErrSink {
        ctx: &mut slot as *mut Option<BlockError> as *mut c_void,
        set: err_set,
    };
    let rc = f(&sink);
    if rc == 0 {
        return Ok(());
    }
    Err(slot.unwrap_or_else(|| {
        BlockError::new(
            ErrorKind::from_errno(-rc),
            op,
            format!("failed with errno {}", -rc),
        )
    }))
}
