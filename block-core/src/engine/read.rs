//! The read loop: walks a guest range through its mappings, merges
//! neighbouring mappings of the same kind (contiguous host data in the same
//! child becomes ONE child request) and reads each run straight into the
//! caller's buffers.

use super::format::{ChildRef, Format, Mapping};
use super::iov;
use crate::error::{BlockError, ErrorKind, Result};
use crate::node::{iov_len_mut, BlockNode};
use crate::types::ReqFlags;
use std::io::IoSliceMut;
use std::sync::Arc;

/// What the read loop needs from a format. [`super::FormatNode`] provides it
/// for every [`super::Format`]; a driver with its own node can implement it
/// to reuse the loop.
pub trait MappedSource {
    /// What backs `[offset, offset+len)` (see [`super::Format::map`]).
    fn map(&self, offset: u64, len: u64) -> Result<Mapping>;
    /// The node of `child`.
    fn child_node(&self, child: ChildRef) -> Result<Arc<dyn BlockNode>>;
    /// Fills `bufs` with the content of an unallocated range at `offset`
    /// (the backing node's, zeros past its end or without one).
    fn read_unallocated(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()>;
    /// Fills `buf` with a special (compressed, ...) range at `offset`.
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// Every format is a mapped source: its children, its backing node, its
/// special reads.
impl<F: Format + ?Sized> MappedSource for F {
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        Format::map(self, offset, len)
    }
    fn child_node(&self, child: ChildRef) -> Result<Arc<dyn BlockNode>> {
        self.child(child).ok_or_else(|| {
            BlockError::corrupt(
                "map",
                format!(
                    "mapping names a missing {} child {}",
                    child.role.as_str(),
                    child.index
                ),
            )
        })
    }
    fn read_unallocated(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()> {
        read_backing(self.backing().as_deref(), offset, bufs)
    }
    fn read_special(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        Format::read_special(self, offset, buf)
    }
}

/// `b` appended to `a` when both are one run (same kind; for data, the same
/// child and contiguous host offsets).
fn merge(a: Mapping, b: Mapping) -> Option<Mapping> {
    match (a, b) {
        (
            Mapping::Data {
                child,
                host_offset,
                len,
                writable,
            },
            Mapping::Data {
                child: c2,
                host_offset: h2,
                len: l2,
                writable: w2,
            },
        ) if child == c2 && host_offset.checked_add(len) == Some(h2) => Some(Mapping::Data {
            child,
            host_offset,
            len: len + l2,
            writable: writable && w2,
        }),
        (
            Mapping::Zero {
                len,
                allocated,
                host,
            },
            Mapping::Zero { len: l2, .. },
        ) => Some(Mapping::Zero {
            len: len + l2,
            allocated,
            host,
        }),
        (Mapping::Unallocated { len, host }, Mapping::Unallocated { len: l2, .. }) => {
            Some(Mapping::Unallocated {
                len: len + l2,
                host,
            })
        }
        _ => None,
    }
}

/// Asks `src` for the mapping at `offset` and checks its length.
pub(crate) fn checked_map<S: MappedSource + ?Sized>(
    src: &S,
    offset: u64,
    len: u64,
) -> Result<Mapping> {
    let m = src.map(offset, len)?;
    if m.is_empty() || m.len() > len {
        return Err(BlockError::new(
            ErrorKind::Corrupt,
            "read",
            format!("format mapped {} bytes for a {len}-byte range", m.len()),
        )
        .at(offset));
    }
    Ok(m)
}

/// Reads guest bytes at `offset` into `bufs` through `src`'s mappings.
/// Bounds are the caller's business. Special ranges go through one bounce
/// buffer of their size; everything else is read in place.
pub fn read_mapped<S: MappedSource + ?Sized>(
    src: &S,
    offset: u64,
    bufs: &mut [IoSliceMut<'_>],
) -> Result<()> {
    let total = iov_len_mut(bufs);
    let mut pos = 0u64;
    let mut pending: Option<Mapping> = None;
    while pos < total {
        let mut run = match pending.take() {
            Some(m) => m,
            None => checked_map(src, offset + pos, total - pos)?,
        };
        // Merge following mappings into this run while they continue it.
        if !matches!(run, Mapping::Special { .. }) {
            while pos + run.len() < total {
                let at = pos + run.len();
                let next = checked_map(src, offset + at, total - at)?;
                match merge(run, next) {
                    Some(m) => run = m,
                    None => {
                        pending = Some(next);
                        break;
                    }
                }
            }
        }
        let len = run.len();
        let guest = offset + pos;
        iov::with_sub_mut(bufs, pos, len, |sub| -> Result<()> {
            match run {
                Mapping::Data {
                    child, host_offset, ..
                } => src
                    .child_node(child)?
                    .read_vectored(host_offset, sub, ReqFlags::NONE),
                Mapping::Zero { .. } => {
                    iov::zero_mut(sub);
                    Ok(())
                }
                Mapping::Unallocated { .. } => src.read_unallocated(guest, sub),
                Mapping::Special { .. } => {
                    let mut tmp = vec![0u8; len as usize];
                    src.read_special(guest, &mut tmp)?;
                    iov::copy_into(sub, &tmp);
                    Ok(())
                }
            }
        })?;
        pos += len;
    }
    Ok(())
}

/// Reads `bufs` at `offset` from `backing` (zeros without one and past its end).
pub fn read_backing(
    backing: Option<&dyn BlockNode>,
    offset: u64,
    bufs: &mut [IoSliceMut<'_>],
) -> Result<()> {
    let Some(b) = backing else {
        iov::zero_mut(bufs);
        return Ok(());
    };
    let total = iov_len_mut(bufs);
    let blen = b.length()?;
    let avail = blen.saturating_sub(offset).min(total);
    if avail > 0 {
        iov::with_sub_mut(bufs, 0, avail, |sub| {
            b.read_vectored(offset, sub, ReqFlags::NONE)
        })?;
    }
    if avail < total {
        iov::with_sub_mut(bufs, avail, total - avail, iov::zero_mut);
    }
    Ok(())
}
