//! A refcount-based cluster allocator (qcow2's, in a form other
//! refcounted formats can use).
//!
//! The image file is divided into clusters; a two-level structure counts
//! the references to each: a refcount table of u64 entries (the offsets
//! of refcount blocks, the low bits masked by
//! [`RefcountGeometry::offset_mask`]) and refcount blocks of
//! 2^`refcount_order`-bit entries (1..=64 bits; sub-byte widths least
//! significant bits first, wider ones big-endian, as QEMU lays them out).
//!
//! [`RefcountAllocator`] is its own type with its own lock: its
//! [`AllocState`] (the refcount table, the free-cluster search hint,
//! reserved ranges, deferred decrements) is touched only through
//! [`RefcountAllocator::lock`]. The refcount blocks themselves live in the
//! format's [`TableCache`](crate::engine::table_cache::TableCache) and are
//! reached, with everything else format-specific (where the refcount
//! table is named, overlap checks, cache invalidation), through the
//! [`RefcountStore`] the format implements.
//!
//! Crash consistency (docs/engine-metadata.md): increments are made in
//! cached refcount blocks that the format writes back before the metadata
//! using the clusters; decrements are deferred ([`AllocState::defer`])
//! until the metadata that dropped the references is on disk
//! ([`AllocState::apply_deferred`]), so a crash leaks clusters and never
//! leaves one referenced with a refcount that is too low.

use crate::engine::table_cache::Table;
use crate::error::{BlockError, ErrorKind, Result};
use std::sync::{Arc, Mutex, MutexGuard};

/// The shape of a refcount structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefcountGeometry {
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// log2 of the refcount width in bits (0..=6).
    pub refcount_order: u32,
    /// Host offsets must stay below this.
    pub max_host_offset: u64,
    /// Largest refcount table in bytes.
    pub max_reftable_bytes: u64,
    /// The bits of a refcount table entry holding the block offset.
    pub offset_mask: u64,
}

impl RefcountGeometry {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }
    /// Refcount entries per refcount block.
    pub fn block_entries(&self) -> u64 {
        (self.cluster_size() * 8) >> self.refcount_order
    }
    /// The largest refcount value.
    pub fn max_refcount(&self) -> u64 {
        if self.refcount_order >= 6 {
            u64::MAX
        } else {
            (1u64 << (1u32 << self.refcount_order)) - 1
        }
    }
}

/// Reads refcount entry `idx` of a refcount block of width 2^`order` bits.
pub fn refcount_get(d: &[u8], idx: u64, order: u32) -> u64 {
    let bits = 1u64 << order;
    if bits < 8 {
        let bit = idx * bits;
        let byte = d[(bit / 8) as usize];
        (u64::from(byte) >> (bit % 8)) & ((1 << bits) - 1)
    } else {
        let n = (bits / 8) as usize;
        let o = idx as usize * n;
        d[o..o + n]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | u64::from(b))
    }
}

/// Writes refcount entry `idx` of a refcount block of width 2^`order` bits.
pub fn refcount_set(d: &mut [u8], idx: u64, order: u32, v: u64) {
    let bits = 1u64 << order;
    if bits < 8 {
        let bit = idx * bits;
        let mask = ((1u64 << bits) - 1) as u8;
        let shift = (bit % 8) as u32;
        let b = &mut d[(bit / 8) as usize];
        *b = (*b & !(mask << shift)) | (((v as u8) & mask) << shift);
    } else {
        let n = (bits / 8) as usize;
        let o = idx as usize * n;
        for i in 0..n {
            d[o + i] = (v >> (8 * (n - 1 - i))) as u8;
        }
    }
}

/// A deferred refcount decrement, applied once the metadata that dropped
/// the reference is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredFree {
    /// First host offset.
    pub offset: u64,
    /// Clusters.
    pub clusters: u64,
    /// Discard the clusters in the file when their refcount drops to zero.
    pub punch: bool,
}

