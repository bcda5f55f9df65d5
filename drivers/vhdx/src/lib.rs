//! # blk-vhdx
//!
//! The `vhdx` format driver: Hyper-V VHDX images (version 1), dynamic and
//! fixed, without parents. The header section ([`header`]: file
//! identifier and two checksummed headers), the region table
//! ([`region`]), the metadata region ([`metadata`]) and the block
//! allocation table ([`bat`]) describe the disk; BAT updates go through
//! the metadata log ([`log`], [`log_write`]) and a dirty log is replayed
//! on a read-write open ([`log_replay`]), as QEMU does.
//!
//! The driver is its layout, mapping, allocation and check on block-core's
//! shared engine: [`VhdxFormat`] implements `block_core::engine::Format`
//! ([`mod@format`]), the engine's `FormatNode` does the I/O, and the check
//! ([`check`]) is QEMU's vhdx check. Depends on block-core and crc32c.
#![warn(missing_docs)]

pub mod bat;
pub mod check;
pub mod create;
mod driver;
pub mod format;
pub mod guid;
pub mod header;
pub mod image;
pub mod log;
pub mod log_replay;
pub mod log_write;
pub mod metadata;
pub mod region;
#[cfg(test)]
mod tests;

pub use driver::VhdxDriver;
pub use format::{VhdxFormat, VhdxNode};

/// The driver's name: `blk create -f vhdx`, `info`'s "file format".
pub const DRIVER_NAME: &str = "vhdx";

block_core::register_driver!(VhdxDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("vhdx", [VhdxDriver::new()]);
