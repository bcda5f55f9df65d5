//! Shrinking a refcount structure after the image shrank: the refcount
//! blocks that count nothing but themselves are dropped, and the end of
//! the used area tells where the file can be cut.
//!
//! Crash order of [`AllocState::drop_unused_refblocks`]: the table
//! entries naming the blocks are cleared and written first (by the
//! caller's write-back), then the blocks' clusters are freed. A crash in
//! between leaks the blocks; it never leaves a table naming a freed
//! cluster.

use super::refcount_alloc::{refcount_get, AllocState, RefcountStore};
use crate::error::Result;

impl AllocState {
    /// The refcount blocks that count no cluster but (maybe) themselves:
    /// (table index, offset, whether the block counts itself).
    fn unused_refblocks(&self, s: &dyn RefcountStore) -> Result<Vec<(usize, u64, bool)>> {
        let g = s.geometry();
        let (cs, e) = (g.cluster_size(), g.block_entries());
        let mut unused = Vec::new();
        for (i, rte) in self.reftable.iter().enumerate() {
            let off = rte & g.offset_mask;
            if off == 0 {
                continue;
            }
            let ci = off / cs;
            let own = (ci / e) as usize == i;
            let tab = s.refblock(off)?;
            let d = tab.read();
            if (0..e).all(|k| (own && k == ci % e) || refcount_get(&d, k, g.refcount_order) == 0) {
                unused.push((i, off, own));
            }
        }
        Ok(unused)
    }

    /// Drops the refcount blocks that count no cluster but (maybe)
    /// themselves: their table entries are cleared, `write_back` gets the
    /// dropped blocks' offsets (to forget them in its cache) and must put
    /// the table on disk; then their clusters are freed (a block that
    /// counted itself takes its own refcount with it). Returns how many
    /// were dropped.
    pub fn drop_unused_refblocks(
        &mut self,
        s: &dyn RefcountStore,
        write_back: impl FnOnce(&mut AllocState, &[u64]) -> Result<()>,
    ) -> Result<usize> {
        let unused = self.unused_refblocks(s)?;
        if unused.is_empty() {
            return Ok(0);
        }
        for &(i, _, _) in &unused {
            self.reftable[i] = 0;
        }
        self.reftable_dirty = true;
        let offsets: Vec<u64> = unused.iter().map(|u| u.1).collect();
        write_back(self, &offsets)?;
        let cs = s.geometry().cluster_size();
        for &(_, off, own) in &unused {
            if own {
                self.free_hint = self.free_hint.min(off / cs);
            } else {
                self.change(s, off / cs, -1)?;
            }
        }
        s.structure_changed(self);
        Ok(unused.len())
    }

    /// One past the last cluster below `clusters` with a nonzero refcount,
    /// but at least `min` (the clusters a file always keeps).
    pub fn used_end(&self, s: &dyn RefcountStore, clusters: u64, min: u64) -> Result<u64> {
        let mut end = clusters;
        while end > min && self.refcount(s, end - 1)? == 0 {
            end -= 1;
        }
        Ok(end)
    }

    /// The clusters below `end` with a nonzero refcount, counted up to
    /// `limit` (the count stops there).
    pub fn count_used(&self, s: &dyn RefcountStore, end: u64, limit: u64) -> Result<u64> {
        let mut used = 0;
        let mut ci = 0;
        while ci < end && used < limit {
            if self.refcount(s, ci)? != 0 {
                used += 1;
            }
            ci += 1;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::refcount_alloc::tests::fresh;

    #[test]
    fn blocks_counting_nothing_are_dropped_after_the_table_is_written() {
        // 512-byte clusters, 16-bit refcounts: 256 clusters per block.
        let (m, a) = fresh(4);
        let mut st = a.lock();
        st.reserved.push((0, 2));
        let low = st.alloc_clusters(&m, 1).unwrap() / 512;
        st.free_hint = 3 * 256 + 10;
        let high = st.alloc_clusters(&m, 1).unwrap() / 512;
        st.reserved.clear();
        assert!(st.reftable[3] != 0, "a block for the far cluster");
        assert_eq!(st.used_end(&m, 4 * 256, 1).unwrap(), 3 * 256 + 11);
        assert_eq!(st.count_used(&m, 4 * 256, 100).unwrap(), 4);
        assert_eq!(st.count_used(&m, 4 * 256, 2).unwrap(), 2);
        // Nothing to drop while both blocks count data.
        assert_eq!(
            st.drop_unused_refblocks(&m, |_, _| panic!("no write"))
                .unwrap(),
            0
        );
        st.change(&m, high, -1).unwrap();
        let block = st.reftable[3];
        let mut written = Vec::new();
        let n = st
            .drop_unused_refblocks(&m, |st, offs| {
                assert_eq!(st.reftable[3], 0, "entry cleared before the write");
                written.extend_from_slice(offs);
                Ok(())
            })
            .unwrap();
        assert_eq!((n, written), (1, vec![block]));
        assert!(st.reftable_dirty);
        assert_eq!(st.free_hint, block / 512, "its cluster is free again");
        assert_eq!(
            st.used_end(&m, 4 * 256, 1).unwrap(),
            low.max(st.reftable[0] / 512) + 1
        );
        assert_eq!(st.used_end(&m, 0, 1).unwrap(), 0);
    }
}
