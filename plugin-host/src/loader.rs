//! Loading plugin libraries: the ABI stamp is checked before any code of the
//! library runs; then the entry point is called with the host API table and
//! every driver it returns is wrapped back into the safe trait. Libraries are
//! never unloaded.

use block_core::abi::checks::read_plugin_header;
use block_core::abi::import::ForeignDriver;
use block_core::abi::plugin::{level_from_number, level_number};
use block_core::abi::{
    BcAbiStamp, BcDriver, BcHostApi, BcPluginHeader, BcStr, ABI_STAMP_SYMBOL, BLK_ABI_MAGIC,
    BLK_ABI_MAJOR, BLK_ABI_MINOR, ENTRY_SYMBOL, PANIC_LOG_TARGET,
};
use block_core::{BlockDriver, BlockError, ErrorKind, Result};
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A loaded plugin library.
pub struct LoadedPlugin {
    /// The library file.
    pub path: PathBuf,
    /// The plugin's declared name.
    pub name: String,
    /// The plugin's version text.
    pub version: String,
    /// The ABI version the plugin was built against.
    pub abi: (u16, u16),
    /// The drivers it provides.
    pub drivers: Vec<Arc<dyn BlockDriver>>,
}

/// Per-library logging context handed to the plugin (leaked, like the library).
struct LogCtx {
    name: OnceLock<String>,
    fallback: String,
    /// The last panic the plugin reported (a record with target
    /// [`PANIC_LOG_TARGET`]), attached to the error of a failed load.
    last_panic: Mutex<Option<String>>,
}

