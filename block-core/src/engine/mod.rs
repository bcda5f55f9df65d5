//! The shared engine for image formats, a module tree apart from
//! [`crate::abi`]: a format built on it is an ordinary `BlockNode` and
//! crosses the ABI like any other node.
//!
//! - The data path: a format answers mapping questions ([`Format`]) and
//!   [`FormatNode`] turns those answers into a complete [`crate::BlockNode`]
//!   (bounds, gates, vectored I/O with coalescing of contiguous host ranges,
//!   backing reads, copy-on-write, zero and discard emulation, FUA,
//!   serialisation of allocating writes, block status); [`read_mapped`] is
//!   the read loop alone, for drivers that keep their own node. See
//!   docs/architecture.md ("The format engine").
//! - The metadata pieces (docs/engine-metadata.md): the on-disk struct
//!   codec, the table cache with write-back ordering, the refcount-based
//!   and append (BAT-style) allocators (with the shrinking of a refcount
//!   structure), the compression codecs, header extension areas, padded
//!   reads of damaged tables, the map of metadata regions data writes
//!   must not hit, the backing child request, and the check/repair
//!   support (computed refcounts, comparison, rebuild).
//! - The management operations' shared steps: amend option parsing
//!   ([`amend_options`]), the create flow's backing, size and initial
//!   write ([`create`]), the `encrypt.` options and their refusals
//!   ([`encryption_options`]), and the cluster-counting `measure`
//!   ([`measure`]).

pub mod amend_options;
pub mod append_alloc;
pub mod backing_child;
pub mod block_table;
pub mod check;
pub mod codec;
#[cfg(feature = "compression")]
pub mod compression;
pub mod create;
pub mod encryption_options;
pub mod extensions;
mod format;
mod grow;
pub mod iov;
pub mod luks;
pub mod measure;
mod node;
pub mod overlap;
pub mod padded_read;
mod rangelock;
mod read;
pub mod rebuild;
pub mod refcount_alloc;
mod refcount_shrink;
pub mod table_cache;
mod write;
pub mod writeback;

#[cfg(test)]
mod tests;

pub use format::{Allocation, ChildRef, Format, HostRef, Mapping};
pub use grow::zero_grown_area;
pub use node::FormatNode;
pub use rangelock::{RangeGuard, RangeLock};
pub use read::{read_backing, read_mapped, MappedSource};
pub use write::GuestIo;
