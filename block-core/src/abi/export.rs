//! Rust → C: exposes a [`BlockDriver`], [`BlockNode`] or [`HostServices`]
//! through the C tables. Every entry point catches panics: a panic becomes an
//! EIO error for that call and never unwinds across the boundary.

use super::*;
use crate::control::require;
use crate::driver::{BlockDriver, OpenRequest, ProbeInput};
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::{ChildRequest, ChildRole, HostServices};
use crate::node::BlockNode;
use crate::options::OptionValues;
use crate::types::{CheckMode, Extent, ExtentFlags, OpenFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

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

/// Pushes `s` into a string sink.
///
/// # Safety
/// `out` must be NULL or a valid sink.
pub unsafe fn push_str(out: *const BcStrSink, s: &str) {
    if !out.is_null() {
        ((*out).push)((*out).ctx, BcStr::from_str(s));
    }
}

fn to_json<T: serde::Serialize>(op: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| BlockError::io(op, format!("cannot encode result: {e}")))
}

/// Decodes a JSON array of `[key, value]` pairs.
pub fn options_from_json(op: &str, text: &[u8]) -> Result<Vec<(String, String)>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(text)
        .map_err(|e| BlockError::invalid(op, format!("bad options document: {e}")))
}

/// Encodes `[key, value]` pairs as JSON.
pub fn options_to_json(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_string())
}

// ---------------------------------------------------------------- nodes

unsafe fn node<'a>(ctx: *mut c_void) -> &'a Arc<dyn BlockNode> {
    &*(ctx as *const Arc<dyn BlockNode>)
}

/// Exposes a node through the C table. The receiver calls `close` once.
pub fn export_node(n: Arc<dyn BlockNode>) -> BcNode {
    BcNode {
        ctx: Box::into_raw(Box::new(n)) as *mut c_void,
        vtbl: &NODE_VTBL,
    }
}

unsafe extern "C" fn n_close(ctx: *mut c_void) {
    if !ctx.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            drop(Box::from_raw(ctx as *mut Arc<dyn BlockNode>))
        }));
    }
}

unsafe fn iov_mut<'a>(iov: *const BcIoVec, niov: usize) -> Vec<IoSliceMut<'a>> {
    if niov == 0 || iov.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(iov, niov)
        .iter()
        .map(|v| {
            if v.len == 0 || v.ptr.is_null() {
                IoSliceMut::new(&mut [])
            } else {
                IoSliceMut::new(std::slice::from_raw_parts_mut(v.ptr, v.len))
            }
        })
        .collect()
}

unsafe fn iov_ref<'a>(iov: *const BcIoVec, niov: usize) -> Vec<IoSlice<'a>> {
    if niov == 0 || iov.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(iov, niov)
        .iter()
        .map(|v| {
            if v.len == 0 || v.ptr.is_null() {
                IoSlice::new(&[])
            } else {
                IoSlice::new(std::slice::from_raw_parts(v.ptr, v.len))
            }
        })
        .collect()
}

unsafe extern "C" fn n_read(
    ctx: *mut c_void,
    offset: u64,
    iov: *const BcIoVec,
    niov: usize,
    flags: u32,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "read", || {
        let mut bufs = iov_mut(iov, niov);
        node(ctx).read_vectored(offset, &mut bufs, ReqFlags(flags))
    })
}

unsafe extern "C" fn n_write(
    ctx: *mut c_void,
    offset: u64,
    iov: *const BcIoVec,
    niov: usize,
    flags: u32,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "write", || {
        let bufs = iov_ref(iov, niov);
        node(ctx).write_vectored(offset, &bufs, ReqFlags(flags))
    })
}

unsafe extern "C" fn n_flush(ctx: *mut c_void, err: *const BcErrSink) -> i32 {
    guard(err, "flush", || node(ctx).flush())
}

unsafe extern "C" fn n_length(ctx: *mut c_void, out: *mut u64, err: *const BcErrSink) -> i32 {
    guard(err, "length", || {
        *out = node(ctx).length()?;
        Ok(())
    })
}

