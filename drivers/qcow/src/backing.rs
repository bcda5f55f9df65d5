//! The backing reference and emptying (`blk commit`): QEMU's qcow cannot
//! change its stored backing file name (`rebase` answers "not
//! supported"), and empties an image by zeroing its L1 table and cutting
//! the file after it.

use crate::format::QcowFormat;
use crate::header::ENDIAN;
use block_core::control::BackingControl;
use block_core::{BlockError, BlockNodeExt, Preallocation, Result};

impl BackingControl for QcowFormat {
    fn change_backing_file(&self, _filename: Option<&str>, _format: Option<&str>) -> Result<()> {
        Err(BlockError::unsupported("change backing file").in_file(&self.filename))
    }

    /// Every cluster unallocated again: the zeroed L1 table is made
    /// durable first, then the L2 tables and clusters after it are cut
    /// off.
    fn make_empty(&self) -> Result<()> {
        let mut m = self.meta_mut();
        let l1_end = m.header.l1_table_offset + m.l1.len() as u64 * 8;
        let zeros = block_core::engine::codec::u64_table_bytes(&vec![0; m.l1.len()], ENDIAN);
        self.file
            .write_at(m.header.l1_table_offset, &zeros)
            .and_then(|_| self.file.flush())
            .map_err(|e| self.ctx(e))?;
        m.l1.iter_mut().for_each(|e| *e = 0);
        self.l2.clear();
        self.file
            .truncate(l1_end.max(m.header_end), Preallocation::Off)
            .map_err(|e| self.ctx(e))?;
        m.alloc.reset(l1_end.max(m.header_end));
        Ok(())
    }
}
