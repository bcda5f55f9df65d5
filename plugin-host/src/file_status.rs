//! Block status refined by the protocol layer, as QEMU's
//! `bdrv_co_do_block_status` does: when a format answers DATA with a valid
//! offset into one of its children (`file`, or `data-file` as
//! [`Extent::mapped_child`] says) and asks for it ([`ExtentFlags::RECURSE`]),
//! that child's own status at that offset (SEEK_DATA/SEEK_HOLE for the file
//! driver) splits the range: a hole in the file reads as zeros, so that part
//! is reported ZERO (and still DATA, ALLOCATED and mapped). A hole that runs
//! to the end of the file, or a range past it, is zero as a whole. Errors of
//! the file's status are ignored: it only adds precision.

use crate::graph::GraphNode;
use block_core::{ChildRole, Extent, ExtentFlags};

/// `e`, the status `node` gave for a range, refined by the status of the
/// child the mapped offset is in where the node asked for it;
/// [`ExtentFlags::RECURSE`] is cleared.
pub(crate) fn refine(node: &GraphNode, e: Extent) -> Extent {
    let f = e.flags;
    let mut out = Extent {
        flags: f.without(ExtentFlags::RECURSE),
        ..e
    };
    if !f.contains(ExtentFlags::RECURSE)
        || !f.contains(ExtentFlags::DATA)
        || !f.contains(ExtentFlags::OFFSET_VALID)
        || f.contains(ExtentFlags::ZERO)
    {
        return out;
    }
    if !matches!(e.mapped_child, ChildRole::File | ChildRole::DataFile) {
        return out;
    }
    let Some(file) = node.child(e.mapped_child) else {
        return out;
    };
    let Ok(file_len) = file.node.length() else {
        return out;
    };
    let map = e.mapped_offset;
    if map >= file_len {
        // Formats may map past the end of their file: that reads as zeros.
        out.flags = out.flags.with(ExtentFlags::ZERO);
        return out;
    }
    let want = e.length.min(file_len - map);
    match file.node.block_status(map, want) {
        Ok(fe) => {
            let n = fe.length.clamp(1, want);
            let zero = fe.flags.contains(ExtentFlags::ZERO);
            if zero {
                out.flags = out.flags.with(ExtentFlags::ZERO);
            }
            // A hole up to the end of the file covers the whole range.
            if !(zero && map + n == file_len) {
                out.length = n;
            }
        }
        Err(err) => log::debug!("block status of {}: {err}", file.filename),
    }
    out
}
