//! C → Rust for drivers: wraps a [`BcDriver`] received across the ABI back
//! into [`BlockDriver`]. Nodes are wrapped by `node_import`, host services
//! lent to `open`/`create` are exported by `lent`; this module calls
//! neither `export` nor is called by it. Missing slots become
//! "unsupported" errors (or an empty schema).

use super::checks::copy_peer_table;
use super::errors::call;
use super::json::{from_json, options_to_json};
pub use super::lent::ForeignHostServices;
use super::lent::{export_host_services, release_lent};
pub use super::node_import::ForeignNode;
use super::sinks::{collect, collect_plain, sink_into};
use super::*;
use crate::driver::{BlockDriver, OpenRequest, ProbeInput};
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::HostServices;
use crate::info::{MeasureRequest, MeasureResult};
use crate::node::BlockNode;
use crate::options::{OptDesc, OptionValues};
use crate::types::{DriverCaps, DriverKind};
use std::sync::Arc;

// ---------------------------------------------------------------- drivers

/// A driver received across the ABI.
pub struct ForeignDriver {
    drv: BcDriver,
    vtbl: BcDriverVtbl,
    name: String,
    kind: DriverKind,
    caps: DriverCaps,
    description: String,
    prefixes: Vec<String>,
    /// The ABI minor the plugin declared (bounds its tables' sizes).
    minor: u16,
}

// SAFETY: drivers are `Arc<dyn BlockDriver>` (Send + Sync) on the exporting side.
unsafe impl Send for ForeignDriver {}
unsafe impl Sync for ForeignDriver {}

impl ForeignDriver {
    /// Wraps a driver handle of a plugin of this build's minor.
    ///
    /// # Safety
    /// As [`ForeignDriver::from_raw_minor`].
    pub unsafe fn from_raw(d: BcDriver) -> Result<ForeignDriver> {
        ForeignDriver::from_raw_minor(d, BLK_ABI_MINOR)
    }

    /// Wraps a driver handle of a plugin that declared ABI minor
    /// `plugin_minor`, reading its identity. A driver vtable whose
    /// `struct_size` claims more than that minor defines is refused (so are
    /// the node vtables its nodes bring later).
    ///
    /// # Safety
    /// `d` must be a valid driver handle that lives for the rest of the
    /// process, its vtable readable for the smaller of its `struct_size`
    /// and the size `plugin_minor` defines.
    pub unsafe fn from_raw_minor(d: BcDriver, plugin_minor: u16) -> Result<ForeignDriver> {
        let bad = |m: &str| BlockError::new(ErrorKind::AbiMismatch, "load plugin", m.to_string());
        let vtbl = copy_peer_table(
            "driver vtable (BcDriverVtbl)",
            d.vtbl,
            plugin_minor,
            BcDriverVtbl::size_at_minor,
        )?
        .ok_or_else(|| bad("driver has no vtable"))?;
        let (Some(name_f), Some(kind_f), Some(_open)) = (vtbl.name, vtbl.kind, vtbl.open) else {
            return Err(bad("driver vtable lacks name/kind/open"));
        };
        let name = collect_plain(|s| name_f(d.ctx, s));
        if name.is_empty() {
            return Err(bad("driver has an empty name"));
        }
        let kind = match kind_f(d.ctx) {
            0 => DriverKind::Format,
            1 => DriverKind::Protocol,
            k => return Err(bad(&format!("driver '{name}' has unknown kind {k}"))),
        };
        let caps = DriverCaps(vtbl.caps.map(|f| f(d.ctx)).unwrap_or(0));
        let description = vtbl
            .description
            .map(|f| collect_plain(|s| f(d.ctx, s)))
            .unwrap_or_default();
        let prefixes = vtbl
            .protocol_prefixes_json
            .map(|f| collect_plain(|s| f(d.ctx, s)))
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        Ok(ForeignDriver {
            drv: d,
            vtbl,
            name,
            kind,
            caps,
            description,
            prefixes,
            minor: plugin_minor,
        })
    }
}

