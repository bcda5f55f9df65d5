//! Reads of metadata that may lie (partly) past the end of the image
//! file, the missing bytes reading as zeros.
//!
//! QEMU's file protocol reads a truncated file's missing bytes as zeros,
//! so a damaged image whose tables point past the end still opens: its
//! entries read as unallocated, `info` and `convert` work and `check`
//! reports the damage. A format that tolerates such images the same way
//! (for read-only opens and check) reads its tables with these.

use super::codec::{u64_entries, Endian};
use crate::error::Result;
use crate::node::{BlockNode, BlockNodeExt};

/// Reads `buf.len()` bytes at `offset` of `file`, which is `file_len`
/// bytes long; the part past its end reads as zeros.
pub fn read_padded(file: &dyn BlockNode, file_len: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
    let avail = file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
    buf[avail..].fill(0);
    if avail > 0 {
        file.read_at(offset, &mut buf[..avail])?;
    }
    Ok(())
}

/// Reads `entries` u64 entries of byte order `endian` at `offset` with
/// [`read_padded`] (entries past the end read as 0). The caller has
/// bounded `entries` (a validated header field).
pub fn read_u64s_padded(
    file: &dyn BlockNode,
    file_len: u64,
    offset: u64,
    entries: usize,
    endian: Endian,
) -> Result<Vec<u64>> {
    let mut buf = vec![0u8; entries * 8];
    read_padded(file, file_len, offset, &mut buf)?;
    Ok(u64_entries(&buf, endian))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MemFile;

    #[test]
    fn bytes_past_the_end_read_as_zeros() {
        let f = MemFile::with_data(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let mut b = [0xffu8; 6];
        read_padded(&f, 10, 7, &mut b).unwrap();
        assert_eq!(b, [8, 9, 10, 0, 0, 0]);
        let mut b = [0xffu8; 4];
        read_padded(&f, 10, 20, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        // A shorter length than the file's hides its tail.
        let mut b = [0xffu8; 4];
        read_padded(&f, 2, 0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 0, 0]);
        let t = read_u64s_padded(&f, 10, 0, 2, Endian::Big).unwrap();
        assert_eq!(t, [0x0102_0304_0506_0708, 0x090a_0000_0000_0000]);
        assert!(read_u64s_padded(&f, 10, 64, 0, Endian::Little)
            .unwrap()
            .is_empty());
    }
}
