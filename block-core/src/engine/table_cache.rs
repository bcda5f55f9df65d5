//! A bounded cache of on-disk metadata tables (qcow2 L2 tables and
//! refcount blocks, qed L2 tables, vhdx/vdi BAT pages, vmdk grain tables).
//!
//! Tables are keyed by their host offset and held as raw on-disk bytes
//! (whatever the format's byte order; [`crate::engine::codec`] reads the
//! entries). Each entry is behind its own `RwLock`, so lookups in
//! different tables never contend and lookups in the same table only
//! share a read lock. The cache map itself is behind a mutex held only
//! for the map operation, never across I/O.
//!
//! Memory: the cache holds at most `capacity` tables
//! ([`TableCache::with_memory_limit`] derives it from a byte limit) plus
//! the dirty ones. Dirty entries are never evicted: the owner writes them
//! back (in dependency order, [`crate::engine::writeback`]) and marks
//! them clean; [`TableCache::needs_writeback`] tells the owner when dirty
//! tables fill half the capacity, so they stay bounded too. Clean entries
//! are evicted in least-recently-used order when the cache grows past its
//! capacity.
//!
//! Loading a table races with eviction: a loader that misses, reads the
//! table from disk and inserts it could insert a stale copy if, during its
//! read, another thread loaded, changed, wrote back and evicted the same
//! table. Every removal therefore bumps a generation counter (one of
//! [`GEN_BUCKETS`], chosen by offset); a loader takes the generation
//! before its read ([`TableCache::load_generation`]) and
//! [`TableCache::insert_loaded`] refuses the insertion when it changed, so
//! the loader reads again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One cached table.
#[derive(Debug)]
pub struct Table {
    data: RwLock<Vec<u8>>,
    dirty: AtomicBool,
    used: AtomicU64,
}

impl Table {
    /// Shared access to the bytes.
    pub fn read(&self) -> RwLockReadGuard<'_, Vec<u8>> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Exclusive access to the bytes; marks the table dirty.
    pub fn write(&self) -> RwLockWriteGuard<'_, Vec<u8>> {
        self.dirty.store(true, Ordering::Release);
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
    /// True when the table differs from the disk.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }
    /// Marks the table as written back.
    pub fn mark_clean(&self) {
        self.dirty.store(false, Ordering::Release);
    }
}

/// Number of removal-generation counters.
pub const GEN_BUCKETS: usize = 64;

#[derive(Debug)]
struct Inner {
    map: HashMap<u64, Arc<Table>>,
    /// Removal generations, indexed by [`bucket`].
    removed: [u64; GEN_BUCKETS],
}

impl Inner {
    fn bump(&mut self, offset: u64) {
        let b = bucket(offset);
        self.removed[b] = self.removed[b].wrapping_add(1);
    }
}

