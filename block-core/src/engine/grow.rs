//! Growing a disk: the area a resize adds must read as zeros.
//!
//! Two things can show through it: stale data in the rest of the last
//! allocation unit (an earlier shrink left that unit mapped past the old
//! end) and a backing file longer than the old size. QEMU zeroes both
//! after growing an image; a format does it with [`zero_grown_area`],
//! through the data path, once its metadata maps the new size.

use super::format::Format;
use super::rangelock::RangeLock;
use super::write::GuestIo;
use crate::error::Result;
use crate::types::ZeroFlags;

/// Makes `[old, new)` of `format`'s disk, just grown from `old` to `new`
/// bytes, read as zeros where it would not: the rest of the allocation
/// unit holding the old end, and whatever the backing file has there.
/// Call with guest I/O quiesced (the allocation table is a fresh one).
pub fn zero_grown_area<F: Format + ?Sized>(format: &F, old: u64, new: u64) -> Result<()> {
    let lock = RangeLock::new();
    let io = GuestIo::new(format, &lock);
    let unit = format.allocation_unit();
    if !old.is_multiple_of(unit) {
        let tail_end = old.div_ceil(unit) * unit;
        io.write_zeroes(old, tail_end.min(new) - old, ZeroFlags::NONE)?;
    }
    if let Some(b) = format.backing() {
        let end = b.length()?.min(new);
        if end > old {
            io.write_zeroes(old, end - old, ZeroFlags::NONE)?;
        }
    }
    Ok(())
}