impl LogCtx {
    /// Takes the last reported panic.
    fn take_panic(&self) -> Option<String> {
        self.last_panic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

unsafe extern "C" fn host_log(
    ctx: *const c_void,
    level: u32,
    target: BcStr,
    message: BcStr,
    file: BcStr,
    line: u32,
) {
    let _ = std::panic::catch_unwind(|| {
        let ctx = &*(ctx as *const LogCtx);
        let name = ctx.name.get().unwrap_or(&ctx.fallback);
        let msg = message.to_string_lossy();
        if target.as_bytes() == PANIC_LOG_TARGET.as_bytes() {
            *ctx.last_panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
        }
        let target = format!("plugin::{name}::{}", target.to_string_lossy());
        let file = file.to_string_lossy();
        let level = level_from_number(level);
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .target(&target)
                .file(Some(&file))
                .line(Some(line))
                .args(format_args!("{msg}"))
                .build(),
        );
    });
}

unsafe extern "C" fn host_max_level(_ctx: *const c_void) -> u32 {
    match log::max_level().to_level() {
        Some(l) => level_number(l),
        None => 0,
    }
}

fn mismatch(path: &Path, msg: String) -> BlockError {
    BlockError::new(ErrorKind::AbiMismatch, "load plugin", msg).in_file(path.display().to_string())
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Why a library did not load.
pub(crate) enum LoadFailure {
    /// It is not a blk plugin: it cannot be loaded as a library or has no
    /// `blk_plugin_abi` stamp.
    NotAPlugin(BlockError),
    /// It is a blk plugin (it carries the stamp) that is broken or
    /// incompatible.
    Broken(BlockError),
}

impl LoadFailure {
    /// The error, whichever the failure.
    pub(crate) fn into_error(self) -> BlockError {
        match self {
            LoadFailure::NotAPlugin(e) | LoadFailure::Broken(e) => e,
        }
    }
}

/// Loads a plugin library (once per process; later calls return the same
/// plugin). Refuses a library whose ABI stamp is missing, has the wrong magic
/// or another major version, naming the file and both versions, and one
/// built with `panic = "abort"`.
pub fn load_plugin(path: &Path) -> Result<Arc<LoadedPlugin>> {
    load_classified(path).map_err(LoadFailure::into_error)
}

/// [`load_plugin`], telling a library that is no blk plugin at all from a
/// broken plugin.
pub(crate) fn load_classified(path: &Path) -> std::result::Result<Arc<LoadedPlugin>, LoadFailure> {
    use LoadFailure::{Broken, NotAPlugin};
    let canon = std::fs::canonicalize(path).map_err(|e| {
        Broken(BlockError::from_io("load plugin", e).in_file(path.display().to_string()))
    })?;
    let mut map = loaded().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = map.get(&canon) {
        return Ok(p.clone());
    }
    // SAFETY: loading a library runs its initialisers; plugin libraries are
    // trusted code chosen by the operator. RTLD_NOW reports missing symbols here.
    let lib = unsafe {
        libloading::os::unix::Library::open(
            Some(&canon),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
        )
    }
    .map_err(|e| {
        NotAPlugin(
            BlockError::new(
                ErrorKind::AbiMismatch,
                "load plugin",
                format!("cannot load library: {e}"),
            )
            .in_file(path.display().to_string()),
        )
    })?;
    // Never unloaded: plugin code and data must outlive every node.
    let lib: &'static libloading::os::unix::Library = Box::leak(Box::new(lib));

    // 1. The stamp, read as data before any call into the library.
    let stamp: BcAbiStamp = unsafe {
        let sym = lib
            .get::<*const BcAbiStamp>(ABI_STAMP_SYMBOL)
            .map_err(|_| {
                NotAPlugin(mismatch(
                    path,
                    format!(
                        "not a blk plugin (no blk_plugin_abi symbol); expected ABI {BLK_ABI_MAJOR}.x"
                    ),
                ))
            })?;
        let p: *const BcAbiStamp = *sym;
        if p.is_null() {
            return Err(Broken(mismatch(path, "null ABI stamp".into())));
        }
        std::ptr::read_unaligned(p)
    };
    let broken = |msg: String| Broken(mismatch(path, msg));
    if stamp.magic != BLK_ABI_MAGIC {
        return Err(broken(format!(
            "bad plugin magic {:#x}; expected ABI {BLK_ABI_MAJOR}.x",
            stamp.magic
        )));
    }
    if stamp.abi_major != BLK_ABI_MAJOR {
        return Err(broken(format!(
            "incompatible plugin ABI version: expected {BLK_ABI_MAJOR}.x (host is {BLK_ABI_MAJOR}.{BLK_ABI_MINOR}), found {}.{}",
            stamp.abi_major, stamp.abi_minor
        )));
    }
    crate::panic_strategy::check(path, &stamp).map_err(Broken)?;

    // 2. The entry point.
    let entry: unsafe extern "C" fn(*const BcHostApi) -> *const BcPluginHeader = unsafe {
        *lib.get(ENTRY_SYMBOL)
            .map_err(|_| broken("missing blk_plugin_entry symbol".into()))?
    };
    let stem = canon
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let log_ctx: &'static LogCtx = Box::leak(Box::new(LogCtx {
        name: OnceLock::new(),
        fallback: stem,
        last_panic: Mutex::new(None),
    }));
    let api = BcHostApi {
        struct_size: std::mem::size_of::<BcHostApi>(),
        abi_major: BLK_ABI_MAJOR,
        abi_minor: BLK_ABI_MINOR,
        reserved: 0,
        ctx: log_ctx as *const LogCtx as *const c_void,
        log: Some(host_log),
        max_level: Some(host_max_level),
    };
    let api: &'static BcHostApi = Box::leak(Box::new(api));
    let header_ptr = unsafe { entry(api) };
    if header_ptr.is_null() {
        let why = match log_ctx.take_panic() {
            Some(p) => p,
            None => "plugin entry point failed".to_string(),
        };
        return Err(broken(why));
    }
    // SAFETY: the header starts with the magic and version; its struct_size
    // says how much is readable (copied up to this host's size).
    let header = unsafe { read_plugin_header(header_ptr) }
        .map_err(|e| Broken(e.in_file(path.display().to_string())))?;
    if header.magic != BLK_ABI_MAGIC || header.abi_major != BLK_ABI_MAJOR {
        return Err(broken(format!(
            "plugin header declares ABI {}.{}; expected {BLK_ABI_MAJOR}.x",
            header.abi_major, header.abi_minor
        )));
    }
    let name = unsafe { header.name.to_string_lossy() };
    let version = unsafe { header.version.to_string_lossy() };
    let _ = log_ctx.name.set(name.clone());
    if header.n_drivers > 1024 || (header.n_drivers > 0 && header.drivers.is_null()) {
        return Err(broken("bad driver table".into()));
    }
    let mut drivers: Vec<Arc<dyn BlockDriver>> = Vec::new();
    for i in 0..header.n_drivers {
        let d: BcDriver = unsafe { *header.drivers.add(i) };
        let _ = log_ctx.take_panic();
        let fd = unsafe { ForeignDriver::from_raw_minor(d, stamp.abi_minor) }.map_err(|e| {
            match log_ctx.take_panic() {
                // The identity read failed because the plugin panicked: say
                // so rather than "empty name" or "unknown kind".
                Some(p) => broken(format!("driver #{i} of plugin '{name}': {p}")),
                None => Broken(e.in_file(path.display().to_string())),
            }
        })?;
        drivers.push(Arc::new(fd));
    }
    log::debug!(
        "loaded plugin {name} {version} (ABI {}.{}) from {} with {} driver(s)",
        header.abi_major,
        header.abi_minor,
        canon.display(),
        drivers.len()
    );
    let plugin = Arc::new(LoadedPlugin {
        path: canon.clone(),
        name,
        version,
        abi: (header.abi_major, header.abi_minor),
        drivers,
    });
    map.insert(canon, plugin.clone());
    Ok(plugin)
}

/// The plugin libraries in a directory (`*.so`), sorted by file name.
pub fn plugin_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        BlockError::from_io("read plugin directory", e).in_file(dir.display().to_string())
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == std::env::consts::DLL_EXTENSION)
        })
        .collect();
    files.sort();
    Ok(files)
}
