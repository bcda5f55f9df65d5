//! Host services lent across the ABI, both directions: the host exports
//! its [`HostServices`] through [`BcHostServicesVtbl`] for one `open` or
//! `create` call, and a driver takes its own reference
//! ([`ForeignHostServices::retain`]) to keep opening children later.

use super::checks::{copy_peer_table, require_out};
use super::errors::{call, catch_or, guard};
use super::json::{options_from_json, options_to_json};
use super::lent_handles;
use super::node_export::export_node;
use super::node_import::ForeignNode;
use super::*;
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::{ChildRequest, ChildRole, HostServices};
use crate::node::BlockNode;
use crate::types::{OpenFlags, Preallocation};
use std::sync::Arc;

/// Exposes host services through the C table, lent to one `open` or
/// `create` call: the plugin owns no reference unless it calls `retain`.
/// The caller ends the lending with [`release_lent`] when the call returns.
/// Handles are counted defensively (`lent_handles`): a plugin that
/// releases what it did not retain is logged and ignored.
pub fn export_host_services(h: Arc<dyn HostServices>) -> BcHostServices {
    BcHostServices {
        ctx: lent_handles::lend(h),
        vtbl: &HOST_SERVICES_VTBL,
    }
}

/// Ends the lending of a handle from [`export_host_services`] (the host's
/// own reference; the plugin's `retain`ed ones stay valid).
pub fn release_lent(hs: BcHostServices) {
    lent_handles::end_lending(hs.ctx)
}

static HOST_SERVICES_VTBL: BcHostServicesVtbl = BcHostServicesVtbl::exported::<HostExport>();

/// The slot bodies of [`BcHostServicesVtbl`] for exported host services.
struct HostExport;

impl BcHostServicesSlots for HostExport {
    unsafe extern "C" fn release(ctx: *mut c_void) {
        catch_or("host services release", (), || lent_handles::release(ctx))
    }

    unsafe extern "C" fn retain(ctx: *mut c_void) {
        catch_or("host services retain", (), || lent_handles::retain(ctx))
    }

    unsafe extern "C" fn open_child(
        ctx: *mut c_void,
        req: *const BcChildRequest,
        out: *mut BcNode,
        err: Err,
    ) -> i32 {
        guard(err, "open child", || {
            require_out("open child", "out", out)?;
            let services = lent_handles::services("open child", ctx)?;
            let r = copy_table(req)
                .ok_or_else(|| BlockError::invalid("open child", "missing request"))?;
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
            let child = services.open_child(&creq)?;
            *out = export_node(child);
            Ok(())
        })
    }

    unsafe extern "C" fn create_file(
        ctx: *mut c_void,
        filename: BcStr,
        size: u64,
        prealloc: u32,
        err: Err,
    ) -> i32 {
        guard(err, "create file", || {
            let p = Preallocation::from_u32(prealloc)
                .ok_or_else(|| BlockError::invalid("create file", "unknown preallocation mode"))?;
            lent_handles::services("create file", ctx)?.create_file(
                &filename.to_string_lossy(),
                size,
                p,
            )
        })
    }
}

/// The ABI minor of the host whose services this plugin received (this
/// build's when no host called the entry point).
fn host_minor() -> u16 {
    super::host_api::host_abi_minor().unwrap_or(BLK_ABI_MINOR)
}

/// Host services received across the ABI (one reference, released on drop).
pub struct ForeignHostServices {
    ctx: *mut c_void,
    vtbl: BcHostServicesVtbl,
}

// SAFETY: host services are `Arc<dyn HostServices>` (Send + Sync) on the
// exporting side.
unsafe impl Send for ForeignHostServices {}
unsafe impl Sync for ForeignHostServices {}

impl ForeignHostServices {
    /// Takes a new reference to a lent handle.
    ///
    /// # Safety
    /// `h` must be a valid handle for the duration of this call.
    pub unsafe fn retain(h: BcHostServices) -> Result<ForeignHostServices> {
        let vtbl = copy_peer_table(
            "host services vtable (BcHostServicesVtbl)",
            h.vtbl,
            host_minor(),
            BcHostServicesVtbl::size_at_minor,
        )?
        .ok_or_else(|| {
            BlockError::new(
                ErrorKind::AbiMismatch,
                "open",
                "host services have no vtable",
            )
        })?;
        match (vtbl.retain, vtbl.release) {
            (Some(retain), Some(_)) => retain(h.ctx),
            _ => {
                return Err(BlockError::new(
                    ErrorKind::AbiMismatch,
                    "open",
                    "host services lack retain/release",
                ))
            }
        }
        Ok(ForeignHostServices { ctx: h.ctx, vtbl })
    }
}

impl Drop for ForeignHostServices {
    fn drop(&mut self) {
        if let Some(release) = self.vtbl.release {
            unsafe { release(self.ctx) }
        }
    }
}

impl HostServices for ForeignHostServices {
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        let f = self
            .vtbl
            .open_child
            .ok_or_else(|| BlockError::unsupported("open child"))?;
        let opts = options_to_json(&req.options);
        let creq = BcChildRequest {
            struct_size: std::mem::size_of::<BcChildRequest>(),
            role: req.role.to_u32(),
            flags: req.flags.0,
            filename: BcStr::from_str(&req.filename),
            relative_to: BcStr::from_opt(req.relative_to.as_deref()),
            format: BcStr::from_opt(req.format.as_deref()),
            options_json: BcStr::from_str(&opts),
        };
        let mut out = BcNode {
            ctx: std::ptr::null_mut(),
            vtbl: std::ptr::null(),
        };
        call("open child", |err| unsafe {
            f(self.ctx, &creq, &mut out, err)
        })?;
        Ok(Arc::new(unsafe {
            ForeignNode::from_raw_minor(out, host_minor())?
        }))
    }

    fn create_file(&self, filename: &str, size: u64, prealloc: Preallocation) -> Result<()> {
        let f = self
            .vtbl
            .create_file
            .ok_or_else(|| BlockError::unsupported("create file"))?;
        call("create file", |err| unsafe {
            f(
                self.ctx,
                BcStr::from_str(filename),
                size,
                prealloc as u32,
                err,
            )
        })
    }
}
