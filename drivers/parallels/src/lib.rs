//! # blk-parallels
//!
//! The `parallels` format driver: Parallels/Virtuozzo expandable images as
//! QEMU reads and writes them. A 64-byte header ([`header`]) is followed by
//! the block allocation table (BAT): one u32 per guest cluster, 0 for an
//! unallocated cluster (reads as zeros), else where the cluster's data
//! lies in the file; data clusters are appended at the end of the file as
//! the guest writes them ([`bat`]).
//!
//! The driver is its layout, its mapping, its allocation and its check on
//! block-core's shared engine: [`ParallelsFormat`] implements
//! `block_core::engine::Format` ([`mod@format`]), the engine's `FormatNode`
//! does the I/O, and the check ([`check`], as `qemu-img check -f
//! parallels`) is offered as the node's `CheckControl`.
#![warn(missing_docs)]

pub mod bat;
pub mod check;
mod driver;
pub mod format;
pub mod header;
#[cfg(test)]
mod tests;

pub use driver::ParallelsDriver;
pub use format::{ParallelsFormat, ParallelsNode};

/// The driver's name: `blk create -f parallels`, `info`'s "file format".
pub const DRIVER_NAME: &str = "parallels";

block_core::register_driver!(ParallelsDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("parallels", [ParallelsDriver::new()]);
