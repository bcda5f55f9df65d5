//! Rust → C for nodes: exposes an `Arc<dyn BlockNode>` through
//! [`BcNodeVtbl`]. Every slot runs under `catch_unwind`: a panic becomes an
//! EIO error for that call and never unwinds across the boundary.

use super::checks::{checked_iovecs, require_ctx, require_out};
use super::errors::{catch_or, drop_payload, guard};
use super::json::{options_from_json, to_json};
use super::sinks::push_str;
use super::*;
use crate::control::require;
use crate::error::{BlockError, Result};
use crate::host::ChildRole;
use crate::limits::{IoLimits, NodeCapabilities, ThreadModel};
use crate::node::BlockNode;
use crate::types::{CheckMode, Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The node behind a slot's `ctx`, borrowed no longer than the slot's own
/// `ctx` parameter (so it cannot outlive the call); a NULL `ctx` is an
/// EINVAL error.
///
/// # Safety
/// `ctx` must be NULL or come from [`export_node`] and not be closed yet.
unsafe fn node(ctx: &*mut c_void) -> Result<&Arc<dyn BlockNode>> {
    require_ctx("node slot", *ctx)?;
    Ok(&*(*ctx as *const Arc<dyn BlockNode>))
}

/// Exposes a node through the C table. The receiver calls `close` once.
pub fn export_node(n: Arc<dyn BlockNode>) -> BcNode {
    BcNode {
        ctx: Box::into_raw(Box::new(n)) as *mut c_void,
        vtbl: table(),
    }
}

/// The node table this build exports.
pub(crate) fn table() -> &'static BcNodeVtbl {
    &NODE_VTBL
}

static NODE_VTBL: BcNodeVtbl = BcNodeVtbl::exported::<NodeExport>();

/// The slot bodies of [`BcNodeVtbl`] for exported nodes.
struct NodeExport;

/// Borrows the caller's I/O vector as mutable slices, bounded by the
/// borrow of `iov`'s own parameter, after [`checked_iovecs`] (disjoint
/// buffers: the slices must never alias).
unsafe fn iov_mut<'a>(
    offset: u64,
    iov: &'a *const BcIoVec,
    niov: usize,
) -> Result<Vec<IoSliceMut<'a>>> {
    Ok(checked_iovecs("read", offset, iov, niov, true)?
        .iter()
        .map(|v| {
            if v.len == 0 {
                IoSliceMut::new(&mut [])
            } else {
                IoSliceMut::new(std::slice::from_raw_parts_mut(v.ptr, v.len))
            }
        })
        .collect())
}

/// As [`iov_mut`], read-only (buffers may repeat: shared slices may alias).
unsafe fn iov_ref<'a>(
    offset: u64,
    iov: &'a *const BcIoVec,
    niov: usize,
) -> Result<Vec<IoSlice<'a>>> {
    Ok(checked_iovecs("write", offset, iov, niov, false)?
        .iter()
        .map(|v| {
            if v.len == 0 {
                IoSlice::new(&[])
            } else {
                IoSlice::new(std::slice::from_raw_parts(v.ptr, v.len))
            }
        })
        .collect())
}

/// The ABI form of `e` for a host of ABI minor `host_minor` (`None`: this
/// build's). A host reads offsets only into the children its minor knows
/// as mapped children (`file` always, `data-file` from 4, extents from 5):
/// an offset into another child is withheld from it (no OFFSET_VALID, no
/// RECURSE), as drivers reported it before, so that it neither prints it
/// nor looks for holes in the wrong file.
pub(crate) fn extent_for_host(e: Extent, host_minor: Option<u16>) -> BcExtent {
    let host_minor = host_minor.unwrap_or(BLK_ABI_MINOR);
    if e.mapped_child != ChildRole::File && host_minor < e.mapped_child.mapped_since_minor() {
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
        mapped_child: e.mapped_child.to_u32(),
        mapped_offset: e.mapped_offset,
    }
}

