//! Zero detection in copied data, as qemu-img's convert splits a buffer
//! into data runs and zero runs (`is_allocated_sectors` and
//! `is_allocated_sectors_min`), so that a target keeps the holes `-S`
//! asks for.

/// The unit of zero detection.
pub(crate) const SECTOR: u64 = 512;

/// Whether sector `i` of `buf` (the last one may be short) is all zeroes.
fn sector_is_zero(buf: &[u8], i: usize) -> bool {
    let s = i * SECTOR as usize;
    buf[s..(s + SECTOR as usize).min(buf.len())]
        .iter()
        .all(|&b| b == 0)
}

/// qemu-img's `is_allocated_sectors`: whether the first run of `n` sectors
/// holds data, and its length, a run end not on `alignment` moved (zero runs
/// end down, data runs up; a zero run no longer than the tail counts as data).
fn is_allocated_sectors(buf: &[u8], n: usize, sector_num: u64, alignment: u64) -> (bool, usize) {
    if n == 0 {
        return (false, 0);
    }
    let mut is_zero = sector_is_zero(buf, 0);
    let mut i = 1;
    while i < n && sector_is_zero(buf, i) == is_zero {
        i += 1;
    }
    if i == n {
        return (!is_zero, i);
    }
    let tail = ((sector_num + i as u64) & (alignment - 1)) as usize;
    if tail != 0 {
        if is_zero && i <= tail {
            is_zero = false;
        }
        if !is_zero {
            i = (i + alignment as usize - tail).min(n);
        } else {
            i -= tail;
        }
    }
    (!is_zero, i)
}

/// qemu-img's `is_allocated_sectors_min`: leading zero sectors are a zero
/// run whatever their number; after data, only zero runs of at least `min`
/// sectors end the data run.
pub(crate) fn is_allocated_sectors_min(
    buf: &[u8],
    n: usize,
    min: usize,
    sector_num: u64,
    alignment: u64,
) -> (bool, usize) {
    let min = min.min(n);
    let (alloc, first) = is_allocated_sectors(buf, n, sector_num, alignment);
    if !alloc {
        return (false, first);
    }
    let mut used = first;
    let mut checked = first;
    while checked < n {
        let (alloc, k) = is_allocated_sectors(
            &buf[checked * SECTOR as usize..],
            n - checked,
            sector_num + checked as u64,
            alignment,
        );
        checked += k;
        if alloc {
            used = checked;
        } else if k >= min {
            break;
        }
    }
    (true, used)
}
