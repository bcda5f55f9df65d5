//! Panics across the driver table, in process: a failing probe is an
//! error through `probe_checked` (minor 6) and "not mine" for older
//! tables, and a panic payload whose `Drop` panics is dropped safely.

use super::*;
use crate::driver::{BlockDriver, OpenRequest, ProbeInput};
use crate::error::{BlockError, ErrorKind, Result};
use crate::host::HostServices;
use crate::node::BlockNode;
use crate::types::DriverKind;
use std::sync::Arc;

/// A payload whose `Drop` panics.
struct DropBomb;

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("payload drop");
    }
}

/// A format driver whose probe panics (`panics`) or fails.
struct BadProbe {
    panics: bool,
}

impl BlockDriver for BadProbe {
    fn name(&self) -> &str {
        "badprobe"
    }
    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }
    fn try_probe(&self, _: &ProbeInput<'_>) -> Result<u32> {
        if self.panics {
            std::panic::panic_any(DropBomb);
        }
        Err(BlockError::corrupt("probe", "bad header"))
    }
    fn open(&self, _: &OpenRequest, _: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        Err(BlockError::unsupported("open"))
    }
}

fn input() -> ProbeInput<'static> {
    ProbeInput {
        head: b"BAD",
        tail: b"",
        file_size: 3,
        filename: "x.img",
    }
}

/// The driver exported and imported again, its table cut to `minor`.
fn imported(d: BadProbe, minor: u16) -> import::ForeignDriver {
    let d = export::export_driver(Arc::new(d));
    let mut t = unsafe { *d.vtbl };
    t.struct_size = BcDriverVtbl::size_at_minor(minor);
    let cut = BcDriver {
        ctx: d.ctx,
        vtbl: Box::leak(Box::new(t)),
    };
    unsafe { import::ForeignDriver::from_raw(cut) }.unwrap()
}

#[test]
fn a_payload_whose_drop_panics_is_dropped_safely() {
    let p = std::panic::catch_unwind(|| std::panic::panic_any(DropBomb)).unwrap_err();
    drop_payload(p);
    let rc = unsafe {
        guard(std::ptr::null(), "flush", || {
            std::panic::panic_any(DropBomb)
        })
    };
    assert_eq!(rc, -libc::EIO);
}

#[test]
fn a_failing_probe_is_an_error_through_probe_checked() {
    for panics in [false, true] {
        let f = imported(BadProbe { panics }, BLK_ABI_MINOR);
        let e = f.try_probe(&input()).unwrap_err();
        if panics {
            assert_eq!(e.kind, ErrorKind::Io);
            assert!(e.message.contains("driver panicked"), "{e}");
        } else {
            assert_eq!(e.kind, ErrorKind::Corrupt, "{e}");
            assert!(e.message.contains("bad header"), "{e}");
        }
        // The plain slot, as hosts before minor 6 call it: "not mine".
        assert_eq!(f.probe(&input()), 0);
    }
}

#[test]
fn a_table_without_probe_checked_probes_as_before() {
    let f = imported(BadProbe { panics: true }, 5);
    assert_eq!(f.try_probe(&input()).unwrap(), 0);
}

#[test]
fn the_registry_names_the_driver_whose_probe_failed() {
    let mut reg = crate::Registry::empty();
    reg.add(
        Arc::new(imported(BadProbe { panics: false }, BLK_ABI_MINOR)),
        crate::DriverOrigin::Plugin {
            path: "/plugins/libbad.so".into(),
            abi: (1, 6),
        },
    );
    let e = reg.probe(&input()).err().expect("probe fails");
    let m = e.to_string();
    assert!(
        m.contains("'badprobe'") && m.contains("/plugins/libbad.so"),
        "{m}"
    );
    assert_eq!(e.file.as_deref(), Some("x.img"));
}
