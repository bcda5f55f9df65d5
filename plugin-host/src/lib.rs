//! # plugin-host
//!
//! The blk host: it loads plugin libraries (checking their ABI before any
//! call), keeps the driver [`block_core::Registry`], opens node graphs
//! (format over protocol, backing chains with loop detection, probing with
//! the CVE-2008-2004 guard) and offers the embedding front end [`Image`].
//!
//! ```no_run
//! use plugin_host::{Host, OpenOptions};
//! let host = Host::new()?;
//! host.create("qcow2", "/tmp/disk.qcow2", "", Some(64 << 20), None)?;
//! let img = host.open("/tmp/disk.qcow2", &OpenOptions::default())?;
//! img.write(0, &[0xab; 4096])?;
//! let mut buf = vec![0; 4096];
//! img.read(0, &mut buf)?;
//! img.flush()?;
//! # Ok::<(), block_core::BlockError>(())
//! ```
#![warn(missing_docs)]

mod driver_options;
mod file_status;
pub mod foreign;
pub mod graph;
pub mod host;
pub mod image;
mod linked;
pub mod loader;
pub mod safety;
pub mod spec;

pub use graph::GraphNode;
pub use host::{Host, HostBuilder, OpenOptions, BUILTIN_DRIVERS_ENV, PLUGIN_PATH_ENV};
pub use image::{Image, ImageInfo};
pub use loader::{load_plugin, LoadedPlugin};
pub use spec::{ImageSpec, SpecValue};
