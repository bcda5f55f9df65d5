//! The backing-file reference (`change_backing_file`) and `make_empty`:
//! drop every mapping of the active L1 table (what `qemu-img commit` does
//! to the top image), so that all reads fall through to the backing file.

use crate::layout::header::get_u64;
use crate::layout::mapping::L1E_OFFSET_MASK;
use crate::node::Qcow2Node;
use block_core::{BackingControl, Result};

impl Qcow2Node {
    /// The entries of the L2 table at `l2_off` (make_empty, amend).
    pub(crate) fn l2_entries(&self, l2_off: u64) -> Result<Vec<u64>> {
        let (es, n) = (self.geo().l2_entry_size(), self.geo().l2_entries());
        let d = self.l2_table(l2_off)?;
        let d = d.read();
        Ok((0..n).map(|j| get_u64(&d, (j * es) as usize)).collect())
    }
}

impl BackingControl for Qcow2Node {
    fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()> {
        self.check_writable("change_backing_file")?;
        let mut ws = self.wlock();
        {
            let mut m = self.meta_write();
            let mut h = m.h.clone();
            h.backing_file = filename.filter(|s| !s.is_empty()).map(str::to_string);
            h.backing_format = h.backing_file.as_ref().and(format.map(str::to_string));
            // Make sure it fits before anything is written.
            h.clone().serialize().map_err(|e| self.ctx(e))?;
            m.h = h;
            m.header_dirty = true;
        }
        self.writeback(&mut ws, false)
    }

    /// Empties the active layer: every L2 table of the active L1 table is
    /// released (with the data clusters it references), the L1 entries
    /// become zero, freed clusters are discarded in the file child, and the
    /// file is truncated after its last used cluster. Snapshots keep their
    /// clusters (only the active layer's references are dropped).
    fn make_empty(&self) -> Result<()> {
        self.begin_write("make_empty", 0, 0)?;
        let mut ws = self.wlock();
        let l1_len = self.meta_read().l1.len();
        for i in 0..l1_len {
            let l2_off = self.meta_read().l1[i] & L1E_OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            for e in self.l2_entries(l2_off)? {
                self.defer_free_entry(&mut ws, e, true);
            }
            {
                let mut m = self.meta_write();
                m.l1[i] = 0;
                m.l1_dirty = true;
            }
            ws.defer(l2_off, 1, true);
            if ws.deferred.len() > 4096 {
                self.refresh_overlap(&self.meta_read(), &ws);
                self.writeback(&mut ws, false)?;
            }
        }
        self.refresh_overlap(&self.meta_read(), &ws);
        self.writeback(&mut ws, false)?;
        if !self.dirty_set.load(std::sync::atomic::Ordering::Acquire) {
            self.trim_file_tail(&mut ws)?;
        }
        Ok(())
    }
}
