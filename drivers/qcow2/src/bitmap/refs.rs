//! The clusters the bitmaps use on disk, for `check`: the directory, every
//! bitmap table and every data cluster the tables name (QEMU's
//! `qcow2_check_bitmaps_refcounts`). Read from the disk, not from memory:
//! check compares the on-disk references.

use super::{ext_of, read_directory, read_table};
use crate::bitmap::dir::TABLE_OFFSET_MASK;
use crate::node::Qcow2Node;
use block_core::{CheckReport, Result};

impl Qcow2Node {
    /// The host ranges `(offset, length)` the bitmaps extension references.
    /// A broken extension, directory or table counts as a corruption (and
    /// what could not be read is not counted).
    pub(crate) fn bitmap_references(&self, rep: &mut CheckReport) -> Result<Vec<(u64, u64)>> {
        let h = self.meta_read().h.clone();
        let Some(ext) = ext_of(&h) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let ext = match ext {
            Ok(e) => e,
            Err(e) => {
                log::error!("qcow2 check: bitmaps extension: {e}");
                rep.corruptions += 1;
                return Ok(out);
            }
        };
        let cs = self.geo().cs();
        let flen = self.file.length()?;
        out.push((ext.dir_offset, ext.dir_size));
        let dir = match read_directory(&self.file, &h, &ext, flen) {
            Ok(d) => d,
            Err(e) => {
                log::error!("qcow2 check: bitmap directory: {e}");
                rep.corruptions += 1;
                return Ok(out);
            }
        };
        for e in &dir {
            out.push((e.table_offset, u64::from(e.table_size) * 8));
            match read_table(&self.file, e, cs, flen) {
                Ok(t) => {
                    for x in t {
                        let off = x & TABLE_OFFSET_MASK;
                        if off != 0 {
                            out.push((off, cs));
                        }
                    }
                }
                Err(err) => {
                    log::error!("qcow2 check: bitmap '{}': {err}", e.name);
                    rep.corruptions += 1;
                }
            }
        }
        Ok(out)
    }
}
