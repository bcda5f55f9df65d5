//! # blk-vdi
//!
//! The `vdi` format driver: VirtualBox Disk Images, version 1.1, dynamic
//! (blocks appended as the guest writes them) and static (every block
//! allocated at create). A 512-byte header ([`header`]) names the block map,
//! one u32 per 1 MiB guest block; data blocks follow the map ([`map`]).
//!
//! The driver is its layout, mapping, allocation and check on block-core's
//! shared engine: [`VdiFormat`] implements `block_core::engine::Format`
//! ([`mod@format`]), the engine's `FormatNode` does the I/O, and the check
//! ([`check`]) is QEMU's vdi check. Depends on block-core only.
#![warn(missing_docs)]

pub mod check;
mod driver;
pub mod format;
pub mod header;
pub mod map;
#[cfg(test)]
mod tests;

pub use driver::VdiDriver;
pub use format::{VdiFormat, VdiNode};

/// The driver's name: `blk create -f vdi`, `info`'s "file format".
pub const DRIVER_NAME: &str = "vdi";

block_core::register_driver!(VdiDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("vdi", [VdiDriver::new()]);
