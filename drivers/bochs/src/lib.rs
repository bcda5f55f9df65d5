//! # blk-bochs
//!
//! The `bochs` format driver, read-only as QEMU's: Bochs growing images.
//! A 512-byte little-endian header ([`header`]) names the catalog (one u32
//! per extent: the allocated extent's number, or `0xffffffff`); an
//! allocated extent is a sector bitmap followed by the extent's sectors
//! ([`mod@format`], on block-core's shared engine).
#![warn(missing_docs)]

mod driver;
pub mod format;
pub mod header;
#[cfg(test)]
mod tests;

pub use driver::BochsDriver;
pub use format::{BochsFormat, BochsNode};

/// The driver's name: `-f bochs`, `info`'s "file format".
pub const DRIVER_NAME: &str = "bochs";

block_core::register_driver!(BochsDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("bochs", [BochsDriver::new()]);
