//! The shared engine for image formats: a format answers mapping questions
//! ([`Format`]) and [`FormatNode`] turns those answers into a complete
//! [`crate::BlockNode`] (bounds, gates, vectored I/O with coalescing of
//! contiguous host ranges, backing reads, copy-on-write, zero and discard
//! emulation, FUA, serialisation of allocating writes, block status).
//!
//! This module tree is independent of [`crate::abi`]: a format built on it is
//! an ordinary `BlockNode` and crosses the ABI like any other node. See
//! docs/architecture.md ("The format engine") for the contract and a worked
//! example.

mod format;
pub mod iov;
mod node;
mod rangelock;
mod read;

#[cfg(test)]
mod tests;

pub use format::{Allocation, ChildRef, Format, Mapping};
pub use node::FormatNode;
pub use rangelock::{RangeGuard, RangeLock};
pub use read::{read_backing, read_mapped, MappedSource};