/// The allocator's state, behind [`RefcountAllocator`]'s lock.
#[derive(Debug, Default)]
pub struct AllocState {
    /// The refcount table (raw entries).
    pub reftable: Vec<u64>,
    /// The refcount table differs from the disk.
    pub reftable_dirty: bool,
    /// Where the search for free clusters starts (cluster index).
    pub free_hint: u64,
    /// Next free byte for sub-cluster allocations (0: none).
    pub free_byte_offset: u64,
    /// Decrements waiting for the next metadata writeback.
    pub deferred: Vec<DeferredFree>,
    /// Cluster ranges (start, count) being allocated: neither a refcount
    /// block nor another allocation may be placed there.
    pub reserved: Vec<(u64, u64)>,
}

/// The refcount allocator: its state behind its own lock.
#[derive(Debug, Default)]
pub struct RefcountAllocator {
    state: Mutex<AllocState>,
}

impl RefcountAllocator {
    /// An allocator over the refcount table `reftable`.
    pub fn new(reftable: Vec<u64>) -> RefcountAllocator {
        RefcountAllocator {
            state: Mutex::new(AllocState {
                reftable,
                ..AllocState::default()
            }),
        }
    }

    /// Exclusive access to the state (the allocation lock).
    pub fn lock(&self) -> MutexGuard<'_, AllocState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the allocator needs from the format.
pub trait RefcountStore {
    /// The current geometry.
    fn geometry(&self) -> RefcountGeometry;
    /// The refcount block at `offset` (from the format's table cache).
    fn refblock(&self, offset: u64) -> Result<Arc<Table>>;
    /// A new zeroed refcount block at `offset`, cached dirty.
    fn new_refblock(&self, offset: u64) -> Arc<Table>;
    /// False when `[offset, offset + len)` holds metadata that a refcount
    /// block placed there would overwrite.
    fn may_hold_refblock(&self, offset: u64, len: u64) -> bool;
    /// Names the refcount table at `offset` (`clusters` long) in the
    /// format's header (in memory, written back later); returns the old
    /// place `(offset, clusters)`.
    fn move_reftable(&self, offset: u64, clusters: u64) -> (u64, u64);
    /// The refcount table or a block changed place (refresh overlap maps).
    fn structure_changed(&self, state: &AllocState);
    /// The refcount of the cluster at `offset` dropped to zero: drop any
    /// cached table there.
    fn cluster_freed(&self, offset: u64);
    /// Called before deferred decrements are applied: waits until no
    /// in-flight request still uses a cluster about to be freed.
    fn quiesce_before_free(&self) {}
    /// Discards freed clusters in the file (best effort).
    fn discard(&self, offset: u64, len: u64);
    /// A corruption error (the format may mark the image corrupt).
    fn corruption(&self, offset: u64, msg: &str) -> BlockError;
    /// Adds the format's context (file name) to an error.
    fn context(&self, e: BlockError) -> BlockError {
        e
    }
}

fn no_space(s: &dyn RefcountStore, msg: &str) -> BlockError {
    s.context(BlockError::new(ErrorKind::NoSpace, "allocate", msg))
}

impl AllocState {
    fn is_reserved(&self, ci: u64) -> bool {
        self.reserved.iter().any(|&(s, n)| ci >= s && ci < s + n)
    }

    fn block_offset(&self, g: &RefcountGeometry, ci: u64) -> u64 {
        self.reftable
            .get((ci / g.block_entries()) as usize)
            .map_or(0, |e| e & g.offset_mask)
    }

    /// The refcount of cluster `ci` (0 when no refcount block covers it).
    pub fn refcount(&self, s: &dyn RefcountStore, ci: u64) -> Result<u64> {
        let g = s.geometry();
        let off = self.block_offset(&g, ci);
        if off == 0 {
            return Ok(0);
        }
        let tab = s.refblock(off)?;
        let d = tab.read();
        Ok(refcount_get(&d, ci % g.block_entries(), g.refcount_order))
    }

    /// Finds `n` contiguous free clusters (refcount 0, not reserved) from
    /// the hint on.
    pub fn find_free_run(&self, s: &dyn RefcountStore, n: u64) -> Result<u64> {
        let g = s.geometry();
        let max = g.max_host_offset / g.cluster_size();
        let mut ci = self.free_hint.max(1);
        let mut start = ci;
        let mut run = 0u64;
        while ci < max {
            if self.refcount(s, ci)? == 0 && !self.is_reserved(ci) {
                if run == 0 {
                    start = ci;
                }
                run += 1;
                if run == n {
                    return Ok(start);
                }
            } else {
                run = 0;
            }
            ci += 1;
        }
        Err(no_space(s, "no free cluster below the host offset limit"))
    }

