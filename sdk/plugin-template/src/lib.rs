//! # xortemplate
//!
//! A blk format driver built as a plugin library: a 512-byte header
//! ([`header`]) followed by the guest data, each byte mapped through the
//! image's key ([`codec`]). The driver opens its image file as the `file`
//! child the host hands it, and creates images by asking the host for a new
//! file: it never touches the file system itself.
//!
//! Built with the `plugin` feature the crate exports the plugin entry points
//! (`blk_plugin_abi`, `blk_plugin_entry`); without it the driver can be
//! linked into a host like any other driver crate.
#![warn(missing_docs)]

pub mod codec;
mod driver;
pub mod header;
mod node;
#[cfg(test)]
mod tests;

pub use driver::XorDriver;
pub use node::XorNode;

/// The driver's name: `blk create -f xortemplate`, `info`'s "file format".
pub const DRIVER_NAME: &str = "xortemplate";

block_core::register_driver!(XorDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("xortemplate", [XorDriver::new()]);
