//! # battemplate
//!
//! A blk format driver built as a plugin library: a small sparse format
//! with a block allocation table (BAT), the shape of vdi, vpc and
//! parallels. A 512-byte header ([`header`]) names the BAT; each BAT entry
//! says where one guest block lives in the file, or that it is unallocated
//! (reads as zeros); data blocks are appended at the end of the file as the
//! guest writes them ([`bat`]).
//!
//! The driver is its layout, its mapping, its allocation and its check on
//! block-core's shared engine: [`BatFormat`] implements
//! `block_core::engine::Format` ([`format`]), the engine's `FormatNode`
//! does the I/O, and the check ([`check`]) is offered as the node's
//! `CheckControl`. The driver opens its image file as the `file` child the
//! host hands it and creates images by asking the host for a new file: it
//! never touches the file system itself.
//!
//! Built with the `plugin` feature the crate exports the plugin entry points
//! (`blk_plugin_abi`, `blk_plugin_entry`); without it the driver can be
//! linked into a host like any other driver crate.
#![warn(missing_docs)]

pub mod bat;
pub mod check;
mod driver;
pub mod format;
pub mod header;
#[cfg(test)]
mod tests;

pub use driver::BatDriver;
pub use format::{BatFormat, BatNode};

/// The driver's name: `blk create -f battemplate`, `info`'s "file format".
pub const DRIVER_NAME: &str = "battemplate";

block_core::register_driver!(BatDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("battemplate", [BatDriver::new()]);
