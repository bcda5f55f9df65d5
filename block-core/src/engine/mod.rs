//! The format engine: what image format drivers share.
//!
//! The metadata pieces (docs/engine-metadata.md): the on-disk struct
//! codec, the table cache with write-back ordering, the refcount-based
//! and append (BAT-style) allocators, the compression codecs, and the
//! check/repair support (computed refcounts, comparison, rebuild).

pub mod append_alloc;
pub mod check;
pub mod codec;
#[cfg(feature = "compression")]
pub mod compression;
pub mod rebuild;
pub mod refcount_alloc;
pub mod table_cache;
pub mod writeback;