unsafe extern "C" fn n_info_json(
    ctx: *mut c_void,
    out: *const BcStrSink,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "info", || {
        let s = to_json("info", &node(ctx).info()?)?;
        push_str(out, &s);
        Ok(())
    })
}

unsafe extern "C" fn n_discard(ctx: *mut c_void, off: u64, len: u64, err: *const BcErrSink) -> i32 {
    guard(err, "discard", || node(ctx).discard(off, len))
}

unsafe extern "C" fn n_write_zeroes(
    ctx: *mut c_void,
    off: u64,
    len: u64,
    flags: u32,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "write_zeroes", || {
        node(ctx).write_zeroes(off, len, ZeroFlags(flags))
    })
}

unsafe extern "C" fn n_truncate(
    ctx: *mut c_void,
    size: u64,
    prealloc: u32,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "truncate", || {
        let p = Preallocation::from_u32(prealloc)
            .ok_or_else(|| BlockError::invalid("truncate", "unknown preallocation mode"))?;
        node(ctx).truncate(size, p)
    })
}

unsafe extern "C" fn n_allocated_size(
    ctx: *mut c_void,
    out: *mut u64,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "allocated_size", || {
        *out = node(ctx).allocated_size()?;
        Ok(())
    })
}

unsafe extern "C" fn n_block_status(
    ctx: *mut c_void,
    off: u64,
    len: u64,
    out: *mut BcExtent,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "block_status", || {
        let e = node(ctx).block_status(off, len)?;
        *out = extent_for_host(e, super::plugin::host_abi_minor());
        Ok(())
    })
}

/// The ABI form of `e` for a host of ABI minor `host_minor` (`None`: this
/// build's). Hosts before minor 4 take every offset to be in the `file`
/// child, so an offset into another child is withheld from them (no
/// OFFSET_VALID, no RECURSE), as drivers reported it before: they then
/// neither print it nor look for holes in the wrong file.
fn extent_for_host(e: Extent, host_minor: Option<u16>) -> BcExtent {
    let old_host = host_minor.is_some_and(|m| m < 4);
    if old_host && e.mapped_child != ChildRole::File {
        return BcExtent {
            length: e.length,
            flags: e
                .flags
                .without(ExtentFlags::OFFSET_VALID)
                .without(ExtentFlags::RECURSE)
                .0,
            mapped_child: 0,
            mapped_offset: 0,
        };
    }
    BcExtent {
        length: e.length,
        flags: e.flags.0,
        mapped_child: e.mapped_child as u32,
        mapped_offset: e.mapped_offset,
    }
}

unsafe extern "C" fn n_has_zero_init(ctx: *mut c_void) -> i32 {
    catch_unwind(AssertUnwindSafe(|| node(ctx).has_zero_init() as i32)).unwrap_or(0)
}

unsafe extern "C" fn n_check_json(
    ctx: *mut c_void,
    mode: u32,
    out: *const BcStrSink,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "check", || {
        let s = to_json(
            "check",
            &require(node(ctx).check_control(), "check")?.check(CheckMode(mode))?,
        )?;
        push_str(out, &s);
        Ok(())
    })
}

unsafe extern "C" fn n_snapshot_list_json(
    ctx: *mut c_void,
    out: *const BcStrSink,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "snapshot_list", || {
        let s = to_json(
            "snapshot_list",
            &require(node(ctx).snapshots(), "snapshot_list")?.snapshot_list()?,
        )?;
        push_str(out, &s);
        Ok(())
    })
}

unsafe extern "C" fn n_snapshot_create(
    ctx: *mut c_void,
    name: BcStr,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "snapshot_create", || {
        require(node(ctx).snapshots(), "snapshot_create")?.snapshot_create(&name.to_string_lossy())
    })
}

unsafe extern "C" fn n_snapshot_apply(ctx: *mut c_void, name: BcStr, err: *const BcErrSink) -> i32 {
    guard(err, "snapshot_apply", || {
        require(node(ctx).snapshots(), "snapshot_apply")?.snapshot_apply(&name.to_string_lossy())
    })
}

unsafe extern "C" fn n_snapshot_delete(
    ctx: *mut c_void,
    name: BcStr,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "snapshot_delete", || {
        require(node(ctx).snapshots(), "snapshot_delete")?.snapshot_delete(&name.to_string_lossy())
    })
}

