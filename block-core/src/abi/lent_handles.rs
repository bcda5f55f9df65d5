//! The host services handles this side lends across the ABI, counted
//! defensively so that no plugin mistake frees one twice or reaches a
//! freed one.
//!
//! A handle's `ctx` is not a pointer but a number that is never reused,
//! looked up in a process-wide table. The table entry holds the services,
//! whether the host is still lending it (the `open` or `create` call has
//! not returned) and how many references the plugin took with `retain`.
//! The entry goes when both are over. A `release` without a matching
//! `retain` (a plugin releasing the handle it was lent), a `retain` or
//! `release` of a handle that is gone, and any call through a handle that
//! is gone are logged and ignored, or refused with EINVAL: never a
//! use-after-free.

use crate::error::{BlockError, Result};
use crate::host::HostServices;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

struct Entry {
    services: Arc<dyn HostServices>,
    /// The host still lends the handle (its call has not returned).
    lent: bool,
    /// References the plugin took with `retain` and has not released.
    refs: usize,
}

struct Handles {
    next: usize,
    map: BTreeMap<usize, Entry>,
}

static HANDLES: Mutex<Handles> = Mutex::new(Handles {
    next: 1,
    map: BTreeMap::new(),
});

fn handles() -> MutexGuard<'static, Handles> {
    HANDLES.lock().unwrap_or_else(|p| p.into_inner())
}

fn id(ctx: *mut c_void) -> usize {
    ctx as usize
}

/// Registers `services` as lent and returns its `ctx` (never NULL).
pub(crate) fn lend(services: Arc<dyn HostServices>) -> *mut c_void {
    let mut h = handles();
    let id = h.next;
    h.next = h.next.wrapping_add(1).max(1);
    h.map.insert(
        id,
        Entry {
            services,
            lent: true,
            refs: 0,
        },
    );
    id as *mut c_void
}

/// Removes the entry of `id` when neither the host nor the plugin holds it
/// any more; the caller drops what is returned after unlocking (dropping
/// services may close nodes, which may call back into this table).
fn take_if_unused(h: &mut Handles, id: usize) -> Option<Entry> {
    match h.map.get(&id) {
        Some(e) if !e.lent && e.refs == 0 => h.map.remove(&id),
        _ => None,
    }
}

/// The host's call returned: it lends the handle no more.
pub(crate) fn end_lending(ctx: *mut c_void) {
    let gone = {
        let mut h = handles();
        if let Some(e) = h.map.get_mut(&id(ctx)) {
            e.lent = false;
        }
        take_if_unused(&mut h, id(ctx))
    };
    drop(gone);
}

/// The plugin's `retain`: one more reference of its own.
pub(crate) fn retain(ctx: *mut c_void) {
    let mut h = handles();
    match h.map.get_mut(&id(ctx)) {
        Some(e) => e.refs += 1,
        None => log::error!(
            "a plugin retained host services handle {}, which is no longer valid: ignored \
             (calls through it will fail)",
            id(ctx)
        ),
    }
}

/// The plugin's `release`: gives back one reference taken with `retain`.
pub(crate) fn release(ctx: *mut c_void) {
    let gone = {
        let mut h = handles();
        match h.map.get_mut(&id(ctx)) {
            Some(e) if e.refs > 0 => e.refs -= 1,
            Some(_) => log::error!(
                "a plugin released the host services handle lent to its call without having \
                 retained it: ignored (a lent handle stays the host's until the call returns; \
                 call retain to keep it, and release once per retain)"
            ),
            None => log::error!(
                "a plugin released host services handle {}, which is no longer valid \
                 (released more often than retained): ignored",
                id(ctx)
            ),
        }
        take_if_unused(&mut h, id(ctx))
    };
    drop(gone);
}

/// The services behind a live handle.
pub(crate) fn services(op: &str, ctx: *mut c_void) -> Result<Arc<dyn HostServices>> {
    handles()
        .map
        .get(&id(ctx))
        .map(|e| e.services.clone())
        .ok_or_else(|| {
            BlockError::invalid(
                op.to_string(),
                format!(
                    "host services handle {} is no longer valid (released, or not lent by \
                     this host)",
                    id(ctx)
                ),
            )
        })
}

/// Whether a handle is live, and its (lent, plugin references); for tests.
#[cfg(test)]
pub(crate) fn state(ctx: *mut c_void) -> Option<(bool, usize)> {
    handles().map.get(&id(ctx)).map(|e| (e.lent, e.refs))
}

#[cfg(test)]
#[path = "lent_handles_tests.rs"]
mod tests;