/// A schema slot: pushes `[OptDesc]` JSON into the sink, returns 0 or -errno.
type SchemaSlot = unsafe extern "C" fn(*const c_void, *const BcStrSink) -> i32;

impl ForeignDriver {
    /// Reads an option schema through `slot`; a missing slot or a malformed
    /// answer is an empty schema.
    fn schema(&self, slot: Option<SchemaSlot>) -> Vec<OptDesc> {
        let Some(f) = slot else {
            return Vec::new();
        };
        let mut buf: Vec<u8> = Vec::new();
        let sink = sink_into(&mut buf);
        if unsafe { f(self.drv.ctx, &sink) } != 0 {
            return Vec::new();
        }
        serde_json::from_slice(&buf).unwrap_or_default()
    }
}

impl BlockDriver for ForeignDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DriverKind {
        self.kind
    }

    fn caps(&self) -> DriverCaps {
        self.caps
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn protocol_prefixes(&self) -> Vec<String> {
        self.prefixes.clone()
    }

    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        self.try_probe(input).unwrap_or(0)
    }

    /// Through `probe_checked` (minor 6) when the plugin has it, so that a
    /// failed or panicking probe is an error; else the plain `probe` slot.
    fn try_probe(&self, input: &ProbeInput<'_>) -> Result<u32> {
        let pi = BcProbeInput {
            struct_size: std::mem::size_of::<BcProbeInput>(),
            head: BcStr::from_bytes(input.head),
            tail: BcStr::from_bytes(input.tail),
            file_size: input.file_size,
            filename: BcStr::from_str(input.filename),
        };
        if let Some(f) = self.vtbl.probe_checked {
            let mut score = 0u32;
            call("probe", |err| unsafe {
                f(self.drv.ctx, &pi, &mut score, err)
            })?;
            return Ok(score.min(100));
        }
        let Some(f) = self.vtbl.probe else {
            return Ok(0);
        };
        Ok(unsafe { f(self.drv.ctx, &pi) }.min(100))
    }

    fn create_options(&self) -> Vec<OptDesc> {
        self.schema(self.vtbl.create_options_json)
    }

    fn amend_options(&self) -> Vec<OptDesc> {
        self.schema(self.vtbl.amend_options_json)
    }

    /// The driver's open-option schema (minor 5); empty for older plugins.
    fn open_options(&self) -> Vec<OptDesc> {
        self.schema(self.vtbl.open_options_json)
    }

    fn measure(&self, req: &MeasureRequest) -> Result<MeasureResult> {
        let f = self
            .vtbl
            .measure_json
            .ok_or_else(|| BlockError::unsupported("measure"))?;
        let j = serde_json::to_string(req)
            .map_err(|e| BlockError::invalid("measure", e.to_string()))?;
        let b = collect("measure", |out, err| unsafe {
            f(self.drv.ctx, BcStr::from_str(&j), out, err)
        })?;
        from_json("measure", &b)
    }

    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let f = self
            .vtbl
            .create
            .ok_or_else(|| BlockError::unsupported("create"))?;
        let opts = options_to_json(&options.values);
        let hs = export_host_services(host);
        let r = call("create", |err| unsafe {
            f(
                self.drv.ctx,
                BcStr::from_str(filename),
                BcStr::from_str(&opts),
                hs,
                err,
            )
        });
        release_lent(hs);
        r
    }

    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let f = self
            .vtbl
            .open
            .ok_or_else(|| BlockError::unsupported("open"))?;
        let opts = options_to_json(&req.options);
        let oreq = BcOpenRequest {
            struct_size: std::mem::size_of::<BcOpenRequest>(),
            filename: BcStr::from_str(&req.filename),
            options_json: BcStr::from_str(&opts),
            flags: req.flags.0,
        };
        let hs = export_host_services(host);
        let mut out = BcNode {
            ctx: std::ptr::null_mut(),
            vtbl: std::ptr::null(),
        };
        let r = call("open", |err| unsafe {
            f(self.drv.ctx, &oreq, hs, &mut out, err)
        });
        release_lent(hs);
        r?;
        Ok(Box::new(unsafe {
            ForeignNode::from_raw_minor(out, self.minor)?
        }))
    }
}