unsafe extern "C" fn n_change_backing_file(
    ctx: *mut c_void,
    filename: BcStr,
    format: BcStr,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "change_backing_file", || {
        let f = filename.to_opt_string();
        let fmt = format.to_opt_string();
        require(node(ctx).backing_control(), "change_backing_file")?
            .change_backing_file(f.as_deref(), fmt.as_deref())
    })
}

unsafe extern "C" fn n_invalidate_cache(ctx: *mut c_void, err: *const BcErrSink) -> i32 {
    guard(err, "invalidate_cache", || {
        require(node(ctx).migration(), "invalidate_cache")?.invalidate_cache()
    })
}

unsafe extern "C" fn n_inactivate(ctx: *mut c_void, err: *const BcErrSink) -> i32 {
    guard(err, "inactivate", || {
        let n = node(ctx);
        match n.migration() {
            Some(m) => {
                n.flush()?;
                m.inactivate()
            }
            None => n.flush(),
        }
    })
}

unsafe extern "C" fn n_activate(ctx: *mut c_void, err: *const BcErrSink) -> i32 {
    guard(err, "activate", || {
        require(node(ctx).migration(), "activate")?.activate()
    })
}

unsafe extern "C" fn n_make_empty(ctx: *mut c_void, err: *const BcErrSink) -> i32 {
    guard(err, "make_empty", || {
        require(node(ctx).backing_control(), "make_empty")?.make_empty()
    })
}

unsafe extern "C" fn n_bitmap_json(
    ctx: *mut c_void,
    request: BcStr,
    out: *const BcStrSink,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "bitmap", || {
        let req = String::from_utf8_lossy(request.as_bytes()).into_owned();
        let s = require(node(ctx).bitmap_control(), "bitmap")?.bitmap(&req)?;
        push_str(out, &s);
        Ok(())
    })
}

unsafe extern "C" fn n_amend_json(ctx: *mut c_void, options: BcStr, err: *const BcErrSink) -> i32 {
    guard(err, "amend", || {
        let pairs = options_from_json("amend", options.as_bytes())?;
        require(node(ctx).amend_control(), "amend")?.amend(&pairs)
    })
}

static NODE_VTBL: BcNodeVtbl = BcNodeVtbl {
    struct_size: std::mem::size_of::<BcNodeVtbl>(),
    close: Some(n_close),
    read: Some(n_read),
    write: Some(n_write),
    flush: Some(n_flush),
    length: Some(n_length),
    info_json: Some(n_info_json),
    discard: Some(n_discard),
    write_zeroes: Some(n_write_zeroes),
    truncate: Some(n_truncate),
    allocated_size: Some(n_allocated_size),
    block_status: Some(n_block_status),
    has_zero_init: Some(n_has_zero_init),
    check_json: Some(n_check_json),
    snapshot_list_json: Some(n_snapshot_list_json),
    snapshot_create: Some(n_snapshot_create),
    snapshot_apply: Some(n_snapshot_apply),
    snapshot_delete: Some(n_snapshot_delete),
    change_backing_file: Some(n_change_backing_file),
    invalidate_cache: Some(n_invalidate_cache),
    inactivate: Some(n_inactivate),
    activate: Some(n_activate),
    make_empty: Some(n_make_empty),
    amend_json: Some(n_amend_json),
    bitmap_json: Some(n_bitmap_json),
};

// ---------------------------------------------------------------- host services

type HostArc = Arc<dyn HostServices>;

/// Exposes host services through the C table with one reference owned by
/// the caller, who calls `release` when done lending it.
pub fn export_host_services(h: Arc<dyn HostServices>) -> BcHostServices {
    BcHostServices {
        ctx: Arc::into_raw(Arc::new(h)) as *mut c_void,
        vtbl: &HOST_SERVICES_VTBL,
    }
}

unsafe extern "C" fn h_release(ctx: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        Arc::decrement_strong_count(ctx as *const HostArc)
    }));
}

unsafe extern "C" fn h_retain(ctx: *mut c_void) {
    Arc::increment_strong_count(ctx as *const HostArc);
}

