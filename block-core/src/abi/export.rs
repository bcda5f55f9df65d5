//! Rust → C for drivers: exposes a [`BlockDriver`] through
//! [`BcDriverVtbl`]. Nodes are exported by `node_export`, host services
//! received in `open`/`create` are wrapped by `lent`; this module calls
//! neither `import` nor is called by it. Every slot catches panics.

use super::checks::{require_ctx, require_out};
use super::errors::{catch_or, guard};
pub use super::errors::{panic_message, report_error};
use super::json::{options_from_json, to_json};
use super::lent::ForeignHostServices;
pub use super::node_export::export_node;
use super::sinks::push_str;
use super::*;
use crate::driver::{BlockDriver, OpenRequest, ProbeInput};
use crate::error::BlockError;
use crate::options::{OptDesc, OptionValues};
use crate::types::OpenFlags;
use std::sync::Arc;

type DriverArc = Arc<dyn BlockDriver>;

/// Exposes a driver through the C table. The driver is leaked: plugin
/// drivers live as long as the process.
pub fn export_driver(d: Arc<dyn BlockDriver>) -> BcDriver {
    BcDriver {
        ctx: Box::into_raw(Box::new(d)) as *const c_void,
        vtbl: &DRIVER_VTBL,
    }
}

static DRIVER_VTBL: BcDriverVtbl = BcDriverVtbl::exported::<DriverExport>();

/// The slot bodies of [`BcDriverVtbl`] for exported drivers.
struct DriverExport;

/// The driver behind `ctx`, borrowed no longer than the slot's `ctx`.
unsafe fn driver(ctx: &*const c_void) -> &DriverArc {
    &*(*ctx as *const DriverArc)
}

/// Pushes the schema `get` returns as JSON; a panic becomes -EIO.
unsafe fn push_schema(
    ctx: *const c_void,
    out: *const BcStrSink,
    get: fn(&dyn BlockDriver) -> Vec<OptDesc>,
) -> i32 {
    if out.is_null() || ctx.is_null() {
        log::error!("option schema: the output sink or the driver context is NULL");
        return -libc::EINVAL;
    }
    catch_or("driver option schema", -libc::EIO, || {
        let o = get(driver(&ctx).as_ref());
        push_str(out, &serde_json::to_string(&o).unwrap_or_default());
        0
    })
}

/// The driver's view of a probe input; the file name is copied into `name`.
unsafe fn probe_input<'a>(input: &'a BcProbeInput, name: &'a mut String) -> ProbeInput<'a> {
    *name = input.filename.to_string_lossy();
    ProbeInput {
        head: input.head.as_bytes(),
        tail: input.tail.as_bytes(),
        file_size: input.file_size,
        filename: name,
    }
}

impl BcDriverSlots for DriverExport {
    unsafe extern "C" fn name(ctx: *const c_void, out: *const BcStrSink) {
        catch_or("driver name()", (), || push_str(out, driver(&ctx).name()))
    }

    unsafe extern "C" fn kind(ctx: *const c_void) -> u32 {
        catch_or("driver kind()", u32::MAX, || driver(&ctx).kind() as u32)
    }

    unsafe extern "C" fn caps(ctx: *const c_void) -> u32 {
        catch_or("driver caps()", 0, || driver(&ctx).caps().0)
    }

    unsafe extern "C" fn description(ctx: *const c_void, out: *const BcStrSink) {
        catch_or("driver description()", (), || {
            push_str(out, driver(&ctx).description())
        })
    }

    unsafe extern "C" fn protocol_prefixes_json(ctx: *const c_void, out: *const BcStrSink) {
        catch_or("driver protocol_prefixes()", (), || {
            let p = driver(&ctx).protocol_prefixes();
            push_str(out, &serde_json::to_string(&p).unwrap_or_default())
        })
    }

    /// For hosts before minor 6: a failed or panicking probe scores 0.
    unsafe extern "C" fn probe(ctx: *const c_void, input: *const BcProbeInput) -> u32 {
        catch_or("driver probe()", 0, || {
            let Some(i) = copy_table(input) else { return 0 };
            let mut name = String::new();
            let pi = probe_input(&i, &mut name);
            driver(&ctx).try_probe(&pi).unwrap_or(0)
        })
    }

    unsafe extern "C" fn probe_checked(
        ctx: *const c_void,
        input: *const BcProbeInput,
        out: *mut u32,
        err: Err,
    ) -> i32 {
        guard(err, "probe", || {
            let i = copy_table(input)
                .ok_or_else(|| BlockError::invalid("probe", "missing probe input"))?;
            if out.is_null() {
                return Err(BlockError::invalid("probe", "missing score pointer"));
            }
            let mut name = String::new();
            let pi = probe_input(&i, &mut name);
            *out = driver(&ctx).try_probe(&pi)?.min(100);
            Ok(())
        })
    }

    unsafe extern "C" fn open(
        ctx: *const c_void,
        req: *const BcOpenRequest,
        host: BcHostServices,
        out: *mut BcNode,
        err: Err,
    ) -> i32 {
        guard(err, "open", || {
            require_ctx("open", ctx)?;
            require_out("open", "out", out)?;
            let r =
                copy_table(req).ok_or_else(|| BlockError::invalid("open", "missing request"))?;
            let oreq = OpenRequest {
                filename: r.filename.to_string_lossy(),
                options: options_from_json("open", r.options_json.as_bytes())?,
                flags: OpenFlags(r.flags),
            };
            let hs = ForeignHostServices::retain(host)?;
            let n = driver(&ctx).open(&oreq, Arc::new(hs))?;
            *out = export_node(Arc::from(n));
            Ok(())
        })
    }

    unsafe extern "C" fn create_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32 {
        push_schema(ctx, out, |d| d.create_options())
    }

    unsafe extern "C" fn create(
        ctx: *const c_void,
        filename: BcStr,
        options_json: BcStr,
        host: BcHostServices,
        err: Err,
    ) -> i32 {
        guard(err, "create", || {
            require_ctx("create", ctx)?;
            let d = driver(&ctx);
            let pairs = options_from_json("create", options_json.as_bytes())?;
            let opts = OptionValues::parse(&d.create_options(), &pairs)?;
            let hs = ForeignHostServices::retain(host)?;
            d.create(&filename.to_string_lossy(), &opts, Arc::new(hs))
        })
    }

    unsafe extern "C" fn amend_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32 {
        push_schema(ctx, out, |d| d.amend_options())
    }

    unsafe extern "C" fn measure_json(
        ctx: *const c_void,
        request_json: BcStr,
        out: *const BcStrSink,
        err: Err,
    ) -> i32 {
        guard(err, "measure", || {
            require_ctx("measure", ctx)?;
            require_out("measure", "out", out)?;
            let req: crate::info::MeasureRequest = serde_json::from_slice(request_json.as_bytes())
                .map_err(|e| {
                    BlockError::invalid("measure", format!("bad request document: {e}"))
                })?;
            let r = driver(&ctx).measure(&req)?;
            push_str(out, &to_json("measure", &r)?);
            Ok(())
        })
    }

    unsafe extern "C" fn open_options_json(ctx: *const c_void, out: *const BcStrSink) -> i32 {
        push_schema(ctx, out, |d| d.open_options())
    }
}
