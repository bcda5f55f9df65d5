//! # blk-qcow
//!
//! The `qcow` format driver: QEMU's qcow version 1 images on block-core's
//! shared format engine. A big-endian 48-byte header ([`header`]) names
//! an optional backing file and the L1 table; L1 entries name L2 tables,
//! L2 entries name clusters (plain, or deflate-compressed with the size
//! in the high bits) ([`tables`]). New L2 tables and clusters are appended
//! at the end of the file ([`mod@format`]); the engine's `FormatNode` does
//! the I/O ([`mapping`], [`compress`]).
#![warn(missing_docs)]

mod backing;
pub mod compress;
mod driver;
pub mod format;
pub mod header;
pub mod mapping;
pub mod tables;
#[cfg(test)]
mod tests;

pub use driver::QcowDriver;
pub use format::QcowFormat;
pub use mapping::QcowNode;

/// The driver's name: `blk create -f qcow`, `info`'s "file format".
pub const DRIVER_NAME: &str = "qcow";

block_core::register_driver!(QcowDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("qcow", [QcowDriver::new()]);