unsafe extern "C" fn h_open_child(
    ctx: *mut c_void,
    req: *const BcChildRequest,
    out: *mut BcNode,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "open child", || {
        let host: &HostArc = &*(ctx as *const HostArc);
        let r =
            copy_table(req).ok_or_else(|| BlockError::invalid("open child", "missing request"))?;
        let role = ChildRole::from_u32(r.role)
            .ok_or_else(|| BlockError::invalid("open child", "unknown child role"))?;
        let creq = ChildRequest {
            role,
            filename: r.filename.to_string_lossy(),
            relative_to: r.relative_to.to_opt_string(),
            format: r.format.to_opt_string(),
            flags: OpenFlags(r.flags),
            options: options_from_json("open child", r.options_json.as_bytes())?,
        };
        let child = host.open_child(&creq)?;
        *out = export_node(child);
        Ok(())
    })
}

unsafe extern "C" fn h_create_file(
    ctx: *mut c_void,
    filename: BcStr,
    size: u64,
    prealloc: u32,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "create file", || {
        let host: &HostArc = &*(ctx as *const HostArc);
        let p = Preallocation::from_u32(prealloc)
            .ok_or_else(|| BlockError::invalid("create file", "unknown preallocation mode"))?;
        host.create_file(&filename.to_string_lossy(), size, p)
    })
}

static HOST_SERVICES_VTBL: BcHostServicesVtbl = BcHostServicesVtbl {
    struct_size: std::mem::size_of::<BcHostServicesVtbl>(),
    release: Some(h_release),
    retain: Some(h_retain),
    open_child: Some(h_open_child),
    create_file: Some(h_create_file),
};

// ---------------------------------------------------------------- drivers

type DriverArc = Arc<dyn BlockDriver>;

/// Exposes a driver through the C table. The driver is leaked: plugin
/// drivers live as long as the process.
pub fn export_driver(d: Arc<dyn BlockDriver>) -> BcDriver {
    BcDriver {
        ctx: Box::into_raw(Box::new(d)) as *const c_void,
        vtbl: &DRIVER_VTBL,
    }
}

unsafe fn driver<'a>(ctx: *const c_void) -> &'a DriverArc {
    &*(ctx as *const DriverArc)
}

unsafe extern "C" fn d_name(ctx: *const c_void, out: *const BcStrSink) {
    let _ = catch_unwind(AssertUnwindSafe(|| push_str(out, driver(ctx).name())));
}

unsafe extern "C" fn d_kind(ctx: *const c_void) -> u32 {
    catch_unwind(AssertUnwindSafe(|| driver(ctx).kind() as u32)).unwrap_or(u32::MAX)
}

unsafe extern "C" fn d_caps(ctx: *const c_void) -> u32 {
    catch_unwind(AssertUnwindSafe(|| driver(ctx).caps().0)).unwrap_or(0)
}

unsafe extern "C" fn d_description(ctx: *const c_void, out: *const BcStrSink) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        push_str(out, driver(ctx).description())
    }));
}

unsafe extern "C" fn d_protocol_prefixes_json(ctx: *const c_void, out: *const BcStrSink) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let p = driver(ctx).protocol_prefixes();
        push_str(out, &serde_json::to_string(&p).unwrap_or_default())
    }));
}

unsafe extern "C" fn d_probe(ctx: *const c_void, input: *const BcProbeInput) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        let Some(i) = copy_table(input) else { return 0 };
        let name = i.filename.to_string_lossy();
        let pi = ProbeInput {
            head: i.head.as_bytes(),
            tail: i.tail.as_bytes(),
            file_size: i.file_size,
            filename: &name,
        };
        driver(ctx).probe(&pi)
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn d_open(
    ctx: *const c_void,
    req: *const BcOpenRequest,
    host: BcHostServices,
    out: *mut BcNode,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "open", || {
        let r = copy_table(req).ok_or_else(|| BlockError::invalid("open", "missing request"))?;
        let oreq = OpenRequest {
            filename: r.filename.to_string_lossy(),
            options: options_from_json("open", r.options_json.as_bytes())?,
            flags: OpenFlags(r.flags),
        };
        let hs = super::import::ForeignHostServices::retain(host)?;
        let n = driver(ctx).open(&oreq, Arc::new(hs))?;
        *out = export_node(Arc::from(n));
        Ok(())
    })
}