/// The [`BcControlMask`] of `n`: which capability accessors answer `Some`.
pub(crate) fn control_mask_of(n: &dyn BlockNode) -> u64 {
    let mut m = 0;
    let mut set = |present: bool, bit: u64| {
        if present {
            m |= bit
        }
    };
    set(n.snapshots().is_some(), BcControlMask::SNAPSHOTS);
    set(n.check_control().is_some(), BcControlMask::CHECK);
    set(n.amend_control().is_some(), BcControlMask::AMEND);
    set(n.migration().is_some(), BcControlMask::MIGRATION);
    set(n.backing_control().is_some(), BcControlMask::BACKING);
    set(n.bitmap_control().is_some(), BcControlMask::BITMAPS);
    m
}

/// `IoLimits` in ABI form.
pub(crate) fn limits_to_abi(l: &IoLimits) -> BcIoLimits {
    BcIoLimits {
        struct_size: std::mem::size_of::<BcIoLimits>(),
        request_alignment: l.request_alignment,
        reserved: 0,
        max_transfer: l.max_transfer,
        optimal_transfer: l.optimal_transfer,
        max_discard: l.max_discard,
    }
}

/// `NodeCapabilities` in ABI form.
pub(crate) fn caps_to_abi(c: &NodeCapabilities) -> BcNodeCaps {
    let mut flags = 0;
    for (on, bit) in [
        (c.can_zero, BcNodeCaps::CAN_ZERO),
        (c.can_fast_zero, BcNodeCaps::CAN_FAST_ZERO),
        (c.can_fua, BcNodeCaps::CAN_FUA),
        (c.can_discard, BcNodeCaps::CAN_DISCARD),
        (c.multi_conn_safe, BcNodeCaps::MULTI_CONN_SAFE),
    ] {
        if on {
            flags |= bit;
        }
    }
    BcNodeCaps {
        struct_size: std::mem::size_of::<BcNodeCaps>(),
        flags,
        thread_model: match c.thread_model {
            ThreadModel::Parallel => 0,
            ThreadModel::SerializeRequests => 1,
        },
    }
}

/// Runs a query without an error sink under `catch_unwind`: 0, -errno
/// (logged) on an error, or -EIO on a panic.
fn query(op: &str, f: impl FnOnce() -> Result<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            log::error!("{e}");
            -e.errno().max(1)
        }
        Err(p) => {
            log::error!("{op}: driver panicked: {}", panic_message(&*p));
            drop_payload(p);
            -libc::EIO
        }
    }
}

fn parse_prealloc(op: &str, p: u32) -> Result<Preallocation> {
    Preallocation::from_u32(p).ok_or_else(|| BlockError::invalid(op, "unknown preallocation mode"))
}

impl BcNodeSlots for NodeExport {
    unsafe extern "C" fn close(ctx: *mut c_void) {
        if !ctx.is_null() {
            catch_or("node close", (), || {
                drop(Box::from_raw(ctx as *mut Arc<dyn BlockNode>))
            });
        }
    }

    unsafe extern "C" fn read(
        ctx: *mut c_void,
        offset: u64,
        iov: *const BcIoVec,
        niov: usize,
        flags: u32,
        err: Err,
    ) -> i32 {
        guard(err, "read", || {
            let n = node(&ctx)?;
            let mut bufs = iov_mut(offset, &iov, niov)?;
            n.read_vectored(offset, &mut bufs, ReqFlags(flags))
        })
    }

    unsafe extern "C" fn write(
        ctx: *mut c_void,
        offset: u64,
        iov: *const BcIoVec,
        niov: usize,
        flags: u32,
        err: Err,
    ) -> i32 {
        guard(err, "write", || {
            let n = node(&ctx)?;
            let bufs = iov_ref(offset, &iov, niov)?;
            n.write_vectored(offset, &bufs, ReqFlags(flags))
        })
    }

    unsafe extern "C" fn flush(ctx: *mut c_void, err: Err) -> i32 {
        guard(err, "flush", || node(&ctx)?.flush())
    }

    unsafe extern "C" fn length(ctx: *mut c_void, out: *mut u64, err: Err) -> i32 {
        guard(err, "length", || {
            let n = node(&ctx)?;
            require_out("length", "out", out)?;
            *out = n.length()?;
            Ok(())
        })
    }

