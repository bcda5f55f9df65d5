//! C → Rust for nodes: wraps a [`BcNode`] received across the ABI back into
//! [`BlockNode`] and its capability traits. Missing slots become
//! "unsupported" errors (or the documented fallback).

use super::checks::copy_peer_table;
use super::errors::call;
use super::json::{from_json, options_to_json};
use super::sinks::collect;
use super::*;
use crate::control::{
    AmendControl, BackingControl, BitmapControl, CheckControl, MigrationControl, SnapshotControl,
};
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::ChildRole;
use crate::info::{CheckReport, NodeInfo, SnapshotInfo};
use crate::limits::{IoLimits, NodeCapabilities, ThreadModel};
use crate::node::BlockNode;
use crate::types::{CheckMode, Extent, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};

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

/// A node received across the ABI. Closing happens on drop.
pub struct ForeignNode {
    ctx: *mut c_void,
    vtbl: BcNodeVtbl,
    /// What the capability accessors answer: the node's own
    /// [`BcControlMask`] (minor 5), else derived from slot presence.
    controls: u64,
}

// SAFETY: the ABI requires nodes to be callable from any thread at once;
// exported nodes are `Arc<dyn BlockNode>` whose trait is Send + Sync.
unsafe impl Send for ForeignNode {}
unsafe impl Sync for ForeignNode {}

/// The [`BcControlMask`] an older (pre-1.5) table implies: a capability is
/// offered when any of its slots is present.
pub(crate) fn controls_from_slots(v: &BcNodeVtbl) -> u64 {
    let mut m = 0;
    let mut set = |present: bool, bit: u64| {
        if present {
            m |= bit
        }
    };
    set(v.snapshot_list_json.is_some(), BcControlMask::SNAPSHOTS);
    set(v.check_json.is_some(), BcControlMask::CHECK);
    set(v.amend_json.is_some(), BcControlMask::AMEND);
    set(
        v.invalidate_cache.is_some() || v.inactivate.is_some() || v.activate.is_some(),
        BcControlMask::MIGRATION,
    );
    set(
        v.change_backing_file.is_some() || v.make_empty.is_some(),
        BcControlMask::BACKING,
    );
    set(v.bitmap_json.is_some(), BcControlMask::BITMAPS);
    m
}

/// `IoLimits` from ABI form (0 alignment reads as 1).
pub(crate) fn limits_from_abi(l: &BcIoLimits) -> IoLimits {
    IoLimits {
        request_alignment: l.request_alignment.max(1),
        max_transfer: l.max_transfer,
        optimal_transfer: l.optimal_transfer,
        max_discard: l.max_discard,
    }
}

/// `NodeCapabilities` from ABI form (unknown thread models serialise).
pub(crate) fn caps_from_abi(c: &BcNodeCaps) -> NodeCapabilities {
    let on = |bit| c.flags & bit != 0;
    NodeCapabilities {
        can_zero: on(BcNodeCaps::CAN_ZERO),
        can_fast_zero: on(BcNodeCaps::CAN_FAST_ZERO),
        can_fua: on(BcNodeCaps::CAN_FUA),
        can_discard: on(BcNodeCaps::CAN_DISCARD),
        multi_conn_safe: on(BcNodeCaps::MULTI_CONN_SAFE),
        thread_model: match c.thread_model {
            0 => ThreadModel::Parallel,
            _ => ThreadModel::SerializeRequests,
        },
    }
}

impl ForeignNode {
    /// Takes ownership of a node handle from a peer of this build's minor.
    ///
    /// # Safety
    /// As [`ForeignNode::from_raw_minor`].
    pub unsafe fn from_raw(n: BcNode) -> Result<ForeignNode> {
        ForeignNode::from_raw_minor(n, BLK_ABI_MINOR)
    }

