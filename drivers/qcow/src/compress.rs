//! Compressed clusters: raw deflate (4 KiB window, no zlib header, as
//! QEMU's qcow writes them), `size` bytes at a byte offset named by the L2
//! entry with bit 63 set and the size in the bits above the offset.
//!
//! A compressed write goes at the end of the file (sector-aligned, where
//! QEMU puts it), its data flushed before the L2 entry naming it. A
//! cluster that does not compress below the cluster size, or one already
//! holding plain data, is written plainly by the engine.

use crate::format::QcowFormat;
use crate::tables::{Cluster, COMPRESSED};
use block_core::engine::compression::Codec;
use block_core::engine::padded_read::read_padded;
use block_core::{BlockError, BlockNodeExt, Result};

impl QcowFormat {
    /// Fills `buf` with the guest bytes at `offset` of a compressed
    /// cluster (`buf` lies inside the cluster).
    pub fn read_compressed(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let (cs, c) = {
            let m = self.meta();
            let cs = m.header.cluster();
            (cs, self.lookup(&m, "read", offset / cs)?)
        };
        let Cluster::Compressed { offset: at, size } = c else {
            return Err(
                BlockError::corrupt("read", "the cluster is no longer compressed").at(offset),
            );
        };
        let mut z = vec![0u8; size as usize];
        // Bytes past the end of the file read as zeros, as in QEMU.
        read_padded(self.file.as_ref(), self.file.length()?, at, &mut z)?;
        let mut plain = vec![0u8; cs as usize];
        Codec::Deflate
            .decompress(&z, &mut plain)
            .map_err(|e| e.at(offset))?;
        let start = (offset % cs) as usize;
        buf.copy_from_slice(&plain[start..start + buf.len()]);
        Ok(())
    }

    /// Writes the cluster at `offset` (`data`: the cluster, or its part
    /// before the end of the disk) compressed. `Ok(false)`: the engine
    /// writes it plainly.
    pub fn write_compressed(&self, offset: u64, data: &[u8]) -> Result<bool> {
        let (cs, c, bits) = {
            let m = self.meta();
            let cs = m.header.cluster();
            let c = self.lookup(&m, "write", offset / cs)?;
            (cs, c, m.header.cluster_bits)
        };
        if matches!(c, Cluster::Data(_)) {
            return Ok(false);
        }
        let mut plain = data.to_vec();
        plain.resize(cs as usize, 0);
        let Some(z) = Codec::Deflate.compress(&plain, cs as usize)? else {
            return Ok(false);
        };
        let first = offset / cs;
        self.ensure_l2(first)?;
        let m = self.meta();
        let len = z.len() as u64;
        let at = m.alloc.allocate(len, 512)?;
        if at > m.header.compressed_offset_mask() {
            m.alloc.undo(at, len);
            return Ok(false);
        }
        if let Err(e) = self.file.write_at(at, &z) {
            m.alloc.undo(at, len);
            return Err(e);
        }
        self.file.flush()?;
        let entry = COMPRESSED | (len << (63 - bits)) | at;
        self.link(&m, first, &[entry])?;
        Ok(true)
    }
}
