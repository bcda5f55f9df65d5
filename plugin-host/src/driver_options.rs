//! Driver option discovery: what an embedder may pass to a driver's
//! `open` (qcow2's `l2-cache-size`, raw's `offset`, ...), with types,
//! defaults and help, for linked-in drivers and plugin libraries alike (a
//! plugin answers through the ABI's `open_options_json` slot, minor 5;
//! older plugins declare none).

use crate::host::Host;
use block_core::{BlockError, ErrorKind, OptDesc, Result};

impl Host {
    /// The open options driver `name` declares (`OpenOptions::options`
    /// takes them as `key=value`); a driver that is not registered is a
    /// NotFound error.
    pub fn driver_open_options(&self, name: &str) -> Result<Vec<OptDesc>> {
        let d = self.registry().get(name).ok_or_else(|| {
            BlockError::new(ErrorKind::NotFound, "", format!("Unknown driver '{name}'"))
        })?;
        Ok(d.driver.open_options())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_in_drivers_declare_their_open_options() {
        let host = Host::builder().env_plugin_path(false).build().unwrap();
        let names = |d: &str| -> Vec<String> {
            host.driver_open_options(d)
                .unwrap()
                .into_iter()
                .map(|o| o.name)
                .collect()
        };
        assert_eq!(
            names("qcow2"),
            [
                "cache-size",
                "l2-cache-size",
                "refcount-cache-size",
                "snapshot.id",
                "snapshot.name"
            ]
        );
        assert_eq!(names("raw"), ["offset", "size"]);
        assert_eq!(names("file"), ["locking", "aio"]);
        assert_eq!(names("null-co"), ["size", "read-zeroes"]);
        let e = host.driver_open_options("nope").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
    }
}
