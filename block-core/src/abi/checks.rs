//! Validation of what a careless C peer passes across the ABI: I/O vectors
//! (no NULL buffers, no overlapping read buffers, no length overflow),
//! output pointers (never NULL), table sizes (no more than the peer's
//! declared minor defines) and the plugin header (copied like any other
//! table). Each check refuses with a clear error instead of undefined
//! behaviour; docs/abi.md, "Preconditions for C callers and plugins",
//! lists which preconditions are checked.

use super::{BcIoVec, BcPluginHeader, BLK_ABI_MINOR};
use crate::error::{BlockError, ErrorKind, Result};

/// The most I/O vectors one read or write may carry (a larger `niov` is
/// refused before anything is allocated for it).
pub const MAX_IOVECS: usize = 1 << 20;

/// Byte size of the ABI 1.0 plugin header: every field a 1.x host needs
/// (magic through `drivers`). A shorter header is refused; a longer one
/// (a later minor, or a host that appended a field) is copied up to the
/// smaller of the two sizes.
pub const PLUGIN_HEADER_MINOR0_SIZE: usize =
    std::mem::offset_of!(BcPluginHeader, drivers) + std::mem::size_of::<usize>();

/// Refuses a NULL output pointer (`what` names the parameter).
pub(crate) fn require_out<T>(op: &str, what: &str, p: *const T) -> Result<()> {
    if p.is_null() {
        return Err(BlockError::invalid(
            op.to_string(),
            format!("the output pointer `{what}` is NULL"),
        ));
    }
    Ok(())
}

/// Refuses a NULL node, driver or host services context.
pub(crate) fn require_ctx<T>(op: &str, ctx: *const T) -> Result<()> {
    if ctx.is_null() {
        return Err(BlockError::invalid(
            op.to_string(),
            "the context `ctx` is NULL",
        ));
    }
    Ok(())
}

/// The caller's I/O vector for a request at `offset`, checked: the array
/// is not NULL (unless `niov` is 0), has at most [`MAX_IOVECS`] entries, no
/// entry has a NULL pointer with a non-zero length, the lengths add up
/// without overflow (and to at most `isize::MAX`), and the request's end
/// fits in a `u64`. For a read (`disjoint`), no two buffers may share a
/// byte: they become `&mut [u8]` slices, which must never alias.
///
/// # Safety
/// When `iov` is not NULL it must point to `niov` readable entries.
pub(crate) unsafe fn checked_iovecs<'a>(
    op: &str,
    offset: u64,
    iov: &'a *const BcIoVec,
    niov: usize,
    disjoint: bool,
) -> Result<&'a [BcIoVec]> {
    let bad = |m: String| Err(BlockError::invalid(op.to_string(), m).at(offset));
    if niov == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return bad(format!("the iovec array is NULL but niov is {niov}"));
    }
    if niov > MAX_IOVECS {
        return bad(format!("{niov} iovecs; at most {MAX_IOVECS} are accepted"));
    }
    let v = std::slice::from_raw_parts(*iov, niov);
    let mut total: usize = 0;
    for (i, e) in v.iter().enumerate() {
        if e.ptr.is_null() && e.len != 0 {
            return bad(format!(
                "iovec {i} has a NULL pointer and a length of {} bytes",
                e.len
            ));
        }
        total = match total.checked_add(e.len) {
            Some(t) if t <= isize::MAX as usize => t,
            _ => return bad(format!("the iovec lengths overflow at iovec {i}")),
        };
    }
    if offset.checked_add(total as u64).is_none() {
        return bad(format!(
            "a request of {total} bytes at offset {offset} ends past 2^64 (overflow)"
        ));
    }
    if disjoint {
        check_disjoint(op, offset, v)?;
    }
    Ok(v)
}

/// Refuses iovecs that share memory: sorts the non-empty `(start, end)`
/// ranges (on the stack for up to 16 entries) and compares neighbours.
fn check_disjoint(op: &str, offset: u64, v: &[BcIoVec]) -> Result<()> {
    if v.len() < 2 {
        return Ok(());
    }
    const STACK: usize = 16;
    let mut stack = [(0usize, 0usize, 0usize); STACK];
    let mut heap = Vec::new();
    let ranges: &mut [(usize, usize, usize)] = if v.len() <= STACK {
        &mut stack[..v.len()]
    } else {
        heap.resize(v.len(), (0, 0, 0));
        &mut heap
    };
    let mut n = 0;
    for (i, e) in v.iter().enumerate() {
        if e.len != 0 {
            let start = e.ptr as usize;
            ranges[n] = (start, start.saturating_add(e.len), i);
            n += 1;
        }
    }
    let ranges = &mut ranges[..n];
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((_, end_a, a), (start_b, end_b, b)) = (w[0], w[1]);
        if end_a > start_b {
            let shared = end_a.min(end_b) - start_b;
            return Err(BlockError::invalid(
                op.to_string(),
                format!(
                    "iovecs {} and {} overlap ({shared} bytes in common); read buffers must be disjoint",
                    a.min(b),
                    a.max(b)
                ),
            )
            .at(offset));
        }
    }
    Ok(())
}

