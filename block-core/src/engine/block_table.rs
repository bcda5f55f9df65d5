//! One-level tables of u32 entries, one entry per fixed-size guest block,
//! as the BAT of parallels, VDI, VPC and the SDK template format.
//!
//! The table's size comes from an untrusted header: [`read_u32_table`]
//! bounds it (entry count times entry size against a fixed maximum, end
//! offset against overflow) before the buffer for it is allocated.
//! [`write_u32_entries`] writes back a run of entries in place; the caller
//! flushes the data the entries name first (data durable before the entry
//! naming it).

use crate::engine::codec::{checked_end, table_bytes, Endian};
use crate::{BlockNode, BlockNodeExt, Result};

/// The size of one table entry in bytes.
pub const ENTRY_SIZE: u64 = 4;

/// Reads a table of `entries` u32 entries of byte order `endian` at
/// `offset` of `file`, refusing (before allocating) a table larger than
/// `limit` bytes or one whose end overflows.
pub fn read_u32_table(
    file: &dyn BlockNode,
    op: &'static str,
    what: &str,
    offset: u64,
    entries: u64,
    endian: Endian,
    limit: u64,
) -> Result<Vec<u32>> {
    let bytes = table_bytes(op, what, entries, ENTRY_SIZE, limit)?;
    checked_end(op, what, offset, bytes as u64)?;
    let mut buf = vec![0u8; bytes];
    file.read_at(offset, &mut buf)?;
    Ok(u32_entries(&buf, endian))
}

/// The u32 entries of byte order `endian` in `buf` (a trailing partial
/// entry is ignored). The inverse of [`u32_table_bytes`].
pub fn u32_entries(buf: &[u8], endian: Endian) -> Vec<u32> {
    buf.chunks_exact(ENTRY_SIZE as usize)
        .map(|c| endian.u32(c, 0))
        .collect()
}

/// Serializes u32 entries in byte order `endian`.
pub fn u32_table_bytes(entries: &[u32], endian: Endian) -> Vec<u8> {
    let mut buf = vec![0u8; entries.len() * ENTRY_SIZE as usize];
    for (i, &e) in entries.iter().enumerate() {
        endian.put_u32(&mut buf, i * ENTRY_SIZE as usize, e);
    }
    buf
}

/// Writes `entries` as entries `first..first + entries.len()` of the table
/// at `table_offset` of `file`, then stores them in `table`, the in-memory
/// copy. The memory copy changes only once the write succeeded; the data
/// the entries name must already be durable.
pub fn write_u32_entries(
    file: &dyn BlockNode,
    table_offset: u64,
    endian: Endian,
    table: &mut [u32],
    first: usize,
    entries: &[u32],
) -> Result<()> {
    let at = table_offset + first as u64 * ENTRY_SIZE;
    file.write_at(at, &u32_table_bytes(entries, endian))?;
    table[first..first + entries.len()].copy_from_slice(entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let e = [0, 1, 0xdead_beef, u32::MAX];
            assert_eq!(u32_entries(&u32_table_bytes(&e, endian), endian), e);
        }
        assert_eq!(u32_table_bytes(&[1], Endian::Big), [0, 0, 0, 1]);
        assert_eq!(u32_table_bytes(&[1], Endian::Little), [1, 0, 0, 0]);
    }
}
