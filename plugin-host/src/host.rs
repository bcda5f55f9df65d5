//! The embedding entry point: a [`Host`] owns a driver registry (linked-in
//! drivers plus plugin libraries) and opens and creates images.
//!
//! Which constructor: [`Host::without_env`] (or [`HostBuilder`] with
//! [`HostBuilder::env_plugin_path`] off) for a program that decides itself
//! which code serves its images: it reads no environment variable.
//! [`Host::new`] behaves as the `blk` command: it reads `BLK_PLUGIN_PATH`
//! and `BLK_BUILTIN_DRIVERS`, so whoever sets a program's environment can
//! make it load and run foreign code (a plugin library) in-process; use it
//! only where the environment is as trusted as the program.
//!
//! An [`Image`] need not be dropped before its `Host`: it holds the
//! registry it was opened through, and plugin libraries are never
//! unloaded.

use crate::graph::{self, NodeSpec};
use crate::image::Image;
use crate::loader::{self, LoadFailure, LoadedPlugin};
use block_core::{BlockError, DriverOrigin, ErrorKind, OpenFlags, OptionValues, Registry, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable listing plugin directories or files (`:`-separated).
pub const PLUGIN_PATH_ENV: &str = "BLK_PLUGIN_PATH";
/// The environment variable that, set to `0`/`off`/`no`, leaves the linked-in
/// drivers out so that only plugin libraries serve (honoured when
/// `env_plugin_path` is on).
pub const BUILTIN_DRIVERS_ENV: &str = "BLK_BUILTIN_DRIVERS";

/// QEMU's message for an image created over its own backing file.
pub const SAME_AS_BACKING: &str =
    "Error: Trying to create an image with the same filename as the backing file";

/// How to open an image.
///
/// `OpenOptions::default()` opens **read-write** and takes the write locks
/// on the image's files (another process that writes them is refused, and
/// so is this open while another holds them); set `read_only` (or use
/// [`OpenOptions::read_only`]) to only read, and `force_share` to read an
/// image another process has open for writing.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The format driver; `None` probes.
    pub format: Option<String>,
    /// Open read-only.
    pub read_only: bool,
    /// Do not open backing files.
    pub no_backing: bool,
    /// Open inactive (incoming migration): write nothing, take no locks.
    pub inactive: bool,
    /// Share permissions with other processes (qemu-img `-U`); implies read-only.
    pub force_share: bool,
    /// Open for `check` (do not refuse or repair corrupt images).
    pub for_check: bool,
    /// Use the image's files exclusively, as before overwriting or
    /// truncating it: refused while any other process holds them open
    /// (docs/data-safety.md).
    pub exclusive: bool,
    /// Format driver options (`key=value`).
    pub options: Vec<(String, String)>,
}

impl OpenOptions {
    /// Options that open read-only (format probed, backing chain opened).
    pub fn read_only() -> OpenOptions {
        OpenOptions {
            read_only: true,
            ..OpenOptions::default()
        }
    }

    /// The block-core open flags for these options.
    pub fn flags(&self) -> OpenFlags {
        let mut f = OpenFlags::NONE;
        if self.read_only || self.force_share {
            f = f.with(OpenFlags::READ_ONLY);
        }
        if self.no_backing {
            f = f.with(OpenFlags::NO_BACKING);
        }
        if self.inactive {
            f = f.with(OpenFlags::INACTIVE);
        }
        if self.force_share {
            f = f.with(OpenFlags::FORCE_SHARE);
        }
        if self.for_check {
            f = f.with(OpenFlags::CHECK);
        }
        if self.exclusive {
            f = f.with(OpenFlags::EXCLUSIVE);
        }
        f
    }
}

/// Builds a [`Host`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    static_drivers: bool,
    plugins_first: bool,
    env_path: bool,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            static_drivers: true,
            plugins_first: false,
            env_path: true,
            plugin_dirs: Vec::new(),
            plugin_files: Vec::new(),
        }
    }
}