    /// Makes sure a refcount block covers cluster `ci`. Returns true when
    /// it had to allocate something (callers re-plan their allocation).
    pub fn ensure_refblock(&mut self, s: &dyn RefcountStore, ci: u64) -> Result<bool> {
        let g = s.geometry();
        let e = g.block_entries();
        let cs = g.cluster_size();
        let t = ci / e;
        if t as usize >= self.reftable.len() {
            self.grow_reftable(s, t + 1)?;
            return Ok(true);
        }
        if self.reftable[t as usize] & g.offset_mask != 0 {
            return Ok(false);
        }
        // The block is missing, so every cluster it covers is free: place
        // it inside its own range so that it describes itself, unless that
        // range is reserved for the allocation in progress. (This holds
        // only while the refcounts in memory are the truth: a repair that
        // fixes them never allocates through here.)
        let place = ((t * e).max(1)..(t + 1) * e)
            .find(|&c| !self.is_reserved(c) && s.may_hold_refblock(c * cs, cs));
        let off = match place {
            Some(c) => {
                let tab = s.new_refblock(c * cs);
                refcount_set(&mut tab.write(), c % e, g.refcount_order, 1);
                c * cs
            }
            None => {
                // Somewhere else, counted in the block covering that place.
                let mut c = 0;
                for _ in 0..16 {
                    c = self.find_free_run(s, 1)?;
                    if !self.ensure_refblock(s, c)? {
                        break;
                    }
                    c = 0;
                }
                if c == 0 {
                    return Err(no_space(s, "cannot place a refcount block"));
                }
                s.new_refblock(c * cs);
                self.change(s, c, 1)?;
                c * cs
            }
        };
        self.reftable[t as usize] = off;
        self.reftable_dirty = true;
        s.structure_changed(self);
        Ok(true)
    }

    /// Grows the refcount table to at least `min_entries` entries, moving
    /// it to new clusters. The old table is freed by a deferred decrement
    /// (after the header naming the new one is written).
    pub fn grow_reftable(&mut self, s: &dyn RefcountStore, min_entries: u64) -> Result<()> {
        let g = s.geometry();
        let cs = g.cluster_size();
        let e = g.block_entries();
        let mut entries = min_entries.max(self.reftable.len() as u64 * 2).max(cs / 8);
        let mut tries = 0;
        let (loc, k) = loop {
            tries += 1;
            if tries > 64 {
                return Err(no_space(s, "cannot place a new refcount table"));
            }
            let k = (entries * 8).div_ceil(cs);
            if k * cs > g.max_reftable_bytes {
                return Err(no_space(s, "refcount table would exceed its size limit"));
            }
            let loc = self.find_free_run(s, k)?;
            let need = (loc + k) / e + 1;
            if need > entries {
                entries = need + need / 2;
                continue;
            }
            entries = k * cs / 8;
            break (loc, k);
        };
        let (old_off, old_clusters) = s.move_reftable(loc * cs, k);
        self.reftable.resize(entries as usize, 0);
        self.reftable_dirty = true;
        self.reserved.push((loc, k));
        let r = (|| {
            for c in loc..loc + k {
                self.ensure_refblock(s, c)?;
                self.change(s, c, 1)?;
            }
            Ok(())
        })();
        self.reserved.pop();
        r?;
        s.structure_changed(self);
        self.deferred.push(DeferredFree {
            offset: old_off,
            clusters: old_clusters,
            punch: false,
        });
        Ok(())
    }

    /// Adds `delta` to the refcount of cluster `ci`, whose refcount block
    /// must exist. Returns the new value.
    pub fn change(&mut self, s: &dyn RefcountStore, ci: u64, delta: i64) -> Result<u64> {
        let g = s.geometry();
        let off = self.block_offset(&g, ci);
        if off == 0 {
            return Err(s.corruption(
                ci * g.cluster_size(),
                "refcount update for a cluster without refcount block",
            ));
        }
        let tab = s.refblock(off)?;
        let mut d = tab.write();
        let idx = ci % g.block_entries();
        let cur = refcount_get(&d, idx, g.refcount_order);
        let new = if delta >= 0 {
            cur.checked_add(delta as u64)
                .filter(|v| *v <= g.max_refcount())
        } else {
            cur.checked_sub(delta.unsigned_abs())
        };
        let Some(new) = new else {
            drop(d);
            return Err(s.corruption(
                ci * g.cluster_size(),
                &format!("refcount of cluster {ci} would leave its range ({cur} {delta:+})"),
            ));
        };
        refcount_set(&mut d, idx, g.refcount_order, new);
        drop(d);
        if new == 0 {
            self.free_hint = self.free_hint.min(ci);
            s.cluster_freed(ci * g.cluster_size());
        }
        Ok(new)
    }

