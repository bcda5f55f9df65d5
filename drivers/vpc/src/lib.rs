//! # blk-vpc
//!
//! The `vpc` format driver (Microsoft Virtual PC / VHD images), dynamic and
//! fixed, on block-core's shared format engine: [`footer`] and
//! [`dyn_header`] are the on-disk structures, [`meta`] the metadata of an
//! open image, [`mod@format`] the engine's `Format`. Depends on block-core only.
#![warn(missing_docs)]

mod driver;
pub mod dyn_header;
pub mod footer;
pub mod format;
pub mod meta;
#[cfg(test)]
mod tests;

pub use driver::VpcDriver;
pub use format::{VpcFormat, VpcNode};

/// The driver's name, as QEMU's.
pub const DRIVER_NAME: &str = "vpc";

block_core::register_driver!(VpcDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("vpc", [VpcDriver::new()]);
