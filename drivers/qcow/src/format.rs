//! The open image: [`QcowFormat`] holds the metadata and the L2 table
//! cache, creates L2 tables and links clusters into them in crash order
//! (an empty L2 table before the L1 entry naming it, a cluster's data
//! before the L2 entry naming it). Its `Format` implementation is in
//! [`crate::mapping`].

use crate::header::ENDIAN;
use crate::tables::{Cluster, Metadata};
use block_core::engine::table_cache::{Table, TableCache};
use block_core::{BlockError, BlockNode, BlockNodeExt, Result};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Memory for clean L2 tables.
const L2_CACHE_BYTES: u64 = 4 << 20;

/// The format of one open image over its `file` child.
///
/// The metadata is behind one lock: mapping holds it shared; creating an
/// L2 table, emptying the image and re-reading the metadata hold it
/// exclusively. L2 tables are read through the cache and written through
/// (an entry reaches the disk when it is linked), so cached tables are
/// always clean.
pub struct QcowFormat {
    pub(crate) file: Arc<dyn BlockNode>,
    pub(crate) backing: Option<Arc<dyn BlockNode>>,
    pub(crate) filename: String,
    pub(crate) meta: RwLock<Metadata>,
    pub(crate) l2: TableCache,
}

impl std::fmt::Debug for QcowFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QcowFormat")
            .field("filename", &self.filename)
            .field("header", &self.meta().header)
            .finish()
    }
}

impl QcowFormat {
    /// Reads and checks the metadata of `file`, opened as image `filename`,
    /// with its backing node (already open, or none).
    pub fn open(
        file: Arc<dyn BlockNode>,
        filename: String,
        backing: Option<Arc<dyn BlockNode>>,
    ) -> Result<QcowFormat> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        Ok(QcowFormat::with_metadata(file, filename, backing, meta))
    }

    /// The format over `file` with its metadata already read.
    pub fn with_metadata(
        file: Arc<dyn BlockNode>,
        filename: String,
        backing: Option<Arc<dyn BlockNode>>,
        meta: Metadata,
    ) -> QcowFormat {
        let l2 = TableCache::with_memory_limit(meta.header.l2_bytes(), L2_CACHE_BYTES);
        QcowFormat {
            file,
            backing,
            filename,
            meta: RwLock::new(meta),
            l2,
        }
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

    pub(crate) fn ctx(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    /// The L2 table at `off`, from the cache or the file.
    pub(crate) fn l2_table(&self, m: &Metadata, off: u64) -> Result<Arc<Table>> {
        let bytes = m.header.l2_bytes() as usize;
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

    /// Makes sure the L2 table covering guest cluster `c` exists: a new
    /// one is appended at the end of the file (cluster-aligned, where QEMU
    /// puts it), written empty and flushed before the L1 entry naming it.
    pub(crate) fn ensure_l2(&self, c: u64) -> Result<()> {
        let i1 = self.meta().indices(c).0;
        if self.meta().l2_offset("write", i1)?.is_some() {
            return Ok(());
        }
        let mut m = self.meta_mut();
        if m.l2_offset("write", i1)?.is_some() {
            return Ok(());
        }
        let h = m.header;
        let off = m.alloc.allocate(h.l2_bytes(), h.cluster())?;
        let table = vec![0u8; h.l2_bytes() as usize];
        if let Err(e) = self.file.write_at(off, &table) {
            m.alloc.undo(off, h.l2_bytes());
            return Err(e);
        }
        self.file.flush()?;
        let mut e = [0u8; 8];
        ENDIAN.put_u64(&mut e, 0, off);
        self.file.write_at(h.l1_table_offset + i1 as u64 * 8, &e)?;
        m.l1[i1] = off;
        self.l2.insert(off, table, false);
        Ok(())
    }

    /// Writes `values` as the L2 entries of the guest clusters from `first`
    /// on (inside one L2 table, which exists). The caller made the data
    /// they name durable.
    pub(crate) fn link(&self, m: &Metadata, first: u64, values: &[u64]) -> Result<()> {
        let (i1, i2) = m.indices(first);
        if i2 + values.len() > m.header.l2_entries() as usize {
            return Err(BlockError::invalid(
                "write",
                "clusters to link cross an L2 table",
            ));
        }
        let off = m.l2_offset("write", i1)?.ok_or_else(|| {
            BlockError::corrupt("write", format!("no L2 table for cluster {first}"))
        })?;
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

    /// Another process may have changed the image: reads it again.
    pub(crate) fn reload(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| self.ctx(e))?;
        let mut m = self.meta_mut();
        self.l2.clear();
        *m = fresh;
        Ok(())
    }
}
