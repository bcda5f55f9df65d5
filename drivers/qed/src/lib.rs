//! # blk-qed
//!
//! The QED (QEMU Enhanced Disk) format driver on block-core's shared
//! format engine: a little-endian header ([`header`]), two levels of
//! tables of u64 cluster offsets (an L1 table held in memory, L2 tables
//! through the engine's table cache, [`tables`]), clusters and L2 tables
//! appended at the end of the file, an optional backing file, and the
//! need-check flag set before allocating writes and cleared on a clean
//! close ([`mod@format`]). The engine's `FormatNode` does the I/O
//! ([`mapping`]); [`check`] is QEMU's qed check, also run with repair when
//! a writable open finds the need-check flag set.
#![warn(missing_docs)]

mod backing;
pub mod check;
mod driver;
pub mod format;
pub mod header;
pub mod mapping;
pub mod tables;
#[cfg(test)]
mod tests;

pub use driver::QedDriver;
pub use format::QedFormat;
pub use mapping::QedNode;

/// The driver's name: `blk create -f qed`, `info`'s "file format".
pub const DRIVER_NAME: &str = "qed";

block_core::register_driver!(QedDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("qed", [QedDriver::new()]);
