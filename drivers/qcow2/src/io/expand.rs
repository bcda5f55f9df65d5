//! Expanding zero clusters into data clusters (downgrade to version 2,
//! which has no zero flag), in the active L1 table and in snapshots.

use crate::layout::header::{get_u64, put_u64};
use crate::layout::mapping::{
    ClusterType, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COPIED, OFLAG_ZERO,
};
use crate::node::{Qcow2Node, WState};
use block_core::Result;

impl Qcow2Node {
    /// Turns every zero cluster reachable from the active or a snapshot L1
    /// table into a normal cluster that reads as zeros: a preallocated one
    /// is zeroed in place; a plain one becomes unallocated without a
    /// backing file, else gets a new zeroed cluster. A shared L2 table is
    /// changed in place (every user sees the same zeros) and new clusters
    /// get its refcount.
    pub(crate) fn expand_zero_clusters(&self, ws: &mut WState) -> Result<()> {
        let g = self.geo();
        let cs = g.cs();
        let es = g.l2_entry_size() as usize;
        let has_backing = self.backing().is_some() || self.meta_read().h.backing_file.is_some();
        let mut tables: Vec<u64> = Vec::new();
        {
            let m = self.meta_read();
            tables.extend(m.l1.iter().map(|e| e & L1E_OFFSET_MASK));
            for s in &m.snapshots {
                let l1 = self.read_l1_table(s.l1_offset, s.l1_size)?;
                tables.extend(l1.iter().map(|e| e & L1E_OFFSET_MASK));
            }
        }
        tables.retain(|o| *o != 0);
        tables.sort_unstable();
        tables.dedup();
        let zeros = vec![0u8; cs as usize];
        for l2 in tables {
            let l2_rc = self.get_refcount(ws, l2 / cs)?.max(1);
            let t = self.l2_table(l2)?;
            let entries: Vec<u64> = t.read().chunks_exact(es).map(|c| get_u64(c, 0)).collect();
            for (i, e) in entries.into_iter().enumerate() {
                let new = match g.cluster_type(e) {
                    ClusterType::ZeroAlloc => {
                        let host = self.host_cluster(e, 0)?;
                        self.write_data(host, &zeros)?;
                        e & !OFLAG_ZERO
                    }
                    ClusterType::ZeroPlain if !has_backing => 0,
                    ClusterType::ZeroPlain => {
                        let host = self.alloc_clusters(ws, 1)?;
                        if l2_rc > 1 {
                            self.change_refcount(ws, host / cs, l2_rc as i64 - 1)?;
                        }
                        self.write_data(host, &zeros)?;
                        host | if l2_rc == 1 { OFLAG_COPIED } else { 0 }
                    }
                    _ => continue,
                };
                debug_assert_eq!(new & !L2E_OFFSET_MASK & !OFLAG_COPIED, 0);
                put_u64(&mut t.write(), i * es, new);
            }
            self.maybe_writeback(ws)?;
        }
        self.writeback(ws, true)
    }
}
