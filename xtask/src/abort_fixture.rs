//! The `panic = "abort"` fixture: the misbehaving plugin compiled with
//! `-C panic=abort`, which the host must refuse to load. `cargo rustc`
//! passes the flag to the plugin crate only (its dependencies stay
//! unwinding, which rustc allows), so nothing else is rebuilt; and the
//! `cfg!(panic = "unwind")` that `export_plugin!` expands in the plugin
//! crate sees the abort strategy, as it would with `panic = "abort"` in a
//! plugin's own profile.

use super::{cargo, copy, lib_name, run};
use std::path::Path;

const KRATE: &str = "misbehaving-plugin";
const NAME: &str = "libmisbehaving_abort.so";

/// Builds the fixture into `fixdir` (from the profile output `out`).
pub fn build(release: bool, out: &Path, fixdir: &Path) -> Result<(), String> {
    let mut c = cargo();
    c.args(["rustc", "--lib", "-p", KRATE]);
    if release {
        c.arg("--release");
    }
    c.args(["--", "-C", "panic=abort"]);
    run(c)?;
    copy(&out.join(lib_name(KRATE)), &fixdir.join(NAME))
}