    /// Allocates `n` contiguous clusters with refcount 1; returns the
    /// offset of the first.
    pub fn alloc_clusters(&mut self, s: &dyn RefcountStore, n: u64) -> Result<u64> {
        let g = s.geometry();
        let e = g.block_entries();
        for _ in 0..64 {
            let start = self.find_free_run(s, n)?;
            self.reserved.push((start, n));
            let r = (|| {
                let mut c = start;
                while c < start + n {
                    self.ensure_refblock(s, c)?;
                    c = (c / e + 1) * e;
                }
                Ok::<(), BlockError>(())
            })();
            self.reserved.pop();
            r?;
            // Refcount blocks went elsewhere; unless the table grew into
            // the run, it is still free and fully covered.
            let mut ok = true;
            for c in start..start + n {
                if self.block_offset(&g, c) == 0 || self.refcount(s, c)? != 0 {
                    ok = false;
                    break;
                }
            }
            if !ok {
                continue;
            }
            for c in start..start + n {
                self.change(s, c, 1)?;
            }
            self.free_hint = start + n;
            return Ok(start * g.cluster_size());
        }
        Err(no_space(s, "cluster allocation did not converge"))
    }

    /// Allocates `len` (< cluster size) bytes, packing several such
    /// allocations (compressed clusters) into one host cluster whose
    /// refcount counts them.
    pub fn alloc_bytes(&mut self, s: &dyn RefcountStore, len: u64) -> Result<u64> {
        let g = s.geometry();
        let cs = g.cluster_size();
        let fbo = self.free_byte_offset;
        let used = fbo & (cs - 1);
        if fbo != 0 && used != 0 && cs - used >= len {
            let ci = fbo / cs;
            let rc = self.refcount(s, ci)?;
            if rc > 0 && rc < g.max_refcount() {
                self.change(s, ci, 1)?;
                self.free_byte_offset = fbo + len;
                return Ok(fbo);
            }
        }
        let off = self.alloc_clusters(s, 1)?;
        self.free_byte_offset = off + len;
        Ok(off)
    }

    /// Queues the decrement of `clusters` clusters from `offset`.
    pub fn defer(&mut self, offset: u64, clusters: u64, punch: bool) {
        self.deferred.push(DeferredFree {
            offset,
            clusters,
            punch,
        });
    }

    /// Applies the queued decrements (the metadata that dropped the
    /// references is on disk), after [`RefcountStore::quiesce_before_free`].
    pub fn apply_deferred(&mut self, s: &dyn RefcountStore) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        s.quiesce_before_free();
        let list = std::mem::take(&mut self.deferred);
        let cs = s.geometry().cluster_size();
        for d in list {
            for c in 0..d.clusters {
                let off = d.offset + c * cs;
                let new = self.change(s, off / cs, -1)?;
                if new == 0 && d.punch {
                    s.discard(off, cs);
                }
            }
        }
        self.free_byte_offset = 0;
        Ok(())
    }

    /// Every refcount (index: cluster) up to the last nonzero one.
    pub fn all_refcounts(&self, s: &dyn RefcountStore) -> Result<Vec<u64>> {
        let g = s.geometry();
        let e = g.block_entries();
        let mut out: Vec<u64> = Vec::new();
        for (t, &rte) in self.reftable.iter().enumerate() {
            let off = rte & g.offset_mask;
            if off == 0 {
                continue;
            }
            let tab = s.refblock(off)?;
            let d = tab.read();
            for i in 0..e {
                let v = refcount_get(&d, i, g.refcount_order);
                if v != 0 {
                    let c = (t as u64 * e + i) as usize;
                    if out.len() <= c {
                        out.resize(c + 1, 0);
                    }
                    out[c] = v;
                }
            }
        }
        Ok(out)
    }
}