    unsafe extern "C" fn info_json(ctx: *mut c_void, out: *const BcStrSink, err: Err) -> i32 {
        guard(err, "info", || {
            let n = node(&ctx)?;
            require_out("info", "out", out)?;
            push_str(out, &to_json("info", &n.info()?)?);
            Ok(())
        })
    }

    unsafe extern "C" fn discard(ctx: *mut c_void, offset: u64, len: u64, err: Err) -> i32 {
        guard(err, "discard", || node(&ctx)?.discard(offset, len))
    }

    unsafe extern "C" fn write_zeroes(
        ctx: *mut c_void,
        offset: u64,
        len: u64,
        flags: u32,
        err: Err,
    ) -> i32 {
        guard(err, "write_zeroes", || {
            node(&ctx)?.write_zeroes(offset, len, ZeroFlags(flags))
        })
    }

    unsafe extern "C" fn truncate(ctx: *mut c_void, size: u64, prealloc: u32, err: Err) -> i32 {
        guard(err, "truncate", || {
            node(&ctx)?.truncate(size, parse_prealloc("truncate", prealloc)?)
        })
    }

    unsafe extern "C" fn allocated_size(ctx: *mut c_void, out: *mut u64, err: Err) -> i32 {
        guard(err, "allocated_size", || {
            let n = node(&ctx)?;
            require_out("allocated_size", "out", out)?;
            *out = n.allocated_size()?;
            Ok(())
        })
    }

    unsafe extern "C" fn block_status(
        ctx: *mut c_void,
        offset: u64,
        len: u64,
        out: *mut BcExtent,
        err: Err,
    ) -> i32 {
        guard(err, "block_status", || {
            let n = node(&ctx)?;
            require_out("block_status", "out", out)?;
            let e = n.block_status(offset, len)?;
            *out = extent_for_host(e, super::host_api::host_abi_minor());
            Ok(())
        })
    }

    unsafe extern "C" fn has_zero_init(ctx: *mut c_void) -> i32 {
        catch_or("node has_zero_init()", 0, || {
            node(&ctx).map(|n| n.has_zero_init() as i32).unwrap_or(0)
        })
    }

    unsafe extern "C" fn check_json(
        ctx: *mut c_void,
        mode: u32,
        out: *const BcStrSink,
        err: Err,
    ) -> i32 {
        guard(err, "check", || {
            let n = node(&ctx)?;
            require_out("check", "out", out)?;
            match require(n.check_control(), "check")?.check(CheckMode(mode)) {
                Ok(r) => push_str(out, &to_json("check", &r)?),
                Err(e) => return Err(super::json::send_check_stopped(out, e)),
            }
            Ok(())
        })
    }

    unsafe extern "C" fn snapshot_list_json(
        ctx: *mut c_void,
        out: *const BcStrSink,
        err: Err,
    ) -> i32 {
        guard(err, "snapshot_list", || {
            let n = node(&ctx)?;
            require_out("snapshot_list", "out", out)?;
            let l = require(n.snapshots(), "snapshot_list")?.snapshot_list()?;
            push_str(out, &to_json("snapshot_list", &l)?);
            Ok(())
        })
    }

    unsafe extern "C" fn snapshot_create(ctx: *mut c_void, name: BcStr, err: Err) -> i32 {
        guard(err, "snapshot_create", || {
            require(node(&ctx)?.snapshots(), "snapshot_create")?
                .snapshot_create(&name.to_string_lossy())
        })
    }

    unsafe extern "C" fn snapshot_apply(ctx: *mut c_void, name: BcStr, err: Err) -> i32 {
        guard(err, "snapshot_apply", || {
            require(node(&ctx)?.snapshots(), "snapshot_apply")?
                .snapshot_apply(&name.to_string_lossy())
        })
    }

    unsafe extern "C" fn snapshot_delete(ctx: *mut c_void, name: BcStr, err: Err) -> i32 {
        guard(err, "snapshot_delete", || {
            require(node(&ctx)?.snapshots(), "snapshot_delete")?
                .snapshot_delete(&name.to_string_lossy())
        })
    }

