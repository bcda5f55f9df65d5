//! C → Rust: wraps C tables received across the ABI back into the safe
//! traits. Missing slots become "unsupported" errors.

use super::export::{export_host_services, options_to_json};
use super::*;
use crate::control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
use crate::driver::{BlockDriver, OpenRequest, ProbeInput};
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::{ChildRequest, ChildRole, HostServices};
use crate::info::{CheckReport, MeasureRequest, MeasureResult, NodeInfo, SnapshotInfo};
use crate::node::BlockNode;
use crate::options::{OptDesc, OptionValues};
use crate::types::{
    CheckMode, DriverCaps, DriverKind, Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;

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
fn call(op: &str, f: impl FnOnce(*const BcErrSink) -> i32) -> Result<()> {
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

unsafe extern "C" fn str_push(ctx: *mut c_void, s: BcStr) {
    if !ctx.is_null() {
        (*(ctx as *mut Vec<u8>)).extend_from_slice(s.as_bytes());
    }
}

/// Calls `f` with a fresh string sink and returns what it pushed.
fn collect(op: &str, f: impl FnOnce(*const BcStrSink, *const BcErrSink) -> i32) -> Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    let sink = BcStrSink {
        ctx: &mut buf as *mut Vec<u8> as *mut c_void,
        push: str_push,
    };
    call(op, |err| f(&sink, err))?;
    Ok(buf)
}

/// Reads a string through a sink-only slot.
fn collect_plain(f: impl FnOnce(*const BcStrSink)) -> String {
    let mut buf: Vec<u8> = Vec::new();
    let sink = BcStrSink {
        ctx: &mut buf as *mut Vec<u8> as *mut c_void,
        push: str_push,
    };
    f(&sink);
    String::from_utf8_lossy(&buf).into_owned()
}

fn from_json<T: serde::de::DeserializeOwned>(op: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| BlockError::io(op, format!("driver returned a malformed result: {e}")))
}

