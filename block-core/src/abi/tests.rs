//! Round trips through the tables: a node or driver exported by this build
//! and imported again, whole (a 1.5 peer) and cut to an older minor's
//! table size (what an older plugin sends).

use super::*;
use crate::control::CheckControl;
use crate::driver::{BlockDriver, OpenRequest};
use crate::error::Result;
use crate::host::HostServices;
use crate::info::{CheckReport, NodeInfo};
use crate::limits::{IoLimits, NodeCapabilities, ThreadModel};
use crate::node::BlockNode;
use crate::options::{OptDesc, OptKind};
use crate::types::{CheckMode, DriverKind, ReqFlags};
use std::io::{IoSlice, IoSliceMut};
use std::sync::Arc;

/// A node with unusual limits and capabilities that offers check only.
struct Probe;

const LIMITS: IoLimits = IoLimits {
    request_alignment: 4096,
    max_transfer: 1 << 20,
    optimal_transfer: 65536,
    max_discard: 1 << 30,
};

const CAPS: NodeCapabilities = NodeCapabilities {
    can_zero: true,
    can_fast_zero: false,
    can_fua: true,
    can_discard: false,
    multi_conn_safe: true,
    thread_model: ThreadModel::SerializeRequests,
};

impl BlockNode for Probe {
    fn read_vectored(&self, _: u64, bufs: &mut [IoSliceMut<'_>], _: ReqFlags) -> Result<()> {
        bufs.iter_mut().for_each(|b| b.fill(7));
        Ok(())
    }
    fn write_vectored(&self, _: u64, _: &[IoSlice<'_>], _: ReqFlags) -> Result<()> {
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn length(&self) -> Result<u64> {
        Ok(1 << 20)
    }
    fn info(&self) -> Result<NodeInfo> {
        Err(crate::BlockError::unsupported("info"))
    }
    fn limits(&self) -> IoLimits {
        LIMITS
    }
    fn capabilities(&self) -> NodeCapabilities {
        CAPS
    }
    fn check_control(&self) -> Option<&dyn CheckControl> {
        Some(self)
    }
}

/// The error of Probe's repairing check: stopped after two findings.
fn stopped() -> crate::BlockError {
    let mut r = CheckReport::default();
    r.push_finding(
        crate::FindingKind::Leak,
        Some(65536),
        "Leaked cluster 1".into(),
    );
    r.push_finding(
        crate::FindingKind::CheckError,
        None,
        "ERROR need to rebuild".into(),
    );
    crate::BlockError::io("check", "need to rebuild").with_source(crate::CheckStopped {
        findings: r.findings,
    })
}

impl CheckControl for Probe {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        if mode == CheckMode::FIX_LEAKS {
            return Err(stopped());
        }
        Ok(CheckReport::default())
    }
}

/// A stopped check's findings cross with its error, whose message reads
/// as linked in (the findings are not appended as source text).
#[test]
fn a_stopped_check_crosses_with_its_findings() {
    let n = unsafe { ForeignNode::from_raw(export_node(Arc::new(Probe))) }.unwrap();
    let e = n
        .check_control()
        .unwrap()
        .check(CheckMode::FIX_LEAKS)
        .unwrap_err();
    let want = stopped();
    assert_eq!(
        (e.kind, &e.op, &e.message),
        (want.kind, &want.op, &want.message)
    );
    let got = e
        .source
        .as_ref()
        .and_then(|s| s.downcast_ref::<crate::CheckStopped>());
    let want = want
        .source
        .as_ref()
        .and_then(|s| s.downcast_ref::<crate::CheckStopped>());
    assert_eq!(got, want);
    assert_eq!(got.unwrap().findings.len(), 2);
    // An error without findings crosses without a source.
    assert!(receive_none().source.is_none());
}

fn receive_none() -> crate::BlockError {
    super::json::receive_check_stopped(crate::BlockError::io("check", "x"), b"")
}

/// `n`'s exported handle with its table cut to what a producer of
/// `minor` sends.
fn as_minor(n: BcNode, minor: u16) -> BcNode {
    let mut t = unsafe { *n.vtbl };
    t.struct_size = BcNodeVtbl::size_at_minor(minor);
    BcNode {
        ctx: n.ctx,
        vtbl: Box::leak(Box::new(t)),
    }
}

#[test]
fn a_1_5_node_answers_exactly() {
    let n = unsafe { ForeignNode::from_raw(export_node(Arc::new(Probe))) }.unwrap();
    assert_eq!(n.limits(), LIMITS);
    assert_eq!(n.capabilities(), CAPS);
    assert!(n.check_control().is_some());
    // Every slot exists in the exported table, yet only check is offered.
    assert!(n.snapshots().is_none());
    assert!(n.amend_control().is_none());
    assert!(n.migration().is_none());
    assert!(n.backing_control().is_none());
    assert!(n.bitmap_control().is_none());
    assert_eq!(n.control_mask(), BcControlMask::CHECK);
    assert!(n.check_control().unwrap().check(CheckMode(0)).is_ok());
}

#[test]
fn older_nodes_fall_back_to_slot_presence() {
    for minor in 1..=4 {
        let n = unsafe { ForeignNode::from_raw(as_minor(export_node(Arc::new(Probe)), minor)) }
            .unwrap();
        assert_eq!(n.limits(), IoLimits::default(), "minor {minor}");
        let c = n.capabilities();
        assert!(c.can_zero && c.can_discard && !c.can_fua && !c.multi_conn_safe);
        assert_eq!(c.thread_model, ThreadModel::Parallel);
        assert!(n.snapshots().is_some() && n.check_control().is_some());
        assert_eq!(n.bitmap_control().is_some(), minor >= 3);
        // A slot the node does not back still answers Unsupported.
        let e = n.snapshots().unwrap().snapshot_list().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Unsupported);
    }
    let n = unsafe { ForeignNode::from_raw(as_minor(export_node(Arc::new(Probe)), 0)) }.unwrap();
    assert!(n.check_control().is_none() && !n.capabilities().can_zero);
}

/// A receiver that knows fewer fields gets only those written.
#[test]
fn out_tables_are_written_up_to_the_receivers_size() {
    let mut small = [usize::MAX; 3];
    small[0] = std::mem::size_of::<usize>() + 8;
    let v = BcIoLimits {
        struct_size: 40,
        request_alignment: 512,
        reserved: 0,
        max_transfer: 9,
        optimal_transfer: 10,
        max_discard: 11,
    };
    unsafe { write_table(small.as_mut_ptr() as *mut BcIoLimits, &v) };
    assert_eq!(small[0], 16);
    assert_eq!(small[1], 512);
    assert_eq!(small[2], usize::MAX);
}

struct OptDriver;

impl BlockDriver for OptDriver {
    fn name(&self) -> &str {
        "optdrv"
    }
    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }
    fn open_options(&self) -> Vec<OptDesc> {
        vec![OptDesc::new(
            "cache-size",
            OptKind::Size,
            Some("1M"),
            "metadata cache size",
        )]
    }
    fn open(&self, _: &OpenRequest, _: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        Ok(Box::new(Probe))
    }
}

#[test]
fn open_options_cross_the_driver_table() {
    let d = export::export_driver(Arc::new(OptDriver));
    let f = unsafe { import::ForeignDriver::from_raw(d) }.unwrap();
    assert_eq!(f.open_options(), OptDriver.open_options());
    // A 1.4 plugin's driver table has no schema slot: no options.
    let mut t = unsafe { *d.vtbl };
    t.struct_size = BcDriverVtbl::size_at_minor(4);
    let old = BcDriver {
        ctx: d.ctx,
        vtbl: Box::leak(Box::new(t)),
    };
    let f = unsafe { import::ForeignDriver::from_raw(old) }.unwrap();
    assert!(f.open_options().is_empty());
}
