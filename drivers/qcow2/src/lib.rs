//! # blk-qcow2
//!
//! The qcow2 image format driver of blk: versions 2 and 3, backing files,
//! external data files, compressed clusters (deflate and zstd), extended
//! L2 entries, refcount widths of 1 to 64 bits, internal snapshots, lazy
//! refcounts, the corrupt bit with metadata overlap checks, consistency
//! checks with repair, persistent dirty bitmaps, and cache invalidation for
//! migration handoff.
//!
//! Depends on `block-core` only. See `docs/qcow2.md` for the cache, lock and
//! crash-consistency design.
#![warn(missing_docs)]

mod amend;
mod bitmap;
pub mod cache;
mod check;
pub mod compress;
mod control;
mod create;
mod crypto;
mod damage;
mod driver;
mod error;
mod expand;
pub mod features;
mod flush;
pub mod header;
mod io;
mod make_empty;
pub mod mapping;
pub mod measure;
mod node;
mod nodeimpl;
mod open;
pub mod overlap;
mod prealloc;
mod rebuild;
mod refcount;
mod reforder;
mod snapops;
pub mod snapshot;
mod snapview;
mod trim;
mod truncate;
mod zero;

#[cfg(test)]
mod tests;

pub use amend::amend_options;
pub use create::create_options;
pub use driver::Qcow2Driver;
pub use node::Qcow2Node;
pub use refcount::{rc_get, rc_set};

block_core::register_driver!(Qcow2Driver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("qcow2", [Qcow2Driver::new()]);