/// The generation bucket of a table offset.
fn bucket(offset: u64) -> usize {
    ((offset >> 9).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % GEN_BUCKETS
}

/// The removal generation a loader saw before reading a table from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadGeneration(u64);

/// A bounded table cache keyed by host offset.
#[derive(Debug)]
pub struct TableCache {
    inner: Mutex<Inner>,
    capacity: usize,
    tick: AtomicU64,
}

impl TableCache {
    /// A cache of tables of `table_bytes` bytes each using at most
    /// `limit_bytes` for clean tables (at least 4 tables).
    pub fn with_memory_limit(table_bytes: u64, limit_bytes: u64) -> TableCache {
        let n = limit_bytes / table_bytes.max(1);
        TableCache::new(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// The number of clean tables the cache keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A cache holding up to `capacity` clean tables (at least 4).
    pub fn new(capacity: usize) -> TableCache {
        TableCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                removed: [0; GEN_BUCKETS],
            }),
            capacity: capacity.max(4),
            tick: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, t: &Table) {
        let n = self.tick.fetch_add(1, Ordering::Relaxed);
        t.used.store(n, Ordering::Relaxed);
    }

    /// The cached table at `offset`, if present.
    pub fn get(&self, offset: u64) -> Option<Arc<Table>> {
        let t = self.lock().map.get(&offset).cloned();
        if let Some(t) = &t {
            self.touch(t);
        }
        t
    }

    /// The removal generation of `offset`, taken before reading the table
    /// from disk for [`TableCache::insert_loaded`].
    pub fn load_generation(&self, offset: u64) -> LoadGeneration {
        LoadGeneration(self.lock().removed[bucket(offset)])
    }

    /// Inserts a table read from disk after `generation` was taken. Returns
    /// the cached table if one is present (it is current), `None` when a
    /// table at that offset may have been removed since (the bytes read
    /// may be stale: read again), else the newly inserted clean table.
    pub fn insert_loaded(
        &self,
        offset: u64,
        data: Vec<u8>,
        generation: LoadGeneration,
    ) -> Option<Arc<Table>> {
        let g = self.lock();
        if g.map.contains_key(&offset) || g.removed[bucket(offset)] == generation.0 {
            drop(g);
            return Some(self.insert(offset, data, false));
        }
        None
    }

    /// Reads a table with `read` while holding the cache map lock (nothing
    /// can be inserted, changed or evicted meanwhile), inserting it. The
    /// slow path of a loader whose optimistic loads keep being raced.
    pub fn load_locked<E>(
        &self,
        offset: u64,
        read: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<Table>, E> {
        let g = self.lock();
        if let Some(t) = g.map.get(&offset).cloned() {
            drop(g);
            self.touch(&t);
            return Ok(t);
        }
        let data = read()?;
        drop(g);
        // Between the unlock and the insertion nothing can have changed the
        // table: changing it requires it to be cached, and a concurrent
        // insertion of it is kept by `insert`.
        Ok(self.insert(offset, data, false))
    }

    /// The table at `offset`, loaded with `read` on a miss: a few
    /// optimistic loads (each refused when a table at that offset may have
    /// been removed during its read), then [`TableCache::load_locked`].
    pub fn get_or_load<E>(
        &self,
        offset: u64,
        mut read: impl FnMut() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<Table>, E> {
        if let Some(t) = self.get(offset) {
            return Ok(t);
        }
        for _ in 0..4 {
            let gen = self.load_generation(offset);
            if let Some(t) = self.insert_loaded(offset, read()?, gen) {
                return Ok(t);
            }
        }
        self.load_locked(offset, read)
    }

    /// Inserts a table read from disk (clean) or newly built (dirty). If a
    /// table for `offset` is already cached, that one is kept and returned
    /// (a racing loader read the same bytes).
    pub fn insert(&self, offset: u64, data: Vec<u8>, dirty: bool) -> Arc<Table> {
        let mut g = self.lock();
        if let Some(t) = g.map.get(&offset) {
            let t = t.clone();
            if dirty {
                *t.write() = data;
            }
            drop(g);
            self.touch(&t);
            return t;
        }
        let t = Arc::new(Table {
            data: RwLock::new(data),
            dirty: AtomicBool::new(dirty),
            used: AtomicU64::new(0),
        });
        self.touch(&t);
        g.map.insert(offset, t.clone());
        if g.map.len() > self.capacity {
            Self::evict(&mut g, self.capacity);
        }
        t
    }

    fn evict(g: &mut Inner, capacity: usize) {
        // Evict clean tables, oldest first, down to 7/8 of the capacity.
        let target = capacity - capacity / 8;
        let mut clean: Vec<(u64, u64)> = g
            .map
            .iter()
            .filter(|(_, t)| !t.is_dirty() && Arc::strong_count(t) == 1)
            .map(|(o, t)| (t.used.load(Ordering::Relaxed), *o))
            .collect();
        clean.sort_unstable();
        let excess = g.map.len().saturating_sub(target);
        for (_, off) in clean.into_iter().take(excess) {
            g.map.remove(&off);
            g.bump(off);
        }
    }

    /// Drops the table at `offset` (freed cluster).
    pub fn remove(&self, offset: u64) {
        let mut g = self.lock();
        if g.map.remove(&offset).is_some() {
            g.bump(offset);
        }
    }

    /// Every dirty table, sorted by offset.
    pub fn dirty(&self) -> Vec<(u64, Arc<Table>)> {
        let g = self.lock();
        let mut v: Vec<(u64, Arc<Table>)> = g
            .map
            .iter()
            .filter(|(_, t)| t.is_dirty())
            .map(|(o, t)| (*o, t.clone()))
            .collect();
        v.sort_unstable_by_key(|(o, _)| *o);
        v
    }

    /// Number of dirty tables.
    pub fn dirty_count(&self) -> usize {
        self.lock().map.values().filter(|t| t.is_dirty()).count()
    }

    /// True when the dirty tables fill most of the capacity.
    pub fn needs_writeback(&self) -> bool {
        self.dirty_count() >= self.capacity / 2
    }

    /// Drops every table (dirty ones included).
    pub fn clear(&self) {
        let mut g = self.lock();
        g.map.clear();
        for r in g.removed.iter_mut() {
            *r = r.wrapping_add(1);
        }
    }

    /// Number of cached tables.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no table is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_only_clean() {
        let c = TableCache::new(8);
        for i in 0..4 {
            c.insert(i * 512, vec![0; 8], true);
        }
        for i in 4..40 {
            c.insert(i * 512, vec![0; 8], false);
        }
        assert!(c.len() <= 9);
        assert_eq!(c.dirty().len(), 4);
        for (_, t) in c.dirty() {
            t.mark_clean();
        }
        assert_eq!(c.dirty_count(), 0);
        let t = c.insert(0, vec![1; 8], false);
        assert_eq!(t.read()[0], 0, "existing entry is kept");
    }

    #[test]
    fn memory_limit_sets_capacity() {
        let c = TableCache::with_memory_limit(65536, 1 << 20);
        assert_eq!(c.capacity(), 16);
        for i in 0..100 {
            c.insert(i << 16, vec![0; 8], false);
        }
        assert!(c.len() <= 16);
        assert_eq!(TableCache::with_memory_limit(65536, 0).capacity(), 4);
        assert!(c.get(99 << 16).is_some(), "most recent kept");
        assert!(c.get(0).is_none(), "oldest evicted");
    }

    #[test]
    fn stale_load_is_refused() {
        let c = TableCache::new(4);
        // A loader takes the generation, then reads (old bytes) ...
        let gen = c.load_generation(512);
        // ... meanwhile a writer loads, changes, writes back and the table
        // is evicted.
        let t = c.insert(512, vec![0; 8], false);
        t.write()[0] = 7;
        t.mark_clean();
        drop(t);
        for i in 2..20 {
            c.insert(i * 512, vec![0; 8], false);
        }
        assert!(c.get(512).is_none(), "evicted");
        assert!(c.insert_loaded(512, vec![0; 8], gen).is_none());
        // A fresh load succeeds.
        let gen = c.load_generation(512);
        assert!(c.insert_loaded(512, vec![7; 8], gen).is_some());
        // While the table is cached, the cached copy wins.
        let gen = c.load_generation(512);
        c.remove(512);
        c.insert(512, vec![9; 8], true);
        let t = c.insert_loaded(512, vec![0; 8], gen).unwrap();
        assert_eq!(t.read()[0], 9);
        let t = c.load_locked(1 << 20, || Ok::<_, ()>(vec![3; 8])).unwrap();
        assert_eq!(t.read()[0], 3);
    }

    #[test]
    fn get_or_load_reads_again_after_a_race() {
        let c = TableCache::new(4);
        let mut reads = 0;
        // Every optimistic read races with a load and removal of the
        // table: the last read is done under the map lock.
        let t = c
            .get_or_load(512, || {
                reads += 1;
                if reads <= 4 {
                    c.insert(512, vec![0; 8], false);
                    c.remove(512);
                }
                Ok::<_, ()>(vec![reads; 8])
            })
            .unwrap_or_else(|_| panic!("load failed"));
        assert_eq!((reads, t.read()[0]), (5, 5));
        let t = c.get_or_load(512, || Err(())).unwrap();
        assert_eq!(t.read()[0], 5, "cached: no read");
        assert!(c.get_or_load(1024, || Err::<Vec<u8>, _>("eof")).is_err());
    }
}