    /// Takes ownership of a node handle from a peer that declared ABI
    /// minor `peer_minor`: a vtable whose `struct_size` claims more than
    /// that minor defines (or a size between two minors') is refused, and
    /// the node is then closed through the slot that minor 0 defines.
    ///
    /// # Safety
    /// `n` must be a valid node handle whose vtable is readable for the
    /// smaller of its `struct_size` and the size `peer_minor` defines.
    pub unsafe fn from_raw_minor(n: BcNode, peer_minor: u16) -> Result<ForeignNode> {
        let checked = copy_peer_table(
            "node vtable (BcNodeVtbl)",
            n.vtbl,
            peer_minor,
            BcNodeVtbl::size_at_minor,
        );
        let vtbl = match checked {
            Ok(v) => v,
            Err(e) => {
                close_refused(n);
                return Err(e.with_op("open"));
            }
        }
        .ok_or_else(|| BlockError::new(ErrorKind::AbiMismatch, "open", "node has no vtable"))?;
        if vtbl.close.is_none() || vtbl.read.is_none() {
            return Err(BlockError::new(
                ErrorKind::AbiMismatch,
                "open",
                "node vtable lacks the required close/read slots",
            ));
        }
        let controls = match vtbl.control_mask {
            // A control is offered only when the node says so and its
            // slots exist (a lying mask cannot reach a NULL slot).
            Some(f) => f(n.ctx) & controls_from_slots(&vtbl),
            None => controls_from_slots(&vtbl),
        };
        Ok(ForeignNode {
            ctx: n.ctx,
            vtbl,
            controls,
        })
    }

    /// The [`BcControlMask`] bits this node offers.
    pub fn control_mask(&self) -> u64 {
        self.controls
    }

    fn offers(&self, bit: u64) -> bool {
        self.controls & bit != 0
    }
}

/// Closes a node whose table was refused, through the minor-0 `close`
/// slot (which every table has) when the table has one.
unsafe fn close_refused(n: BcNode) {
    if n.vtbl.is_null() || n.ctx.is_null() {
        return;
    }
    let size = *(n.vtbl as *const usize);
    if size >= std::mem::offset_of!(BcNodeVtbl, close) + std::mem::size_of::<usize>() {
        if let Some(close) = (*n.vtbl).close {
            close(n.ctx)
        }
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
            Some(r) if r.holds_data() => r,
            _ if !flags.contains(ExtentFlags::OFFSET_VALID) => ChildRole::File,
            _ => {
                return Err(BlockError::io(
                    "block_status",
                    format!(
                        "driver returned an offset into child {}, which is neither file nor \
                         data-file nor an extent",
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

    /// The node's own limits (minor 5); older plugins: no constraints.
    fn limits(&self) -> IoLimits {
        let Some(f) = self.vtbl.limits else {
            return IoLimits::default();
        };
        let mut out = BcIoLimits {
            struct_size: std::mem::size_of::<BcIoLimits>(),
            ..BcIoLimits::default()
        };
        match unsafe { f(self.ctx, &mut out) } {
            0 => limits_from_abi(&out),
            _ => IoLimits::default(),
        }
    }

    /// The node's own capabilities (minor 5); older plugins: what the
    /// slots they have imply (`write_zeroes` and `discard` present), no
    /// FUA, fast zero or multi-conn claims, parallel (the ABI's rule).
    fn capabilities(&self) -> NodeCapabilities {
        let fallback = NodeCapabilities {
            can_zero: self.vtbl.write_zeroes.is_some(),
            can_discard: self.vtbl.discard.is_some(),
            ..NodeCapabilities::default()
        };
        let Some(f) = self.vtbl.capabilities else {
            return fallback;
        };
        let mut out = BcNodeCaps {
            struct_size: std::mem::size_of::<BcNodeCaps>(),
            ..BcNodeCaps::default()
        };
        match unsafe { f(self.ctx, &mut out) } {
            0 => caps_from_abi(&out),
            _ => fallback,
        }
    }

    fn snapshots(&self) -> Option<&dyn SnapshotControl> {
        self.offers(BcControlMask::SNAPSHOTS)
            .then_some(self as &dyn SnapshotControl)
    }

    fn check_control(&self) -> Option<&dyn CheckControl> {
        self.offers(BcControlMask::CHECK)
            .then_some(self as &dyn CheckControl)
    }

    fn amend_control(&self) -> Option<&dyn AmendControl> {
        self.offers(BcControlMask::AMEND)
            .then_some(self as &dyn AmendControl)
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        self.offers(BcControlMask::MIGRATION)
            .then_some(self as &dyn MigrationControl)
    }

    fn backing_control(&self) -> Option<&dyn BackingControl> {
        self.offers(BcControlMask::BACKING)
            .then_some(self as &dyn BackingControl)
    }

    fn bitmap_control(&self) -> Option<&dyn BitmapControl> {
        self.offers(BcControlMask::BITMAPS)
            .then_some(self as &dyn BitmapControl)
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
        let mut buf = Vec::new();
        let out = super::sinks::sink_into(&mut buf);
        match call("check", |err| unsafe { f(self.ctx, mode.0, &out, err) }) {
            Ok(()) => from_json("check", &buf),
            Err(e) => Err(super::json::receive_check_stopped(e, &buf)),
        }
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
