//! # blk-vmdk
//!
//! The `vmdk` format driver for monolithicSparse images (QEMU's default
//! subformat): a 512-byte little-endian sparse header ([`header`]) with an
//! embedded text descriptor ([`descriptor`]), a grain directory and its
//! redundant copy naming grain tables of u32 sector offsets
//! ([`grain_table`]), grains appended at the end of the file.
//! [`VmdkFormat`] implements `block_core::engine::Format` ([`mod@format`]);
//! the engine's `FormatNode` does the I/O; [`check`] is QEMU's vmdk check. Depends on block-core only.
#![warn(missing_docs)]

pub mod check;
pub mod descriptor;
mod driver;
pub mod format;
pub mod grain_table;
pub mod header;
#[cfg(test)]
mod tests;

pub use driver::VmdkDriver;
pub use format::{VmdkFormat, VmdkNode};

/// The driver's name: `blk create -f vmdk`, `info`'s "file format".
pub const DRIVER_NAME: &str = "vmdk";

block_core::register_driver!(VmdkDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("vmdk", [VmdkDriver::new()]);
