//! The host API table a plugin library was loaded with, kept once per
//! process by the entry point ([`super::plugin::entry`]). It sits below
//! both the exported slots (which answer in the form the loading host's
//! minor reads) and the plugin entry and logger, so neither calls the other.

use super::BcHostApi;
use std::sync::OnceLock;

/// The stored host API table.
pub(crate) struct HostApiRef(pub(crate) BcHostApi);
// SAFETY: the host API table is immutable and its callbacks are thread-safe.
unsafe impl Send for HostApiRef {}
unsafe impl Sync for HostApiRef {}

static HOST_API: OnceLock<HostApiRef> = OnceLock::new();

/// Stores the host API table; true when this call stored it (the first).
pub(crate) fn set_host_api(api: BcHostApi) -> bool {
    HOST_API.set(HostApiRef(api)).is_ok()
}

/// The stored host API table, if a host called the entry point.
pub(crate) fn host_api() -> Option<&'static BcHostApi> {
    HOST_API.get().map(|api| &api.0)
}

/// The ABI minor version of the host this plugin library was loaded by, or
/// `None` when no host called the entry point (then the plugin's own
/// minor applies). Exported slots use it to answer in a form older hosts
/// read correctly.
pub fn host_abi_minor() -> Option<u16> {
    host_api().map(|api| api.abi_minor)
}
