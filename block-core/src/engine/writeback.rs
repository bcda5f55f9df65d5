//! Metadata write-back in dependency order.
//!
//! A format's crash consistency rests on one rule: metadata that points
//! at something is written only after what it points at is on stable
//! storage. For tables held in [`TableCache`]s this becomes a dependency
//! between caches: "the tables of cache A are written only after every
//! dirty table of cache B is written and flushed" (qcow2: L2 tables after
//! refcount blocks, so a crash leaves leaks, never a cluster in use with
//! refcount 0; qed/vhdx: L2 tables or BAT pages after the data they map).
//!
//! A [`WriteOrder`] names the caches taking part, each with the function
//! that writes one of its tables (overlap checks and all), and the
//! dependencies between them; [`WriteOrder::run`] writes the dirty tables
//! cache by cache in an order that respects every dependency, with a
//! flush (the barrier) between a cache and the first cache depending on
//! it, and marks each table clean once written. A dependency cycle is a
//! programming error and is refused before anything is written.

use crate::engine::table_cache::TableCache;
use crate::error::{BlockError, Result};

/// Writes one table: `(offset, bytes)`.
pub type TableWrite<'a> = Box<dyn FnMut(u64, &[u8]) -> Result<()> + 'a>;

/// A cache taking part in a write-back, by index in its [`WriteOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheId(usize);

struct Member<'a> {
    cache: &'a TableCache,
    write: TableWrite<'a>,
    /// Caches whose tables must be written and flushed first.
    after: Vec<usize>,
}

/// Caches to write back and the order constraints between them.
#[derive(Default)]
pub struct WriteOrder<'a> {
    members: Vec<Member<'a>>,
}

impl<'a> WriteOrder<'a> {
    /// An empty order.
    pub fn new() -> WriteOrder<'a> {
        WriteOrder {
            members: Vec::new(),
        }
    }

    /// Adds `cache`, whose tables `write` writes.
    pub fn cache(
        &mut self,
        cache: &'a TableCache,
        write: impl FnMut(u64, &[u8]) -> Result<()> + 'a,
    ) -> CacheId {
        self.members.push(Member {
            cache,
            write: Box::new(write),
            after: Vec::new(),
        });
        CacheId(self.members.len() - 1)
    }

    /// The tables of `later` are written only after every dirty table of
    /// `first` is written and flushed.
    pub fn depends_on(&mut self, later: CacheId, first: CacheId) {
        self.members[later.0].after.push(first.0);
    }

    /// The caches in dependency order, or an error on a cycle.
    fn schedule(&self) -> Result<Vec<usize>> {
        let n = self.members.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&i| !done[i] && self.members[i].after.iter().all(|&d| done[d]));
            let Some(i) = next else {
                return Err(BlockError::invalid(
                    "write back metadata",
                    "the table caches depend on each other in a cycle",
                ));
            };
            done[i] = true;
            order.push(i);
        }
        Ok(order)
    }

    /// Writes every dirty table in dependency order, calling `flush` after
    /// a cache whose tables another cache depends on (when it wrote
    /// anything) and once at the end when anything was written. Returns
    /// the number of tables written.
    pub fn run(mut self, mut flush: impl FnMut() -> Result<()>) -> Result<usize> {
        let order = self.schedule()?;
        let mut total = 0;
        // Written but not yet flushed, per cache.
        let mut pending = vec![false; self.members.len()];
        for i in order {
            let needs_barrier = self.members[i].after.iter().any(|&d| pending[d]);
            if needs_barrier && !self.members[i].cache.dirty().is_empty() {
                flush()?;
                pending.iter_mut().for_each(|p| *p = false);
            }
            let m = &mut self.members[i];
            let n = write_dirty(m.cache, &mut m.write)?;
            pending[i] = n > 0;
            total += n;
        }
        if pending.iter().any(|&p| p) {
            flush()?;
        }
        Ok(total)
    }
}

/// Writes every dirty table of `cache` (offset order) with `write`,
/// marking each clean after its write. Returns the number written.
pub fn write_dirty(
    cache: &TableCache,
    mut write: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<usize> {
    let dirty = cache.dirty();
    let n = dirty.len();
    for (off, t) in dirty {
        // Copy under the read lock, write without it; a change racing
        // the write marks the table dirty again after `mark_clean` only
        // if it happens later, so clear the flag before copying.
        t.mark_clean();
        let data = t.read().clone();
        if let Err(e) = write(off, &data) {
            // Not on disk: dirty again.
            drop(t.write());
            return Err(e);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn dependencies_order_writes_with_barriers() {
        let rc = TableCache::new(8);
        let l2 = TableCache::new(8);
        l2.insert(0x3000, vec![2; 4], true);
        rc.insert(0x1000, vec![1; 4], true);
        rc.insert(0x2000, vec![1; 4], true);
        let log = RefCell::new(Vec::new());
        let mut o = WriteOrder::new();
        // Added first, written last: the dependency decides.
        let a = o.cache(&l2, |off, _| {
            log.borrow_mut().push(format!("l2 {off:#x}"));
            Ok(())
        });
        let b = o.cache(&rc, |off, _| {
            log.borrow_mut().push(format!("rc {off:#x}"));
            Ok(())
        });
        o.depends_on(a, b);
        let n = o
            .run(|| {
                log.borrow_mut().push("flush".into());
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            *log.borrow(),
            ["rc 0x1000", "rc 0x2000", "flush", "l2 0x3000", "flush"]
        );
        assert_eq!(rc.dirty_count() + l2.dirty_count(), 0);
    }

    #[test]
    fn no_barrier_when_the_dependency_was_clean() {
        let rc = TableCache::new(8);
        let l2 = TableCache::new(8);
        l2.insert(0x3000, vec![2; 4], true);
        let flushes = RefCell::new(0);
        let mut o = WriteOrder::new();
        let a = o.cache(&l2, |_, _| Ok(()));
        let b = o.cache(&rc, |_, _| Ok(()));
        o.depends_on(a, b);
        o.run(|| {
            *flushes.borrow_mut() += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(*flushes.borrow(), 1);
    }

    #[test]
    fn cycles_are_refused_and_failed_writes_stay_dirty() {
        let x = TableCache::new(8);
        let y = TableCache::new(8);
        x.insert(0, vec![0; 4], true);
        let mut o = WriteOrder::new();
        let a = o.cache(&x, |_, _| Ok(()));
        let b = o.cache(&y, |_, _| Ok(()));
        o.depends_on(a, b);
        o.depends_on(b, a);
        assert!(o.run(|| Ok(())).is_err());
        assert_eq!(x.dirty_count(), 1, "nothing written");
        let e = write_dirty(&x, |_, _| Err(BlockError::io("write", "EIO")));
        assert!(e.is_err());
        assert_eq!(x.dirty_count(), 1, "failed write stays dirty");
    }
}
