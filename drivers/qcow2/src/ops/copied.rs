//! The COPIED flags of the active L1 and L2 tables against the refcounts
//! (QEMU's check_oflag_copied): a flag must be set exactly when the
//! cluster's refcount is 1. One walk serves check (report, repair) and
//! the snapshot operations (rebuild after the refcounts changed).

use crate::layout::header::{get_u64, put_u64};
use crate::layout::mapping::{ClusterType, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COPIED};
use crate::node::{Qcow2Node, WState};
use block_core::Result;

/// How [`Qcow2Node::walk_copied`] treats what it cannot read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Every L2 table; an unreadable refcount skips its entry, an
    /// unreadable L2 table is reported to the visitor as `None` (check).
    Tolerant,
    /// L2 tables with refcount 1 only; every read error is returned
    /// (rebuild after a snapshot operation).
    Strict,
}

impl Qcow2Node {
    /// Visits every active L1 and L2 entry whose COPIED flag disagrees
    /// with its refcount, as `Some(description)`; the entry's flag is
    /// flipped when `visit` answers true. Returns the flags flipped.
    pub(crate) fn walk_copied(
        &self,
        ws: &mut WState,
        walk: Walk,
        mut visit: impl FnMut(Option<String>) -> bool,
    ) -> Result<u64> {
        let g = self.geo();
        let es = g.l2_entry_size() as usize;
        let mut flipped = 0;
        let l1 = self.meta_read().l1.clone();
        for (i, &l1e) in l1.iter().enumerate() {
            let l2 = l1e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let rc = match self.get_refcount(ws, l2 / g.cs()) {
                Ok(rc) => rc,
                Err(e) if walk == Walk::Strict => return Err(e),
                Err(_) => continue,
            };
            let what =
                || format!("OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={rc}");
            if (rc == 1) != (l1e & OFLAG_COPIED != 0) && visit(Some(what())) {
                let mut m = self.meta_write();
                m.l1[i] = l1e ^ OFLAG_COPIED;
                m.l1_dirty = true;
                flipped += 1;
            }
            if g.in_cluster(l2) != 0 || (walk == Walk::Strict && rc != 1) {
                continue;
            }
            let table = match self.l2_table(l2) {
                Ok(t) => t,
                Err(e) if walk == Walk::Strict => return Err(e),
                Err(_) => {
                    visit(None);
                    continue;
                }
            };
            let d = table.read().clone();
            let mut changes = Vec::new();
            for j in 0..g.l2_entries() as usize {
                let e = get_u64(&d, j * es);
                let ct = g.cluster_type(e);
                if !matches!(ct, ClusterType::Normal | ClusterType::ZeroAlloc) {
                    continue;
                }
                let rc = match self.data_file {
                    Some(_) => 1,
                    None => match self.get_refcount(ws, (e & L2E_OFFSET_MASK) / g.cs()) {
                        Ok(v) => v,
                        Err(e) if walk == Walk::Strict => return Err(e),
                        Err(_) => continue,
                    },
                };
                let what = || format!("OFLAG_COPIED data cluster: l2_entry={e:x} refcount={rc}");
                if (rc == 1) != (e & OFLAG_COPIED != 0) && visit(Some(what())) {
                    changes.push((j, e ^ OFLAG_COPIED));
                }
            }
            if !changes.is_empty() {
                flipped += changes.len() as u64;
                let mut w = table.write();
                for (j, e) in changes {
                    put_u64(&mut w, j * es, e);
                }
            }
        }
        Ok(flipped)
    }
}
