//! # plugin-host
//!
//! The blk host: it loads plugin libraries (checking their ABI before any
//! call), keeps the driver [`block_core::Registry`], opens node graphs
//! (format over protocol, backing chains with loop detection, probing with
//! the CVE-2008-2004 guard) and offers the embedding front end [`Image`].
//!
//! One dependency suffices: the block-core types an embedder meets (errors,
//! flags, extents, info and check reports) are re-exported here, and the
//! image operations (convert, compare, map) are in [`ops`].
//!
//! ```no_run
//! use plugin_host::{Host, OpenOptions};
//! // The linked-in drivers only; nothing read from the environment.
//! let host = Host::without_env()?;
//! host.create("qcow2", "/tmp/disk.qcow2", "", Some(64 << 20), None)?;
//! let img = host.open("/tmp/disk.qcow2", &OpenOptions::default())?;
//! img.write(0, &[0xab; 4096])?;
//! let mut buf = vec![0; 4096];
//! img.read(0, &mut buf)?;
//! img.flush()?;
//! # Ok::<(), plugin_host::BlockError>(())
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
pub mod ops;
mod panic_strategy;
pub mod safety;
pub mod spec;

pub use graph::GraphNode;
pub use host::{Host, HostBuilder, OpenOptions, BUILTIN_DRIVERS_ENV, PLUGIN_PATH_ENV};
pub use image::{Image, ImageInfo};
pub use loader::{load_plugin, LoadedPlugin};
pub use spec::{ImageSpec, SpecValue};

// The block-core types an embedder needs, so that plugin-host is its one
// dependency.
pub use block_core::{
    BlockError, CheckFinding, CheckMode, CheckReport, DriverKind, ErrorKind, Extent, ExtentFlags,
    FindingKind, MeasureRequest, MeasureResult, NodeInfo, OpenFlags, Operation, Preallocation,
    ReqFlags, Result, SnapshotInfo, ZeroFlags,
};
