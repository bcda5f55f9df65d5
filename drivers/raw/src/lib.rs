//! # blk-raw
//!
//! The `raw` format driver: the guest disk is the bytes of its file child,
//! optionally a window (`offset`, `size`) of it. Probes with score 1 so that
//! any real format wins. Depends on block-core only.
#![warn(missing_docs)]

mod driver;
mod node;
#[cfg(test)]
mod tests;

pub use driver::RawDriver;
pub use node::RawNode;

block_core::register_driver!(RawDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("raw", [RawDriver::new()]);