impl HostBuilder {
    /// Whether to register the linked-in drivers (default yes).
    pub fn static_drivers(mut self, yes: bool) -> Self {
        self.static_drivers = yes;
        self
    }
    /// Register plugin drivers before the linked-in ones, so a plugin shadows
    /// a linked-in driver of the same name (default no). Used to run the
    /// conformance suite on a plugin while linked-in protocols stay available.
    pub fn plugins_first(mut self, yes: bool) -> Self {
        self.plugins_first = yes;
        self
    }
    /// Whether to read the environment (default yes): `BLK_PLUGIN_PATH`
    /// (plugins to load) and `BLK_BUILTIN_DRIVERS` (whether to leave the
    /// linked-in drivers out). Off, the host is built from what this
    /// builder is told only.
    pub fn env_plugin_path(mut self, yes: bool) -> Self {
        self.env_path = yes;
        self
    }
    /// Loads every plugin library in `dir`.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }
    /// Loads one plugin library.
    pub fn plugin_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.plugin_files.push(file.into());
        self
    }

    /// Builds the host: linked-in drivers first (unless `plugins_first`), then
    /// plugins from the directories given, then `BLK_PLUGIN_PATH`, then single
    /// files. The first registration of a name wins; later ones are skipped
    /// with a warning.
    pub fn build(self) -> Result<Host> {
        crate::linked::ensure_linked();
        let mut this = self;
        if this.env_path {
            if let Ok(v) = std::env::var(BUILTIN_DRIVERS_ENV) {
                if matches!(v.as_str(), "0" | "off" | "no" | "false") {
                    this.static_drivers = false;
                }
            }
        }
        let self_ = this;
        let mut registry = if self_.static_drivers && !self_.plugins_first {
            Registry::with_static_drivers()
        } else {
            Registry::empty()
        };
        // (file, explicitly named).
        let mut files: Vec<(PathBuf, bool)> = Vec::new();
        for d in &self_.plugin_dirs {
            files.extend(loader::plugin_files_in(d)?.into_iter().map(|f| (f, false)));
        }
        if self_.env_path {
            if let Ok(p) = std::env::var(PLUGIN_PATH_ENV) {
                for part in p.split(':').filter(|s| !s.is_empty()) {
                    let path = Path::new(part);
                    if path.is_dir() {
                        files.extend(
                            loader::plugin_files_in(path)?
                                .into_iter()
                                .map(|f| (f, false)),
                        );
                    } else {
                        files.push((path.to_path_buf(), true));
                    }
                }
            }
        }
        files.extend(self_.plugin_files.iter().cloned().map(|f| (f, true)));
        let mut plugins = Vec::new();
        let mut load_errors = Vec::new();
        for (f, named) in files {
            // A library found by scanning that is no blk plugin at all is
            // skipped with a warning; a blk plugin that fails to load is an
            // error, scanned or named: an operator who put it in the plugin
            // path expects its drivers.
            let p = match loader::load_classified(&f) {
                Ok(p) => p,
                Err(LoadFailure::NotAPlugin(e)) if !named => {
                    log::warn!("skipping plugin library: {e}");
                    load_errors.push(e);
                    continue;
                }
                Err(e) => return Err(e.into_error()),
            };
            for d in &p.drivers {
                registry.add(
                    d.clone(),
                    DriverOrigin::Plugin {
                        path: p.path.clone(),
                        abi: p.abi,
                    },
                );
            }
            plugins.push(p);
        }
        if self_.static_drivers && self_.plugins_first {
            for d in Registry::with_static_drivers().iter() {
                registry.add(d.driver.clone(), d.origin.clone());
            }
        }
        Ok(Host {
            registry: Arc::new(registry),
            plugins,
            load_errors: Arc::new(load_errors),
        })
    }
}

/// An embedding host: a registry of drivers that opens and creates images.
#[derive(Clone)]
pub struct Host {
    registry: Arc<Registry>,
    plugins: Vec<Arc<LoadedPlugin>>,
    load_errors: Arc<Vec<BlockError>>,
}

