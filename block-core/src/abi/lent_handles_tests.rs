//! Unit tests of `abi::lent_handles`, through the exported vtable as a
//! plugin would call it.

use super::state;
use crate::abi::{export_host_services, release_lent, BcHostServices, BcStr, ForeignHostServices};
use crate::error::{ErrorKind, Result};
use crate::host::{ChildRequest, HostServices};
use crate::node::BlockNode;
use crate::types::Preallocation;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Host services counting `create_file` calls.
struct Counting(AtomicUsize);

impl HostServices for Counting {
    fn open_child(&self, _req: &ChildRequest) -> Result<Arc<dyn BlockNode>> {
        Err(crate::BlockError::unsupported("open child"))
    }
    fn create_file(&self, _f: &str, _s: u64, _p: Preallocation) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn slots(h: &BcHostServices) -> &crate::abi::BcHostServicesVtbl {
    unsafe { &*h.vtbl }
}

fn create_file(h: &BcHostServices) -> i32 {
    let f = slots(h).create_file.unwrap();
    unsafe { f(h.ctx, BcStr::from_str("x"), 0, 0, std::ptr::null()) }
}

fn lent() -> (Arc<Counting>, BcHostServices) {
    let s = Arc::new(Counting(AtomicUsize::new(0)));
    let h = export_host_services(s.clone());
    (s, h)
}

/// A plugin releasing the handle it was lent (without a retain) changes
/// nothing: the handle works until the call returns, then goes once.
#[test]
fn releasing_a_lent_handle_is_ignored() {
    let (s, h) = lent();
    unsafe { slots(&h).release.unwrap()(h.ctx) };
    unsafe { slots(&h).release.unwrap()(h.ctx) };
    assert_eq!(state(h.ctx), Some((true, 0)));
    assert_eq!(create_file(&h), 0);
    assert_eq!(s.0.load(Ordering::SeqCst), 1);
    release_lent(h);
    assert_eq!(state(h.ctx), None);
    assert_eq!(Arc::strong_count(&s), 1, "the services were dropped once");
    // Every call through the gone handle is refused or ignored.
    assert_eq!(create_file(&h), -libc::EINVAL);
    unsafe { slots(&h).release.unwrap()(h.ctx) };
    unsafe { slots(&h).retain.unwrap()(h.ctx) };
    assert_eq!(state(h.ctx), None);
}

/// A retained reference outlives the lending and goes with its release.
#[test]
fn retained_references_outlive_the_call() {
    let (s, h) = lent();
    let kept = unsafe { ForeignHostServices::retain(h) }.unwrap();
    assert_eq!(state(h.ctx), Some((true, 1)));
    release_lent(h);
    assert_eq!(state(h.ctx), Some((false, 1)));
    kept.create_file("y", 0, Preallocation::Off).unwrap();
    assert_eq!(s.0.load(Ordering::SeqCst), 1);
    drop(kept);
    assert_eq!(state(h.ctx), None);
    assert_eq!(Arc::strong_count(&s), 1);
    let e = (unsafe { ForeignHostServices::retain(h) })
        .unwrap()
        .create_file("z", 0, Preallocation::Off)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.to_string().contains("no longer valid"), "{e}");
}