fn iovecs_mut(bufs: &mut [IoSliceMut<'_>]) -> Vec<BcIoVec> {
    bufs.iter_mut()
        .map(|b| BcIoVec {
            ptr: b.as_mut_ptr(),
            len: b.len(),
        })
        .collect()
}

fn iovecs(bufs: &[IoSlice<'_>]) -> Vec<BcIoVec> {
    bufs.iter()
        .map(|b| BcIoVec {
            ptr: b.as_ptr() as *mut u8,
            len: b.len(),
        })
        .collect()
}

// ---------------------------------------------------------------- nodes

/// A node received across the ABI. Closing happens on drop.
pub struct ForeignNode {
    ctx: *mut c_void,
    vtbl: BcNodeVtbl,
}

// SAFETY: the ABI requires nodes to be callable from any thread at once;
// exported nodes are `Arc<dyn BlockNode>` whose trait is Send + Sync.
unsafe impl Send for ForeignNode {}
unsafe impl Sync for ForeignNode {}

impl ForeignNode {
    /// Takes ownership of a node handle.
    ///
    /// # Safety
    /// `n` must be a valid node handle produced by a conforming peer.
    pub unsafe fn from_raw(n: BcNode) -> Result<ForeignNode> {
        let vtbl = copy_table(n.vtbl)
            .ok_or_else(|| BlockError::new(ErrorKind::AbiMismatch, "open", "node has no vtable"))?;
        if vtbl.close.is_none() || vtbl.read.is_none() {
            return Err(BlockError::new(
                ErrorKind::AbiMismatch,
                "open",
                "node vtable lacks the required close/read slots",
            ));
        }
        Ok(ForeignNode { ctx: n.ctx, vtbl })
    }
}

impl Drop for ForeignNode {
    fn drop(&mut self) {
        if let Some(close) = self.vtbl.close {
            unsafe { close(self.ctx) }
        }
    }
}

macro_rules! slot {
    ($self:ident, $name:ident, $op:expr) => {
        match $self.vtbl.$name {
            Some(f) => f,
            None => return Err(BlockError::unsupported($op)),
        }
    };
}

impl BlockNode for ForeignNode {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        flags: ReqFlags,
    ) -> Result<()> {
        let f = slot!(self, read, "read");
        let v = iovecs_mut(bufs);
        call("read", |err| unsafe {
            f(self.ctx, offset, v.as_ptr(), v.len(), flags.0, err)
        })
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let f = slot!(self, write, "write");
        let v = iovecs(bufs);
        call("write", |err| unsafe {
            f(self.ctx, offset, v.as_ptr(), v.len(), flags.0, err)
        })
    }

    fn flush(&self) -> Result<()> {
        let f = slot!(self, flush, "flush");
        call("flush", |err| unsafe { f(self.ctx, err) })
    }

    fn length(&self) -> Result<u64> {
        let f = slot!(self, length, "length");
        let mut out = 0u64;
        call("length", |err| unsafe { f(self.ctx, &mut out, err) })?;
        Ok(out)
    }

    fn info(&self) -> Result<NodeInfo> {
        let f = slot!(self, info_json, "info");
        let b = collect("info", |out, err| unsafe { f(self.ctx, out, err) })?;
        from_json("info", &b)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let f = slot!(self, discard, "discard");
        call("discard", |err| unsafe { f(self.ctx, offset, len, err) })
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        let f = slot!(self, write_zeroes, "write_zeroes");
        call("write_zeroes", |err| unsafe {
            f(self.ctx, offset, len, flags.0, err)
        })
    }

    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        let f = slot!(self, truncate, "truncate");
        call("truncate", |err| unsafe {
            f(self.ctx, size, prealloc as u32, err)
        })
    }

    fn allocated_size(&self) -> Result<u64> {
        let f = slot!(self, allocated_size, "allocated_size");
        let mut out = 0u64;
        call("allocated_size", |err| unsafe {
            f(self.ctx, &mut out, err)
        })?;
        Ok(out)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let Some(f) = self.vtbl.block_status else {
            return Ok(Extent {
                length: len,
                flags: ExtentFlags::DATA.with(ExtentFlags::ALLOCATED),
                mapped_offset: 0,
                mapped_child: ChildRole::File,
            });
        };
        let mut out = BcExtent::default();
        call("block_status", |err| unsafe {
            f(self.ctx, offset, len, &mut out, err)
        })?;
        if out.length == 0 || out.length > len {
            return Err(BlockError::io(
                "block_status",
                format!(
                    "driver returned an extent of {} bytes for a {len}-byte query",
                    out.length
                ),
            )
            .at(offset));
        }
        let flags = ExtentFlags(out.flags);
        let mapped_child = match ChildRole::from_u32(out.mapped_child) {
            Some(r @ (ChildRole::File | ChildRole::DataFile)) => r,
            _ if !flags.contains(ExtentFlags::OFFSET_VALID) => ChildRole::File,
            _ => {
                return Err(BlockError::io(
                    "block_status",
                    format!(
                    "driver returned an offset into child {}, which is neither file nor data-file",
                    out.mapped_child
                ),
                )
                .at(offset))
            }
        };
        Ok(Extent {
            length: out.length,
            flags,
            mapped_offset: out.mapped_offset,
            mapped_child,
        })
    }

    fn has_zero_init(&self) -> bool {
        match self.vtbl.has_zero_init {
            Some(f) => unsafe { f(self.ctx) == 1 },
            None => false,
        }
    }

    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        self.vtbl
            .snapshot_list_json
            .map(|_| self as &dyn SnapshotControl)
    }

    fn check_control(&self) -> Option<&dyn CheckControl> {
        self.vtbl.check_json.map(|_| self as &dyn CheckControl)
    }

    fn amend_control(&self) -> Option<&dyn AmendControl> {
        self.vtbl.amend_json.map(|_| self as &dyn AmendControl)
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        let v = &self.vtbl;
        (v.invalidate_cache.is_some() || v.inactivate.is_some() || v.activate.is_some())
            .then_some(self as &dyn MigrationControl)
    }

    fn backing_control(&self) -> Option<&dyn BackingControl> {
        (self.vtbl.change_backing_file.is_some() || self.vtbl.make_empty.is_some())
            .then_some(self as &dyn BackingControl)
    }

    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        self.vtbl.bitmap_json.map(|_| self as &dyn BitmapControl)
    }
}

impl SnapshotControl for ForeignNode {
    fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        let f = slot!(self, snapshot_list_json, "snapshot_list");
        let b = collect("snapshot_list", |out, err| unsafe { f(self.ctx, out, err) })?;
        from_json("snapshot_list", &b)
    }

    fn snapshot_create(&self, name: &str) -> Result<()> {
        let f = slot!(self, snapshot_create, "snapshot_create");
        call("snapshot_create", |err| unsafe {
            f(self.ctx, BcStr::from_str(name), err)
        })
    }

    fn snapshot_apply(&self, id_or_name: &str) -> Result<()> {
        let f = slot!(self, snapshot_apply, "snapshot_apply");
        call("snapshot_apply", |err| unsafe {
            f(self.ctx, BcStr::from_str(id_or_name), err)
        })
    }

    fn snapshot_delete(&self, id_or_name: &str) -> Result<()> {
        let f = slot!(self, snapshot_delete, "snapshot_delete");
        call("snapshot_delete", |err| unsafe {
            f(self.ctx, BcStr::from_str(id_or_name), err)
        })
    }
}

