//! The driver registry: linked-in drivers collected with `inventory`, plus
//! drivers a host adds from plugin libraries.
//!
//! Rule for duplicate names: the first registration of a name wins and every
//! later one is skipped with a warning. Hosts register linked-in drivers
//! first, then plugin libraries in the order given (directories sorted by file
//! name), so a linked-in driver always shadows a plugin of the same name.

use crate::driver::{BlockDriver, ProbeInput};
use crate::error::{BlockError, Result};
use crate::types::DriverKind;
use std::path::PathBuf;
use std::sync::Arc;

/// A linked-in driver registration, submitted with [`crate::register_driver!`].
pub struct DriverRegistration {
    /// Builds the driver.
    pub factory: fn() -> Arc<dyn BlockDriver>,
}

inventory::collect!(DriverRegistration);

/// Registers a linked-in driver: `register_driver!(MyDriver::new())`.
#[macro_export]
macro_rules! register_driver {
    ($ctor:expr) => {
        $crate::inventory::submit! {
            $crate::registry::DriverRegistration {
                factory: || ::std::sync::Arc::new($ctor),
            }
        }
    };
}

/// Where a registered driver came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverOrigin {
    /// Linked into the host binary.
    Static,
    /// Loaded from a plugin library.
    Plugin {
        /// The library file.
        path: PathBuf,
        /// The plugin's ABI version (major, minor).
        abi: (u16, u16),
    },
}

impl DriverOrigin {
    /// "static" or the library path.
    pub fn describe(&self) -> String {
        match self {
            DriverOrigin::Static => "static".to_string(),
            DriverOrigin::Plugin { path, .. } => path.display().to_string(),
        }
    }
}

/// A driver in the registry with its origin.
#[derive(Clone)]
pub struct RegisteredDriver {
    /// The driver.
    pub driver: Arc<dyn BlockDriver>,
    /// Where it came from.
    pub origin: DriverOrigin,
}

/// A set of drivers, looked up by name and probed for formats.
#[derive(Clone, Default)]
pub struct Registry {
    drivers: Vec<RegisteredDriver>,
}

impl Registry {
    /// An empty registry.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// A registry holding every linked-in driver, sorted by name.
    pub fn with_static_drivers() -> Registry {
        let mut all: Vec<Arc<dyn BlockDriver>> = inventory::iter::<DriverRegistration>
            .into_iter()
            .map(|r| (r.factory)())
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let mut reg = Registry::empty();
        for d in all {
            reg.add(d, DriverOrigin::Static);
        }
        reg
    }

    /// Adds a driver. Returns false (with a warning) when the name is taken:
    /// the first registration wins.
    pub fn add(&mut self, driver: Arc<dyn BlockDriver>, origin: DriverOrigin) -> bool {
        if let Some(existing) = self.get(driver.name()) {
            log::warn!(
                "driver '{}' from {} ignored: already registered from {}",
                driver.name(),
                origin.describe(),
                existing.origin.describe()
            );
            return false;
        }
        self.drivers.push(RegisteredDriver { driver, origin });
        true
    }

    /// The driver named `name`.
    pub fn get(&self, name: &str) -> Option<&RegisteredDriver> {
        self.drivers.iter().find(|d| d.driver.name() == name)
    }

    /// Every driver, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredDriver> {
        self.drivers.iter()
    }

    /// The protocol driver for a file name: one whose prefix matches
    /// `prefix:`, else the `file` protocol.
    pub fn protocol_for(&self, filename: &str) -> Option<&RegisteredDriver> {
        if crate::host::has_protocol_prefix(filename) {
            let prefix = &filename[..filename.find(':').unwrap_or(0)];
            if let Some(d) = self.drivers.iter().find(|d| {
                d.driver.kind() == DriverKind::Protocol
                    && d.driver.protocol_prefixes().iter().any(|p| p == prefix)
            }) {
                return Some(d);
            }
        }
        self.get("file")
    }

    /// Probes every format driver and returns the best (highest score, first
    /// registered on ties) with its score, or `None` when nothing scores.
    /// A driver whose probe fails (or panics, in a plugin) makes the whole
    /// probe fail, with an error naming the driver and where it came from:
    /// guessing without it could open its image as raw.
    pub fn probe(&self, input: &ProbeInput<'_>) -> Result<Option<(&RegisteredDriver, u32)>> {
        let mut best: Option<(&RegisteredDriver, u32)> = None;
        for d in self
            .drivers
            .iter()
            .filter(|d| d.driver.kind() == DriverKind::Format)
        {
            let score = d
                .driver
                .try_probe(input)
                .map_err(|e| {
                    BlockError::new(
                        e.kind,
                        "probe",
                        format!(
                            "format driver '{}' (from {}) failed to probe the image, so its format is unknown: {}",
                            d.driver.name(),
                            d.origin.describe(),
                            e.message
                        ),
                    )
                    .in_file(input.filename)
                })?
                .min(100);
            if score > 0 && best.is_none_or(|(_, s)| score > s) {
                best = Some((d, score));
            }
        }
        Ok(best)
    }
}
