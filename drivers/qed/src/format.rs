//! The open image: [`QedFormat`] holds the metadata, the L2 table cache and
//! the need-check state, and links new clusters into the tables in crash
//! order (data, then L2 entry, then L1 entry). Its `Format` implementation
//! is in [`crate::mapping`].

use crate::header::{Header, ENDIAN, F_NEED_CHECK};
use crate::tables::{Cluster, Metadata};
use block_core::engine::table_cache::{Table, TableCache};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Memory for clean L2 tables (QEMU's qed keeps a similar small cache).
const L2_CACHE_BYTES: u64 = 4 << 20;

/// The format of one open image over its `file` child.
///
/// The metadata is behind one lock: mapping holds it shared; linking
/// clusters, growing the disk and re-reading the metadata hold it
/// exclusively. L2 tables are read through the cache and written through
/// (an entry reaches the disk when it is linked), so cached tables are
/// always clean.
pub struct QedFormat {
    pub(crate) file: Arc<dyn BlockNode>,
    pub(crate) backing: Option<Arc<dyn BlockNode>>,
    pub(crate) filename: String,
    pub(crate) meta: RwLock<Metadata>,
    pub(crate) l2: TableCache,
    /// True while this process has set the need-check flag on disk (it
    /// clears it again on a clean close or a handoff).
    pub(crate) need_check_set: AtomicBool,
}

impl std::fmt::Debug for QedFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QedFormat")
            .field("filename", &self.filename)
            .field("header", &self.meta().header)
            .finish()
    }
}

impl QedFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`,
    /// with its backing node (already open, or none).
    pub fn open(
        file: Arc<dyn BlockNode>,
        filename: String,
        backing: Option<Arc<dyn BlockNode>>,
    ) -> Result<QedFormat> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        let l2 = TableCache::with_memory_limit(meta.header.table_bytes(), L2_CACHE_BYTES);
        Ok(QedFormat {
            file,
            backing,
            filename,
            meta: RwLock::new(meta),
            l2,
            need_check_set: AtomicBool::new(false),
        })
    }

    /// Shared access to the metadata.
    pub fn meta(&self) -> RwLockReadGuard<'_, Metadata> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive access to the metadata.
    pub(crate) fn meta_mut(&self) -> RwLockWriteGuard<'_, Metadata> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The image file.
    pub fn file(&self) -> &Arc<dyn BlockNode> {
        &self.file
    }

    /// Writes the fixed header fields of `h`.
    pub(crate) fn write_header(&self, h: &Header) -> Result<()> {
        self.file.write_at(0, &h.encode())
    }

    /// The L2 table at `off`, from the cache or the file.
    pub(crate) fn l2_table(&self, m: &Metadata, off: u64) -> Result<Arc<Table>> {
        let bytes = m.header.table_bytes() as usize;
        self.l2.get_or_load(off, || {
            let mut b = vec![0u8; bytes];
            self.file.read_at(off, &mut b)?;
            Ok::<_, BlockError>(b)
        })
    }

    /// The L2 entry of guest cluster `c`, decoded.
    pub(crate) fn lookup(&self, m: &Metadata, op: &'static str, c: u64) -> Result<Cluster> {
        let (i1, i2) = m.indices(c);
        let Some(off) = m.l2_offset(op, i1)? else {
            return Ok(Cluster::Unallocated);
        };
        let t = self.l2_table(m, off)?;
        let e = ENDIAN.u64(&t.read(), i2 * 8);
        m.cluster(op, c, e)
    }

    /// Sets the need-check flag on disk (durably) before the first
    /// allocating write of this open.
    pub(crate) fn mark_need_check(&self) -> Result<()> {
        if self.need_check_set.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut m = self.meta_mut();
        if !m.header.need_check() {
            let mut h = m.header;
            h.features |= F_NEED_CHECK;
            self.write_header(&h)?;
            self.file.flush()?;
            m.header = h;
        }
        self.need_check_set.store(true, Ordering::Release);
        Ok(())
    }

    /// Points the L2 entries of the guest clusters from `first` on at
    /// `values` (one per cluster), allocating L2 tables as needed. Crash
    /// order: the caller made the data durable; a new L2 table is written
    /// and flushed before the L1 entry naming it.
    pub(crate) fn link(&self, m: &mut Metadata, first: u64, values: &[u64]) -> Result<()> {
        let mut k = 0;
        while k < values.len() {
            let c = first + k as u64;
            let (i1, i2) = m.indices(c);
            let n = (values.len() - k).min(m.header.entries() as usize - i2);
            let part = &values[k..k + n];
            match m.l2_offset("write", i1)? {
                Some(off) => self.update_l2(m, off, i2, part)?,
                None => self.new_l2(m, i1, i2, part)?,
            }
            k += n;
        }
        Ok(())
    }

    /// Writes `values` at entry `i2` of the existing L2 table at `off`.
    pub(crate) fn update_l2(
        &self,
        m: &Metadata,
        off: u64,
        i2: usize,
        values: &[u64],
    ) -> Result<()> {
        let t = self.l2_table(m, off)?;
        let mut bytes = vec![0u8; values.len() * 8];
        for (j, &v) in values.iter().enumerate() {
            ENDIAN.put_u64(&mut bytes, j * 8, v);
        }
        let r = self.file.write_at(off + i2 as u64 * 8, &bytes);
        if r.is_err() {
            // The entries may or may not have reached the disk: read the
            // table again next time.
            self.l2.remove(off);
            return r;
        }
        t.write()[i2 * 8..i2 * 8 + bytes.len()].copy_from_slice(&bytes);
        t.mark_clean();
        Ok(())
    }

    /// Allocates an L2 table for L1 entry `i1` holding `values` from entry
    /// `i2`, writes it, then the L1 entry.
    fn new_l2(&self, m: &mut Metadata, i1: usize, i2: usize, values: &[u64]) -> Result<()> {
        let tb = m.header.table_bytes();
        let space = m.alloc.allocate(tb)?;
        let mut table = vec![0u8; tb as usize];
        for (j, &v) in values.iter().enumerate() {
            ENDIAN.put_u64(&mut table, (i2 + j) * 8, v);
        }
        self.file.write_at(space.offset, &table)?;
        self.file.flush()?;
        let mut e = [0u8; 8];
        ENDIAN.put_u64(&mut e, 0, space.offset);
        self.file
            .write_at(m.header.l1_table_offset + i1 as u64 * 8, &e)?;
        m.l1[i1] = space.offset;
        self.l2.insert(space.offset, table, false);
        Ok(())
    }
}

/// Clears the need-check flag of `m` in `file` after everything is durable
/// (a clean close, a handoff, a passed check).
pub(crate) fn clear_need_check(file: &dyn BlockNode, m: &mut Metadata) -> Result<()> {
    if m.header.need_check() {
        file.flush()?;
        let mut h = m.header;
        h.features &= !F_NEED_CHECK;
        file.write_at(0, &h.encode())?;
        file.flush()?;
        m.header = h;
    }
    Ok(())
}

impl Drop for QedFormat {
    /// A clean close: everything is flushed, then the need-check flag this
    /// open set is cleared.
    fn drop(&mut self) {
        if *self.need_check_set.get_mut() {
            let file = self.file.clone();
            let m = self.meta.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = clear_need_check(file.as_ref(), m) {
                log::warn!(
                    "qed: {}: could not mark the image clean: {e}",
                    self.filename
                );
            }
        }
    }
}
