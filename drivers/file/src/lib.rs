//! # blk-file
//!
//! The `file` protocol driver: a regular file (or block device) accessed with
//! positional I/O, `fdatasync` for flush, `fallocate` for discard and
//! zero-writes where the filesystem supports them, and `SEEK_DATA`/`SEEK_HOLE`
//! for block status. Depends on block-core only.
#![warn(missing_docs)]

mod create_attrs;
mod driver;
#[cfg(test)]
mod io_tests;
pub mod lock;
mod node;
mod sys;
#[cfg(test)]
mod tests;

pub use driver::FileDriver;
pub use node::FileNode;

block_core::register_driver!(FileDriver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("file", [FileDriver::new()]);