/// Pushes the schema `get` returns as JSON; a panic becomes -EIO.
unsafe fn push_schema(
    ctx: *const c_void,
    out: *const BcStrSink,
    get: fn(&dyn BlockDriver) -> Vec<crate::options::OptDesc>,
) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        let o = get(driver(ctx).as_ref());
        push_str(out, &serde_json::to_string(&o).unwrap_or_default());
        0
    }))
    .unwrap_or(-libc::EIO)
}

unsafe extern "C" fn d_create_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32 {
    push_schema(ctx, out, |d| d.create_options())
}

unsafe extern "C" fn d_create(
    ctx: *const c_void,
    filename: BcStr,
    options_json: BcStr,
    host: BcHostServices,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "create", || {
        let d = driver(ctx);
        let pairs = options_from_json("create", options_json.as_bytes())?;
        let opts = OptionValues::parse(&d.create_options(), &pairs)?;
        let hs = super::import::ForeignHostServices::retain(host)?;
        d.create(&filename.to_string_lossy(), &opts, Arc::new(hs))
    })
}

unsafe extern "C" fn d_amend_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32 {
    push_schema(ctx, out, |d| d.amend_options())
}

unsafe extern "C" fn d_measure_json(
    ctx: *const c_void,
    request: BcStr,
    out: *const BcStrSink,
    err: *const BcErrSink,
) -> i32 {
    guard(err, "measure", || {
        let req: crate::info::MeasureRequest = serde_json::from_slice(request.as_bytes())
            .map_err(|e| BlockError::invalid("measure", format!("bad request document: {e}")))?;
        let r = driver(ctx).measure(&req)?;
        push_str(out, &to_json("measure", &r)?);
        Ok(())
    })
}

static DRIVER_VTBL: BcDriverVtbl = BcDriverVtbl {
    struct_size: std::mem::size_of::<BcDriverVtbl>(),
    name: Some(d_name),
    kind: Some(d_kind),
    caps: Some(d_caps),
    description: Some(d_description),
    protocol_prefixes_json: Some(d_protocol_prefixes_json),
    probe: Some(d_probe),
    open: Some(d_open),
    create_options_json: Some(d_create_options_json),
    create: Some(d_create),
    amend_options_json: Some(d_amend_options_json),
    measure_json: Some(d_measure_json),
};

#[cfg(test)]
mod extent_tests {
    use super::*;

    fn mapped(child: ChildRole) -> Extent {
        Extent {
            length: 4096,
            flags: ExtentFlags::DATA
                .with(ExtentFlags::ALLOCATED)
                .with(ExtentFlags::OFFSET_VALID)
                .with(ExtentFlags::RECURSE),
            mapped_offset: 65536,
            mapped_child: child,
        }
    }

    /// Hosts of minor 4 and later (and no host at all) get the child.
    #[test]
    fn current_hosts_get_the_mapped_child() {
        for minor in [None, Some(4), Some(BLK_ABI_MINOR)] {
            let b = extent_for_host(mapped(ChildRole::DataFile), minor);
            assert_eq!(b.mapped_child, ChildRole::DataFile as u32);
            assert_eq!(b.mapped_offset, 65536);
            assert_eq!(b.flags, mapped(ChildRole::DataFile).flags.0);
        }
    }

    /// An older host reads every offset as one into `file`: a data-file
    /// offset is withheld from it, a file offset is not.
    #[test]
    fn older_hosts_never_see_an_offset_into_another_child() {
        let b = extent_for_host(mapped(ChildRole::DataFile), Some(3));
        assert_eq!(b.flags, ExtentFlags::DATA.with(ExtentFlags::ALLOCATED).0);
        assert_eq!((b.mapped_child, b.mapped_offset, b.length), (0, 0, 4096));
        let b = extent_for_host(mapped(ChildRole::File), Some(3));
        assert_eq!(b.flags, mapped(ChildRole::File).flags.0);
        assert_eq!((b.mapped_child, b.mapped_offset), (0, 65536));
    }
}
