//! The clusters the bitmaps use on disk, for `check`: the directory, every
//! bitmap table and every data cluster the tables name (QEMU's
//! `qcow2_check_bitmaps_refcounts`). Read from the disk, not from memory:
//! check compares the on-disk references. The open already refused
//! everything QEMU refuses (bitmap/mod.rs `load`), so the directory parses
//! here; what remains are references past the end of the file (counted,
//! and reported by the refcount walk as QEMU reports them) and damaged
//! tables of bitmaps in use, which QEMU does not read at open: check
//! counts a corruption and fails with EINVAL, as QEMU's does.

use super::{ext_of, read_directory_bytes, read_table_raw, table_entry_valid};
use crate::bitmap::dir::{parse_entries, TABLE_OFFSET_MASK};
use crate::node::Qcow2Node;
use block_core::{BlockError, CheckReport, Result};

impl Qcow2Node {
    /// The host ranges `(offset, length)` the bitmaps extension references.
    pub(crate) fn bitmap_references(&self, rep: &mut CheckReport) -> Result<Vec<(u64, u64)>> {
        let h = self.meta_read().h.clone();
        let Some(ext) = ext_of(&h) else {
            return Ok(Vec::new());
        };
        let ext = ext.inspect_err(|_| rep.corruptions += 1)?;
        let cs = self.geo().cs();
        let flen = self.file.length()?;
        let mut out = vec![(ext.dir_offset, ext.dir_size)];
        let buf = read_directory_bytes(&self.file, &ext, flen)?;
        let dir = parse_entries(&buf, &ext, cs, h.size).inspect_err(|_| {
            rep.corruptions += 1;
        })?;
        for e in &dir {
            out.push((e.table_offset, u64::from(e.table_size) * 8));
            let table = read_table_raw(&self.file, e, flen)?;
            if table.iter().any(|&x| !table_entry_valid(x, cs)) {
                log::debug!("qcow2 check: bitmap '{}' has a damaged table", e.name);
                rep.corruptions += 1;
                return Err(BlockError::invalid(
                    "check",
                    format!("bitmap '{}' has a damaged bitmap table", e.name),
                ));
            }
            out.extend(
                table
                    .iter()
                    .map(|x| x & TABLE_OFFSET_MASK)
                    .filter(|&o| o != 0)
                    .map(|o| (o, cs)),
            );
        }
        Ok(out)
    }
}
