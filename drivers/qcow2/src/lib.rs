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

// Layers, each importing only those before it (see each folder's doc):
// layout <- node (state) <- meta <- io <- open <- ops <- driver; bitmap/
// spans them (its dir.rs, mem.rs and state.rs are below node, the rest
// above it).
mod bitmap;
mod driver;
mod io;
mod layout;
mod meta;
mod node;
mod open;
mod ops;

#[cfg(test)]
mod tests;

pub use driver::Qcow2Driver;
pub use layout::{compress, features, header, mapping, overlap, snapshot};
pub use meta::refcount::{rc_get, rc_set};
pub use node::cache;
pub use node::Qcow2Node;
pub use ops::amend::amend_options;
pub use ops::create::create_options;
pub use ops::measure;

block_core::register_driver!(Qcow2Driver::new());

#[cfg(feature = "plugin")]
block_core::export_plugin!("qcow2", [Qcow2Driver::new()]);
