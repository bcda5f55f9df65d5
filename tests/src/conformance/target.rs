//! What a case runs against: the driver, a fresh image (or protocol name)
//! and the ways a case opens it.

use block_core::{BlockDriver, DriverCaps, DriverKind};
use plugin_host::{Host, Image, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the suite runs against: one driver and one fresh image.
pub struct Target<'a> {
    pub(super) host: &'a Host,
    pub(super) driver: String,
    pub(super) kind: DriverKind,
    pub(super) caps: DriverCaps,
    pub(super) filename: String,
    pub(super) created: bool,
    pub(super) seed: u64,
    pub(super) workdir: PathBuf,
}

impl Target<'_> {
    /// Opens the image read-write, or read-only.
    pub(super) fn open(&self, read_only: bool) -> Result<Image, String> {
        self.open_with(
            OpenOptions {
                read_only,
                ..Default::default()
            },
            "open",
        )
    }

    /// A second, read-only open beside a read-write one (sharing the image).
    pub(super) fn open_shared(&self) -> Result<Image, String> {
        self.open_with(
            OpenOptions {
                force_share: true,
                ..Default::default()
            },
            "second (shared) open",
        )
    }

    /// An inactive open (incoming migration: no writes, no locks).
    pub(super) fn open_inactive(&self) -> Result<Image, String> {
        self.open_with(
            OpenOptions {
                inactive: true,
                ..Default::default()
            },
            "inactive open",
        )
    }

    fn open_with(&self, opts: OpenOptions, what: &str) -> Result<Image, String> {
        let opts = OpenOptions {
            format: Some(self.driver.clone()),
            ..opts
        };
        self.host
            .open(&self.filename, &opts)
            .map_err(|e| format!("{what}: {e}"))
    }

    /// The driver descriptor under test.
    pub(super) fn driver(&self) -> Result<Arc<dyn BlockDriver>, String> {
        self.host
            .registry()
            .get(&self.driver)
            .map(|r| r.driver.clone())
            .ok_or_else(|| format!("driver '{}' is not registered", self.driver))
    }

    /// The image file's bytes (file-backed targets only).
    pub(super) fn file_bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.filename).map_err(|e| format!("read {}: {e}", self.filename))
    }
}

/// Prepares the target for `driver` in `workdir`.
pub(super) fn prepare<'a>(
    host: &'a Host,
    driver: &str,
    workdir: &Path,
    seed: u64,
) -> Result<Target<'a>, String> {
    let reg = host
        .registry()
        .get(driver)
        .ok_or_else(|| format!("driver '{driver}' is not registered"))?;
    let d = &reg.driver;
    let kind = d.kind();
    let caps = d.caps();
    let (filename, created) = if caps.contains(DriverCaps::CREATE) {
        let path: PathBuf = workdir.join(format!("conformance-{seed}.{driver}"));
        let name = path.to_string_lossy().into_owned();
        let opts = (super::CREATE_OPTIONS.iter())
            .find(|(d, _)| *d == driver)
            .map_or("", |(_, o)| *o);
        host.create(driver, &name, opts, Some(super::IMAGE_SIZE), None)
            .map_err(|e| format!("create: {e}"))?;
        (name, true)
    } else if kind == DriverKind::Protocol {
        let prefix = d
            .protocol_prefixes()
            .into_iter()
            .next()
            .ok_or_else(|| format!("protocol '{driver}' has neither create nor a prefix"))?;
        let sep = if prefix == "null-co" { "://" } else { ":" };
        (format!("{prefix}{sep}conformance-{seed}"), false)
    } else {
        return Err(format!(
            "format '{driver}' cannot create images; the suite needs create"
        ));
    };
    Ok(Target {
        host,
        driver: driver.to_string(),
        kind,
        caps,
        filename,
        created,
        seed,
        workdir: workdir.to_path_buf(),
    })
}