    unsafe extern "C" fn change_backing_file(
        ctx: *mut c_void,
        filename: BcStr,
        format: BcStr,
        err: Err,
    ) -> i32 {
        guard(err, "change_backing_file", || {
            let f = filename.to_opt_string();
            let fmt = format.to_opt_string();
            require(node(&ctx)?.backing_control(), "change_backing_file")?
                .change_backing_file(f.as_deref(), fmt.as_deref())
        })
    }

    unsafe extern "C" fn invalidate_cache(ctx: *mut c_void, err: Err) -> i32 {
        guard(err, "invalidate_cache", || {
            require(node(&ctx)?.migration(), "invalidate_cache")?.invalidate_cache()
        })
    }

    unsafe extern "C" fn inactivate(ctx: *mut c_void, err: Err) -> i32 {
        guard(err, "inactivate", || {
            // The host flushed the node before this call (MigrationControl's
            // contract; hosts before it flushed the image first), so only a
            // node without the capability is flushed here, as slot 1.0 did.
            let n = node(&ctx)?;
            match n.migration() {
                Some(m) => m.inactivate(),
                None => n.flush(),
            }
        })
    }

    unsafe extern "C" fn activate(ctx: *mut c_void, err: Err) -> i32 {
        guard(err, "activate", || {
            require(node(&ctx)?.migration(), "activate")?.activate()
        })
    }

    unsafe extern "C" fn make_empty(ctx: *mut c_void, err: Err) -> i32 {
        guard(err, "make_empty", || {
            require(node(&ctx)?.backing_control(), "make_empty")?.make_empty()
        })
    }

    unsafe extern "C" fn amend_json(ctx: *mut c_void, options_json: BcStr, err: Err) -> i32 {
        guard(err, "amend", || {
            let pairs = options_from_json("amend", options_json.as_bytes())?;
            require(node(&ctx)?.amend_control(), "amend")?.amend(&pairs)
        })
    }

    unsafe extern "C" fn bitmap_json(
        ctx: *mut c_void,
        request_json: BcStr,
        out: *const BcStrSink,
        err: Err,
    ) -> i32 {
        guard(err, "bitmap", || {
            let n = node(&ctx)?;
            require_out("bitmap", "out", out)?;
            let req = String::from_utf8_lossy(request_json.as_bytes()).into_owned();
            let s = require(n.bitmap_control(), "bitmap")?.bitmap(&req)?;
            push_str(out, &s);
            Ok(())
        })
    }

    unsafe extern "C" fn control_mask(ctx: *mut c_void) -> u64 {
        catch_or("node control_mask()", 0, || {
            node(&ctx).map(|n| control_mask_of(n.as_ref())).unwrap_or(0)
        })
    }

    unsafe extern "C" fn limits(ctx: *mut c_void, out: *mut BcIoLimits) -> i32 {
        query("limits", || {
            let n = node(&ctx)?;
            require_out("limits", "out", out)?;
            write_table(out, &limits_to_abi(&n.limits()));
            Ok(())
        })
    }

    unsafe extern "C" fn capabilities(ctx: *mut c_void, out: *mut BcNodeCaps) -> i32 {
        query("capabilities", || {
            let n = node(&ctx)?;
            require_out("capabilities", "out", out)?;
            write_table(out, &caps_to_abi(&n.capabilities()));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
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

    /// Hosts of minor 4 and later (and no host at all) get the data file.
    #[test]
    fn current_hosts_get_the_mapped_child() {
        for minor in [None, Some(4), Some(BLK_ABI_MINOR)] {
            let b = extent_for_host(mapped(ChildRole::DataFile), minor);
            assert_eq!(b.mapped_child, ChildRole::DataFile.to_u32());
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

    /// Extent offsets reach hosts of minor 5 only; a 1.4 host gets them
    /// withheld.
    #[test]
    fn extent_offsets_need_a_minor_5_host() {
        let b = extent_for_host(mapped(ChildRole::Extent(3)), Some(5));
        assert_eq!(b.mapped_child, 0x3_0003);
        assert_eq!(b.flags, mapped(ChildRole::Extent(3)).flags.0);
        let b = extent_for_host(mapped(ChildRole::Extent(3)), Some(4));
        assert_eq!((b.mapped_child, b.mapped_offset), (0, 0));
        assert!(!ExtentFlags(b.flags).contains(ExtentFlags::OFFSET_VALID));
    }
}