impl CheckControl for ForeignNode {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        let f = slot!(self, check_json, "check");
        let b = collect("check", |out, err| unsafe { f(self.ctx, mode.0, out, err) })?;
        from_json("check", &b)
    }
}

impl AmendControl for ForeignNode {
    fn amend(&self, options: &[(String, String)]) -> Result<()> {
        let f = slot!(self, amend_json, "amend");
        let j = options_to_json(options);
        call("amend", |err| unsafe {
            f(self.ctx, BcStr::from_str(&j), err)
        })
    }
}

impl BackingControl for ForeignNode {
    fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()> {
        let f = slot!(self, change_backing_file, "change_backing_file");
        call("change_backing_file", |err| unsafe {
            f(
                self.ctx,
                BcStr::from_opt(filename),
                BcStr::from_opt(format),
                err,
            )
        })
    }

    fn make_empty(&self) -> Result<()> {
        let f = slot!(self, make_empty, "make_empty");
        call("make_empty", |err| unsafe { f(self.ctx, err) })
    }
}

impl BitmapControl for ForeignNode {
    fn bitmap(&self, request: &str) -> Result<String> {
        let f = slot!(self, bitmap_json, "bitmap");
        let b = collect("bitmap", |out, err| unsafe {
            f(self.ctx, BcStr::from_str(request), out, err)
        })?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
}

impl MigrationControl for ForeignNode {
    fn invalidate_cache(&self) -> Result<()> {
        let f = slot!(self, invalidate_cache, "invalidate_cache");
        call("invalidate_cache", |err| unsafe { f(self.ctx, err) })
    }

    fn inactivate(&self) -> Result<()> {
        match self.vtbl.inactivate {
            Some(f) => call("inactivate", |err| unsafe { f(self.ctx, err) }),
            // The host flushed the node before inactivating it.
            None => Ok(()),
        }
    }

    fn activate(&self) -> Result<()> {
        match self.vtbl.activate {
            Some(f) => call("activate", |err| unsafe { f(self.ctx, err) }),
            None => self.invalidate_cache(),
        }
    }
}

// ---------------------------------------------------------------- host services

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
        let vtbl = copy_table(h.vtbl).ok_or_else(|| {
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
            role: req.role as u32,
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
        Ok(Arc::new(unsafe { ForeignNode::from_raw(out)? }))
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
}

// SAFETY: drivers are `Arc<dyn BlockDriver>` (Send + Sync) on the exporting side.
unsafe impl Send for ForeignDriver {}
unsafe impl Sync for ForeignDriver {}

impl ForeignDriver {
    /// Wraps a driver handle, reading its identity.
    ///
    /// # Safety
    /// `d` must be a valid driver handle that lives for the rest of the process.
    pub unsafe fn from_raw(d: BcDriver) -> Result<ForeignDriver> {
        let bad = |m: &str| BlockError::new(ErrorKind::AbiMismatch, "load plugin", m.to_string());
        let vtbl = copy_table(d.vtbl).ok_or_else(|| bad("driver has no vtable"))?;
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
        let sink = BcStrSink {
            ctx: &mut buf as *mut Vec<u8> as *mut c_void,
            push: str_push,
        };
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
        let Some(f) = self.vtbl.probe else { return 0 };
        let pi = BcProbeInput {
            struct_size: std::mem::size_of::<BcProbeInput>(),
            head: BcStr::from_bytes(input.head),
            tail: BcStr::from_bytes(input.tail),
            file_size: input.file_size,
            filename: BcStr::from_str(input.filename),
        };
        unsafe { f(self.drv.ctx, &pi) }.min(100)
    }

    fn create_options(&self) -> Vec<OptDesc> {
        self.schema(self.vtbl.create_options_json)
    }

    fn amend_options(&self) -> Vec<OptDesc> {
        self.schema(self.vtbl.amend_options_json)
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
        Ok(Box::new(unsafe { ForeignNode::from_raw(out)? }))
    }
}

fn release_lent(hs: BcHostServices) {
    unsafe {
        if let Some(release) = (*hs.vtbl).release {
            release(hs.ctx)
        }
    }
}
