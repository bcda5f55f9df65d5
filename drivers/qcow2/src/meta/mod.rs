//! Metadata and allocation of an open node: refcounts on the engine's
//! allocator and overlap-checked metadata writes (refcount.rs), writeback
//! in dependency order and the dirty bit (flush.rs), rebuilding the
//! refcount structure (rebuild.rs) and changing the refcount width
//! (reforder.rs). Each adds `impl Qcow2Node` blocks; imports go to
//! `crate::layout` and `crate::node` only (and among these files).

pub(crate) mod flush;
pub(crate) mod rebuild;
pub(crate) mod refcount;
pub(crate) mod reforder;