/// Refuses a table whose `struct_size` (`found`) no producer of ABI minor
/// `peer_minor` sends: more than that minor defines (it would make the
/// reader call junk past the table) or between two minors' sizes. A peer
/// of a minor this build does not know may send any size (the reader
/// copies what it knows).
pub(crate) fn check_table_size(
    table: &str,
    found: usize,
    peer_minor: u16,
    size_at_minor: fn(u16) -> usize,
) -> Result<()> {
    if peer_minor > BLK_ABI_MINOR {
        return Ok(());
    }
    let max = size_at_minor(peer_minor);
    let mismatch = |m: String| Err(BlockError::new(ErrorKind::AbiMismatch, "load plugin", m));
    if found > max {
        return mismatch(format!(
            "{table} struct_size is {found} bytes, but ABI 1.{peer_minor} (the peer's declared \
             minor) defines at most {max}: expected {max}, found {found}"
        ));
    }
    if !(0..=peer_minor).any(|m| size_at_minor(m) == found) {
        let mut valid: Vec<usize> = (0..=peer_minor).map(size_at_minor).collect();
        valid.dedup();
        let valid: Vec<String> = valid.iter().map(|s| s.to_string()).collect();
        return mismatch(format!(
            "{table} struct_size is {found} bytes, which no ABI 1.{peer_minor} producer sends: \
             expected one of {}, found {found}",
            valid.join(", ")
        ));
    }
    Ok(())
}

/// Copies a peer's table after checking its `struct_size` against the
/// sizes of the peer's declared minor ([`check_table_size`]); `Ok(None)`
/// as [`super::copy_table`] for a NULL or sizeless table.
///
/// # Safety
/// As [`super::copy_table`], except that `struct_size` is checked rather
/// than trusted as far as the peer's minor defines sizes.
pub(crate) unsafe fn copy_peer_table<T: Copy>(
    table: &str,
    src: *const T,
    peer_minor: u16,
    size_at_minor: fn(u16) -> usize,
) -> Result<Option<T>> {
    if src.is_null() {
        return Ok(None);
    }
    let size = *(src as *const usize);
    if size < std::mem::size_of::<usize>() {
        return Ok(None);
    }
    check_table_size(table, size, peer_minor, size_at_minor)?;
    Ok(super::copy_table(src))
}

/// Copies the first `min(size, size_of::<T>())` bytes at `src` into a
/// zero-filled `T`: the copy every reader of a growing table makes, for
/// tables whose size field is not a leading `usize` (the plugin header).
///
/// # Safety
/// `src` must be readable for `min(size, size_of::<T>())` bytes and `T`
/// valid when zero-filled (integers, raw pointers, `Option<fn>`).
pub unsafe fn copy_prefix<T: Copy>(src: *const T, size: usize) -> T {
    let n = size.min(std::mem::size_of::<T>());
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    std::ptr::copy_nonoverlapping(src as *const u8, out.as_mut_ptr() as *mut u8, n);
    out.assume_init()
}

/// Reads a plugin header of any size: refuses one shorter than
/// [`PLUGIN_HEADER_MINOR0_SIZE`] naming both sizes, and copies the rest
/// with [`copy_prefix`] (fields past the plugin's size stay zero).
///
/// # Safety
/// `p` must be NULL or point to a header whose `struct_size` (a `u32`
/// after magic and versions) truthfully states how many bytes are readable.
pub unsafe fn read_plugin_header(p: *const BcPluginHeader) -> Result<BcPluginHeader> {
    let mismatch = |m: String| Err(BlockError::new(ErrorKind::AbiMismatch, "load plugin", m));
    if p.is_null() {
        return mismatch("the plugin entry point returned no header".into());
    }
    let size = std::ptr::read_unaligned(std::ptr::addr_of!((*p).struct_size)) as usize;
    let own = std::mem::size_of::<BcPluginHeader>();
    if size < PLUGIN_HEADER_MINOR0_SIZE {
        return mismatch(format!(
            "the plugin header is too short: expected at least {PLUGIN_HEADER_MINOR0_SIZE} bytes \
             (the ABI 1.0 header; this host's is {own}), found {size}"
        ));
    }
    Ok(copy_prefix(p, size))
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
