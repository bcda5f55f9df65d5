//! Error conversion across the ABI, both directions: a [`BlockError`] (or a
//! panic) into a [`BcErrSink`] report and a negative errno on the
//! exporting side, and a return code plus sink report back into a
//! [`BlockError`] on the importing side.

use super::host_api::host_api;
use super::{BcErrSink, BcError, BcStr};
use crate::error::{BlockError, ErrorKind, Result};
use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The log target of the error records that report a panic caught where
/// no error sink can carry it (a driver's `name` or `kind`, a node's
/// `close`, the plugin entry point). The host attaches the last such
/// record of a library to the error of a failed load.
pub const PANIC_LOG_TARGET: &str = "blk_plugin_panic";

/// Drops a caught panic payload without letting a panic in its `Drop`
/// escape: that second panic is caught too, and its payload is leaked
/// (never dropped), so a hostile payload cannot unwind across the ABI or
/// abort the process.
pub fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Reports a panic caught in `what` (e.g. "driver name()") that no error
/// sink can carry, and drops its payload safely. In a plugin the report
/// goes straight to the host's log callback at error level, whatever the
/// plugin's own log level, with target [`PANIC_LOG_TARGET`]; elsewhere to
/// `log::error!`. Returns the message ("WHAT panicked: TEXT").
pub fn report_panic(what: &str, payload: Box<dyn Any + Send>) -> String {
    let msg = format!("{what} panicked: {}", panic_message(&*payload));
    drop_payload(payload);
    match host_api().and_then(|api| api.log.map(|f| (api.ctx, f))) {
        Some((ctx, log)) => unsafe {
            log(
                ctx,
                log::Level::Error as usize as super::BcLogLevel,
                BcStr::from_str(PANIC_LOG_TARGET),
                BcStr::from_str(&msg),
                BcStr::from_str(file!()),
                line!(),
            )
        },
        None => log::error!(target: PANIC_LOG_TARGET, "{msg}"),
    }
    msg
}

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

/// Runs `f`; a panic is reported with [`report_panic`] as `what` (and its
/// payload dropped safely) and gives `fallback`.
pub(crate) fn catch_or<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            report_panic(what, p);
            fallback
        }
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
            drop_payload(p);
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
