//! The clusters the bitmaps use on disk, for `check`: the directory, every
//! bitmap table and every data cluster the tables name (QEMU's
//! `qcow2_check_bitmaps_refcounts`). Read from the disk, not from memory:
//! check compares the on-disk references.

use super::{ext_of, read_directory_bytes, read_table_raw, table_entry_valid};
use crate::bitmap::dir::TABLE_OFFSET_MASK;
use crate::bitmap::dir::{parse_entries, MAX_TABLE_ENTRIES};
use crate::header::MAX_HOST_OFFSET;
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
        if ext
            .dir_offset
            .checked_add(ext.dir_size)
            .is_some_and(|e| e <= MAX_HOST_OFFSET)
        {
            out.push((ext.dir_offset, ext.dir_size));
        }
        let dir = match read_directory_bytes(&self.file, &ext, flen)
            .and_then(|b| parse_entries(&b, &ext))
        {
            Ok(d) => d,
            Err(e) => {
                log::error!("qcow2 check: ERROR bitmap directory: {e}");
                rep.corruptions += 1;
                return Ok(out);
            }
        };
        for e in &dir {
            // An entry that breaks a constraint is a corruption; its table
            // still counts when it can be read, so that a repair does not
            // free what the directory names.
            if let Err(err) = e.check(cs, h.size, flen) {
                log::error!("qcow2 check: ERROR {}", err.message);
                rep.corruptions += 1;
                let readable = e.table_offset % cs == 0
                    && e.table_size <= MAX_TABLE_ENTRIES
                    && e.table_offset
                        .checked_add(u64::from(e.table_size) * 8)
                        .is_some_and(|end| end <= flen);
                if !readable {
                    continue;
                }
            }
            out.push((e.table_offset, u64::from(e.table_size) * 8));
            // A broken entry is a corruption; the others still count, so
            // that a repair does not free data a damaged table names.
            match read_table_raw(&self.file, e) {
                Ok(t) => {
                    for x in t {
                        let off = x & TABLE_OFFSET_MASK;
                        if !table_entry_valid(x, cs, flen) {
                            log::error!(
                                "qcow2 check: ERROR bitmap '{}' has an invalid table entry {x:#x}",
                                e.name
                            );
                            rep.corruptions += 1;
                            if off % cs != 0 || off + cs > flen {
                                continue;
                            }
                        }
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