/// Places a complete refcount structure for `refcounts` (index: cluster)
/// in new clusters from `start` on, counting itself: returns the number
/// of refcount blocks and of refcount table clusters, `(blocks,
/// table_clusters)`, laid out blocks first, then the table. `entries` is
/// the refcount entries per block; `cluster_size` in bytes.
pub fn self_describing_layout(start: u64, entries: u64, cluster_size: u64) -> (u64, u64) {
    let (mut k, mut t) = (1u64, 1u64);
    loop {
        let total = start + k + t;
        let nk = total.div_ceil(entries);
        let nt = (nk * 8).div_ceil(cluster_size);
        if (nk, nt) == (k, t) {
            return (k, t);
        }
        k = nk.max(k);
        t = nt.max(t);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::table_cache::TableCache;
    use std::sync::Mutex as StdMutex;

    /// An in-memory refcount structure: blocks in a cache, the table's
    /// place in a field.
    pub(crate) struct Mem {
        geo: RefcountGeometry,
        cache: TableCache,
        table_at: StdMutex<(u64, u64)>,
        freed: StdMutex<Vec<u64>>,
        discarded: StdMutex<Vec<u64>>,
    }

    impl Mem {
        fn new(order: u32) -> Mem {
            Mem {
                geo: RefcountGeometry {
                    cluster_bits: 9,
                    refcount_order: order,
                    max_host_offset: 1 << 40,
                    max_reftable_bytes: 1 << 20,
                    offset_mask: !0x1ff,
                },
                cache: TableCache::new(1 << 20),
                table_at: StdMutex::new((512, 1)),
                freed: StdMutex::new(Vec::new()),
                discarded: StdMutex::new(Vec::new()),
            }
        }
    }

    impl RefcountStore for Mem {
        fn geometry(&self) -> RefcountGeometry {
            self.geo
        }
        fn refblock(&self, offset: u64) -> Result<Arc<Table>> {
            self.cache
                .get(offset)
                .ok_or_else(|| BlockError::io("read", "block not in memory"))
        }
        fn new_refblock(&self, offset: u64) -> Arc<Table> {
            self.cache.insert(offset, vec![0; 512], true)
        }
        fn may_hold_refblock(&self, offset: u64, _len: u64) -> bool {
            // Cluster 0 (header) and the table are metadata.
            let (t, n) = *self.table_at.lock().unwrap();
            offset != 0 && !(offset >= t && offset < t + n * 512)
        }
        fn move_reftable(&self, offset: u64, clusters: u64) -> (u64, u64) {
            std::mem::replace(&mut *self.table_at.lock().unwrap(), (offset, clusters))
        }
        fn structure_changed(&self, _state: &AllocState) {}
        fn cluster_freed(&self, offset: u64) {
            self.freed.lock().unwrap().push(offset);
        }
        fn discard(&self, offset: u64, _len: u64) {
            self.discarded.lock().unwrap().push(offset);
        }
        fn corruption(&self, offset: u64, msg: &str) -> BlockError {
            BlockError::corrupt("refcount", msg).at(offset)
        }
    }

    /// A fresh image: header at cluster 0, the table at cluster 1 (one
    /// cluster, 64 entries), no blocks yet.
    pub(crate) fn fresh(order: u32) -> (Mem, RefcountAllocator) {
        let m = Mem::new(order);
        let a = RefcountAllocator::new(vec![0; 64]);
        (m, a)
    }

    #[test]
    fn widths() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let mut d = vec![0u8; 512];
            let n = 512 * 8 / bits as u64;
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            for i in 0..n {
                refcount_set(&mut d, i, order, (i * 7919) & max);
            }
            for i in 0..n {
                assert_eq!(
                    refcount_get(&d, i, order),
                    (i * 7919) & max,
                    "order {order} i {i}"
                );
            }
        }
        // QEMU layout: 1-bit refcounts are LSB first, 16-bit big-endian.
        let mut d = vec![0u8; 1];
        refcount_set(&mut d, 0, 0, 1);
        assert_eq!(d[0], 1);
        let mut d = vec![0u8; 2];
        refcount_set(&mut d, 0, 4, 1);
        assert_eq!(d, [0, 1]);
    }

    #[test]
    fn first_block_describes_itself_and_allocations_are_counted() {
        let (m, a) = fresh(4);
        let mut st = a.lock();
        st.reserved.push((0, 2)); // header and table
        let off = st.alloc_clusters(&m, 3).unwrap();
        st.reserved.clear();
        // The block went to the first usable cluster of its range that
        // the allocation in progress had not reserved (5); the allocation
        // then took the run it had planned.
        assert_eq!(st.reftable[0], 5 * 512);
        assert_eq!(off, 2 * 512);
        assert!(st.reftable_dirty);
        for c in 2..6 {
            assert_eq!(st.refcount(&m, c).unwrap(), 1, "cluster {c}");
        }
        assert_eq!(st.refcount(&m, 6).unwrap(), 0);
        // Sub-cluster allocations share a cluster.
        let b1 = st.alloc_bytes(&m, 100).unwrap();
        let b2 = st.alloc_bytes(&m, 100).unwrap();
        assert_eq!(b2, b1 + 100);
        assert_eq!(st.refcount(&m, b1 / 512).unwrap(), 2);
    }

    #[test]
    fn deferred_frees_wait_and_discard() {
        let (m, a) = fresh(4);
        let mut st = a.lock();
        st.reserved.push((0, 2));
        let off = st.alloc_clusters(&m, 2).unwrap();
        st.reserved.clear();
        st.defer(off, 2, true);
        assert_eq!(st.refcount(&m, off / 512).unwrap(), 1, "not yet freed");
        st.apply_deferred(&m).unwrap();
        assert_eq!(st.refcount(&m, off / 512).unwrap(), 0);
        assert_eq!(st.refcount(&m, off / 512 + 1).unwrap(), 0);
        assert_eq!(*m.discarded.lock().unwrap(), [off, off + 512]);
        assert_eq!(*m.freed.lock().unwrap(), [off, off + 512]);
        // The freed clusters are found again.
        assert_eq!(st.alloc_clusters(&m, 1).unwrap(), off);
    }

    #[test]
    fn range_errors_are_corruption() {
        let (m, a) = fresh(0); // 1-bit refcounts: max 1
        let mut st = a.lock();
        st.reserved.push((0, 2));
        let off = st.alloc_clusters(&m, 1).unwrap();
        let e = st.change(&m, off / 512, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        st.change(&m, off / 512, -1).unwrap();
        assert!(st.change(&m, off / 512, -1).is_err());
        // No block covers a far cluster.
        assert!(st.change(&m, 100_000, 1).is_err());
        assert_eq!(st.refcount(&m, 100_000).unwrap(), 0);
    }

    #[test]
    fn the_table_grows_and_the_old_one_is_freed_later() {
        // 512-byte clusters, 16-bit refcounts: 256 clusters per block,
        // 64 blocks per table cluster.
        let (m, a) = fresh(4);
        let mut st = a.lock();
        st.reserved.push((0, 2));
        // Past what 64 table entries cover.
        st.free_hint = 64 * 256 + 10;
        let off = st.alloc_clusters(&m, 1).unwrap();
        st.reserved.clear();
        assert!(off / 512 >= 64 * 256);
        assert!(st.reftable.len() > 64);
        let (t, n) = *m.table_at.lock().unwrap();
        assert_ne!(t, 512, "moved");
        for c in t / 512..t / 512 + n {
            assert_eq!(st.refcount(&m, c).unwrap(), 1, "new table counted");
        }
        assert_eq!(
            st.deferred,
            [DeferredFree {
                offset: 512,
                clusters: 1,
                punch: false
            }]
        );
        assert_eq!(
            st.all_refcounts(&m)
                .unwrap()
                .iter()
                .filter(|v| **v > 0)
                .count() as u64,
            n + 1 + st.reftable.iter().filter(|e| **e != 0).count() as u64
        );
    }

    #[test]
    fn layouts_describe_themselves() {
        for (start, e, cs) in [(10, 256, 512), (0, 32768, 65536), (100_000, 256, 512)] {
            let (k, t) = self_describing_layout(start, e, cs);
            assert!(k * e >= start + k + t, "blocks cover everything");
            assert!(t * cs >= k * 8, "table names every block");
        }
    }
}
