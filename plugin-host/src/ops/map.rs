//! Map (qemu-img map): the allocation of an image through its backing
//! chain, as extents merged exactly as qemu-img merges them.

use super::progress::Reporter;
use super::{CancelToken, OpError, ProgressFn, Stage};
use crate::{GraphNode, Image};
use block_core::{ChildRole, ExtentFlags};
use serde::Serialize;
use std::sync::Arc;

/// The largest range asked of block status at once.
const STATUS_MAX: u64 = 1 << 30;

/// What to map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapRequest {
    /// The first guest offset mapped.
    pub start: u64,
    /// The most bytes mapped from `start` (`None`: to the end).
    pub max_length: Option<u64>,
    /// Merge as qemu-img's human output does: after the first extent,
    /// every extent that does not read as data counts as zeros, so that
    /// unmapped ranges of different kinds merge.
    pub merge_unmapped: bool,
}

/// One extent (qemu-img's `MapEntry`; serialised as `map --output=json`
/// names its fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapEntry {
    /// The guest offset.
    pub start: u64,
    /// The length in bytes.
    pub length: u64,
    /// The depth in the backing chain of the image that provides it (0 is
    /// the top; the chain length when no image allocates it).
    pub depth: usize,
    /// Allocated in the image at `depth`.
    pub present: bool,
    /// Reads as zeros.
    pub zero: bool,
    /// Holds data (read from a file rather than synthesised).
    pub data: bool,
    /// Stored compressed.
    pub compressed: bool,
    /// Where the data lives in `filename`, when it is at a known offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The file `offset` is in.
    #[serde(skip)]
    pub filename: Option<String>,
}

fn mergeable(curr: &MapEntry, next: &MapEntry) -> bool {
    if curr.length == 0 {
        return false;
    }
    if curr.zero != next.zero
        || curr.data != next.data
        || curr.compressed != next.compressed
        || curr.depth != next.depth
        || curr.present != next.present
        || curr.filename.is_some() != next.filename.is_some()
        || curr.offset.is_some() != next.offset.is_some()
    {
        return false;
    }
    if curr.filename != next.filename {
        return false;
    }
    if let (Some(a), Some(b)) = (curr.offset, next.offset) {
        if a + curr.length != b {
            return false;
        }
    }
    true
}

/// The name qemu-img prints in the "File" column for an offset that the
/// node `n` reported into its child `role`: the node's own name for its
/// `file` (as the protocol node shares it), the data file's name for an
/// external data file.
fn mapped_file_name(n: &GraphNode, role: ChildRole) -> Option<String> {
    match role {
        ChildRole::File => Some(n.filename.clone()),
        _ => n.child(role).map(|c| c.filename.clone()),
    }
}

fn status(
    img: &Image,
    chain: &[Arc<GraphNode>],
    offset: u64,
    bytes: u64,
) -> Result<MapEntry, OpError> {
    let (e, depth) = img
        .block_status_above(offset, bytes)
        .map_err(|e| OpError::at(Stage::BlockStatus, 0, offset, e))?;
    let f = e.flags;
    let has_offset = f.contains(ExtentFlags::OFFSET_VALID);
    Ok(MapEntry {
        start: offset,
        length: e.length.clamp(1, bytes),
        data: f.contains(ExtentFlags::DATA),
        zero: f.contains(ExtentFlags::ZERO),
        compressed: f.contains(ExtentFlags::COMPRESSED),
        offset: has_offset.then_some(e.mapped_offset),
        depth,
        present: f.contains(ExtentFlags::ALLOCATED),
        filename: if has_offset {
            chain
                .get(depth)
                .and_then(|n| mapped_file_name(n, e.mapped_child))
        } else {
            None
        },
    })
}

/// Maps `img`, handing each merged extent to `each` in order as soon as it
/// is complete, with `true` for the last one; `each` returns false to stop
/// early. Progress counts the
/// bytes from `start` mapped. The image is 0 in [`OpError::At`].
pub fn map_each(
    img: &Image,
    req: &MapRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
    each: &mut dyn FnMut(&MapEntry, bool) -> bool,
) -> Result<(), OpError> {
    let mut chain = vec![img.graph().clone()];
    let mut cur = img.graph().backing();
    while let Some(n) = cur {
        cur = n.backing();
        chain.push(n);
    }
    let mut length = img.length()?;
    if let Some(m) = req.max_length {
        length = length.min(req.start.saturating_add(m));
    }
    let reporter = Reporter::new(progress, length.saturating_sub(req.start), Stage::Map);
    reporter.report(0);
    let mut curr = MapEntry {
        start: req.start,
        ..MapEntry::default()
    };
    while curr.start + curr.length < length {
        cancel.check()?;
        let offset = curr.start + curr.length;
        let n = (length - offset).min(STATUS_MAX);
        let mut next = status(img, &chain, offset, n)?;
        reporter.report(offset + next.length - req.start);
        if mergeable(&curr, &next) {
            curr.length += next.length;
            continue;
        }
        if curr.length > 0 {
            if !each(&curr, false) {
                return Ok(());
            }
            if req.merge_unmapped && (!next.data || next.zero) {
                next.data = false;
                next.zero = true;
            }
        }
        curr = next;
    }
    each(&curr, true);
    reporter.report(length.saturating_sub(req.start));
    Ok(())
}

/// Maps `img` into a list of merged extents (see [`map_each`]).
pub fn map(
    img: &Image,
    req: &MapRequest,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<Vec<MapEntry>, OpError> {
    let mut out = Vec::new();
    map_each(img, req, progress, cancel, &mut |e, _| {
        out.push(e.clone());
        true
    })?;
    Ok(out)
}