impl Host {
    /// A builder.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// A host as the `blk` command builds it: the linked-in drivers (unless
    /// `BLK_BUILTIN_DRIVERS=0`) and the plugins `BLK_PLUGIN_PATH` names.
    /// The environment chooses code this process runs: see the module docs,
    /// and prefer [`Host::without_env`] in an embedding program.
    pub fn new() -> Result<Host> {
        Host::builder().build()
    }

    /// A host with the linked-in drivers only, reading no environment
    /// variable (add plugins with [`Host::builder`], `env_plugin_path(false)`
    /// and `plugin_dir`/`plugin_file`).
    pub fn without_env() -> Result<Host> {
        Host::builder().env_plugin_path(false).build()
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Libraries found in plugin directories that are no blk plugins (each
    /// was skipped with a warning; a broken blk plugin fails the build).
    pub fn load_errors(&self) -> &[BlockError] {
        &self.load_errors
    }

    /// The plugin libraries loaded.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Opens an image (format probed unless named) with its backing chain.
    pub fn open(&self, filename: &str, opts: &OpenOptions) -> Result<Image> {
        if let Some(json) = filename.strip_prefix("json:") {
            let spec = crate::spec::ImageSpec::from_json(json)?;
            return self.open_spec(&spec, opts);
        }
        let spec = NodeSpec {
            options: opts.options.clone(),
            ..NodeSpec::new(filename, opts.format.clone(), opts.flags())
        };
        let root = graph::open_node(&self.registry, &spec)?;
        Ok(Image::new(self.registry.clone(), root, opts))
    }

    /// Opens an image described by a specification (`json:{...}` or
    /// `--image-opts`). `opts.format` must be unset (the spec names the
    /// driver); its flags and options add to the spec's.
    pub fn open_spec(&self, spec: &crate::spec::ImageSpec, opts: &OpenOptions) -> Result<Image> {
        let reg = &self.registry;
        let req = spec.request(|d| {
            reg.get(d)
                .map(|r| r.driver.kind() == block_core::DriverKind::Protocol)
        })?;
        let mut o = opts.clone();
        o.format = req.driver.clone();
        if let Some(ro) = req.read_only {
            o.read_only = o.read_only || ro;
        }
        if let Some(fs) = req.force_share {
            o.force_share = o.force_share || fs;
        }
        o.no_backing = o.no_backing || req.no_backing;
        o.options.extend(req.options.iter().cloned());
        // When probing, the protocol is named so that the root options go
        // to the format only.
        let file_driver = match (&req.file_driver, &req.driver) {
            (Some(d), _) => Some(d.clone()),
            (None, None) => Some(
                graph::find_protocol(reg, &req.filename)?
                    .driver
                    .name()
                    .to_string(),
            ),
            (None, Some(_)) => None,
        };
        let nspec = NodeSpec {
            options: o.options.clone(),
            file_driver,
            file_options: req.file_options.clone(),
            ..NodeSpec::new(req.filename.clone(), o.format.clone(), o.flags())
        };
        let root = graph::open_node(&self.registry, &nspec)?;
        Ok(Image::new(self.registry.clone(), root, &o))
    }

    /// How many bytes an image of `format` needs (`qemu-img measure`).
    pub fn measure(
        &self,
        format: &str,
        req: &block_core::MeasureRequest,
    ) -> Result<block_core::MeasureResult> {
        let d = self.registry.get(format).ok_or_else(|| {
            BlockError::new(
                ErrorKind::NotFound,
                "measure",
                format!("Unknown file format '{format}'"),
            )
        })?;
        d.driver.measure(req)
    }

    /// Creates an image. `options` is a qemu-img style `k=v,...` string;
    /// `size`, `backing_file` and `backing_fmt` given separately override it.
    ///
    /// Refused, with every file left as it was, when the image would be its
    /// own backing file or data file, or when any other process holds an
    /// existing file of it open (docs/data-safety.md).
    pub fn create(
        &self,
        format: &str,
        filename: &str,
        options: &str,
        size: Option<u64>,
        backing: Option<(&str, Option<&str>)>,
    ) -> Result<()> {
        let d = self.registry.get(format).ok_or_else(|| {
            BlockError::new(
                ErrorKind::NotFound,
                "create",
                format!("Unknown file format '{format}'"),
            )
        })?;
        let schema = d.driver.create_options();
        // Options only the protocol knows (nocow, extent_size_hint) go to the
        // protocol driver when the format creates its file, as QEMU appends
        // the protocol's create options to the format's.
        let proto = graph::find_protocol(&self.registry, filename)?;
        let pschema = if d.driver.kind() == block_core::DriverKind::Format {
            proto.driver.create_options()
        } else {
            Vec::new()
        };
        let (proto_pairs, fmt_pairs): (Vec<_>, Vec<_>) =
            block_core::options::split_option_string(options)
                .map_err(|e| e.in_file(filename))?
                .into_iter()
                .partition(|(k, _)| {
                    !schema.iter().any(|o| &o.name == k) && pschema.iter().any(|o| &o.name == k)
                });
        let mut values =
            OptionValues::parse(&schema, &fmt_pairs).map_err(|e| e.in_file(filename))?;
        let mut extra: Vec<(String, String)> = values.values.clone();
        if let Some(s) = size {
            extra.retain(|(k, _)| k != "size");
            extra.push(("size".to_string(), s.to_string()));
        }
        if let Some((b, bf)) = backing {
            extra.retain(|(k, _)| k != "backing_file" && k != "backing_fmt");
            extra.push(("backing_file".to_string(), b.to_string()));
            if let Some(bf) = bf {
                extra.push(("backing_fmt".to_string(), bf.to_string()));
            }
        }
        values = OptionValues::parse(&schema, &extra).map_err(|e| e.in_file(filename))?;
        self.check_create_targets(filename, &values)?;
        d.driver
            .create(
                filename,
                &values,
                graph::services_for_create(&self.registry, proto_pairs),
            )
            .map_err(|e| e.in_file(filename))
    }

    /// Before any file of a new image is created or emptied: the image is
    /// not its own backing file or data file, and no other process holds
    /// the image or its data file open (so a create that fails at its
    /// second file has not emptied the first). The protocol checks each
    /// file again, under its locks, before truncating it.
    fn check_create_targets(&self, filename: &str, values: &OptionValues) -> Result<()> {
        let named = |k: &str| {
            values
                .get_str(k)
                .filter(|v| !v.is_empty() && values.is_set(k))
        };
        if let Some(b) = named("backing_file") {
            let full = block_core::resolve_relative(&b, Some(filename));
            if b == filename || crate::safety::same_file(&full, filename) {
                return Err(BlockError::invalid("", SAME_AS_BACKING).in_file(filename));
            }
        }
        // A data file name is used as given, relative to the working
        // directory, as qemu-img does (not to the image, as a backing file).
        let data_file = named("data_file");
        if let Some(df) = &data_file {
            if df == filename || crate::safety::same_file(df, filename) {
                return Err(BlockError::invalid(
                    "",
                    format!("The data file '{df}' is the same file as the image"),
                )
                .in_file(filename));
            }
        }
        // One file: its protocol create checks it before it changes it.
        // Two: both are checked before the first is emptied.
        if let Some(df) = &data_file {
            // In QEMU's order (the image, then the data file), each file's
            // create must get past its open and no other process may hold
            // it.
            crate::safety::check_creatable(&self.registry, filename)
                .map_err(|e| e.in_file(filename))?;
            crate::safety::check_unused(&self.registry, filename)
                .map_err(|e| e.in_file(filename))?;
            crate::safety::check_creatable(&self.registry, df).map_err(|e| e.in_file(filename))?;
            // Reported for the image being created, the message names the
            // data file.
            crate::safety::check_unused(&self.registry, df).map_err(|mut e| {
                e.file = None;
                e.in_file(filename)
            })?;
        }
        Ok(())
    }
}
