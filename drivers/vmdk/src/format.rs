//! The open image: [`VmdkFormat`] maps guest ranges through the grain
//! directory and grain tables, appends new grains and links them (data
//! flushed, then the grain table entry and its redundant copy).

use crate::grain_table::{Grain, Metadata};
use crate::header::{ENDIAN, SECTOR};
use crate::DRIVER_NAME;
use block_core::engine::append_alloc::AppendAllocation;
use block_core::engine::table_cache::{Table, TableCache};
use block_core::engine::{Allocation, ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, BlockNodeExt, NodeInfo, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An open image as the generic node the host gets.
pub type VmdkNode = FormatNode<VmdkFormat>;

/// The format of one open monolithicSparse image.
pub struct VmdkFormat {
    file: Arc<dyn BlockNode>,
    backing: Option<Arc<dyn BlockNode>>,
    filename: String,
    meta: RwLock<Metadata>,
    gt: TableCache,
    /// The descriptor's CID was changed by this open (QEMU changes it on
    /// the first write, so that images made on this one see the change).
    cid_updated: AtomicBool,
}

impl std::fmt::Debug for VmdkFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmdkFormat")
            .field("filename", &self.filename)
            .finish()
    }
}

impl VmdkFormat {
    /// Reads the metadata of `file` (image `filename`) with its backing node.
    pub fn open(
        file: Arc<dyn BlockNode>,
        filename: String,
        backing: Option<Arc<dyn BlockNode>>,
    ) -> Result<VmdkFormat> {
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        Ok(VmdkFormat {
            file,
            backing,
            filename,
            meta: RwLock::new(meta),
            gt: TableCache::new(64),
            cid_updated: AtomicBool::new(false),
        })
    }

    /// Shared access to the metadata.
    pub fn meta(&self) -> RwLockReadGuard<'_, Metadata> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The image file.
    pub fn file(&self) -> &Arc<dyn BlockNode> {
        &self.file
    }

    fn meta_mut(&self) -> RwLockWriteGuard<'_, Metadata> {
        self.meta.write().unwrap_or_else(|e| e.into_inner())
    }

    fn ctx(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    fn table(&self, m: &Metadata, off: u64) -> Result<Arc<Table>> {
        let n = m.header.gt_bytes() as usize;
        self.gt.get_or_load(off, || {
            let mut b = vec![0u8; n];
            self.file.read_at(off, &mut b)?;
            Ok::<_, BlockError>(b)
        })
    }

    /// What grain `g` is.
    pub fn lookup(&self, m: &Metadata, op: &'static str, g: u64) -> Result<Grain> {
        let per = u64::from(m.header.num_gtes_per_gt);
        let i = (g / per) as usize;
        let Some(off) = m.gt_offset(op, i, m.gd[i])? else {
            return Ok(Grain::Unallocated);
        };
        let t = self.table(m, off)?;
        let e = ENDIAN.u32(&t.read(), (g % per) as usize * 4);
        m.grain(op, g, e)
    }

    /// Writes grain table entry of grain `g` as `value` in the table and
    /// its redundant copy.
    fn set_entry(&self, m: &Metadata, g: u64, value: u32) -> Result<()> {
        let per = u64::from(m.header.num_gtes_per_gt);
        let i = (g / per) as usize;
        let k = (g % per) as usize;
        let Some(off) = m.gt_offset("write", i, m.gd[i])? else {
            return Err(BlockError::unsupported_feature(
                "write",
                "writing where the grain directory names no grain table",
            ));
        };
        let b = value.to_le_bytes();
        if let Some(&rs) = m.rgd.get(i) {
            if let Some(roff) = m.gt_offset("write", i, rs)? {
                self.file.write_at(roff + k as u64 * 4, &b)?;
                self.gt.remove(roff);
            }
        }
        let t = self.table(m, off)?;
        if let Err(e) = self.file.write_at(off + k as u64 * 4, &b) {
            self.gt.remove(off);
            return Err(e);
        }
        t.write()[k * 4..k * 4 + 4].copy_from_slice(&b);
        t.mark_clean();
        Ok(())
    }
}

impl Format for VmdkFormat {
    fn size(&self) -> u64 {
        self.meta().header.size()
    }

    fn allocation_unit(&self) -> u64 {
        self.meta().header.grain()
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    fn backing(&self) -> Option<Arc<dyn BlockNode>> {
        self.backing.clone()
    }

    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let gs = m.header.grain();
        let len = len.min(gs - offset % gs);
        Ok(
            match self
                .lookup(&m, "read", offset / gs)
                .map_err(|e| self.ctx(e))?
            {
                Grain::Unallocated => Mapping::Unallocated { len, host: None },
                Grain::Zero => Mapping::Zero {
                    len,
                    allocated: true,
                    host: None,
                },
                Grain::Data(at) => Mapping::Data {
                    child: ChildRef::FILE,
                    host_offset: at + offset % gs,
                    len,
                    writable: true,
                },
            },
        )
    }

    /// One grain appended at the end of the file.
    fn allocate(&self, offset: u64, _len: u64) -> Result<Allocation> {
        let m = self.meta();
        let gs = m.header.grain();
        let space = m.alloc.allocate(gs).map_err(|e| self.ctx(e))?;
        Ok(Allocation {
            guest_offset: offset,
            len: gs.min(m.header.size() - offset),
            child: ChildRef::FILE,
            host_offset: space.offset,
            granule: gs,
            reused: false,
        })
    }

    /// Data durable first, then the grain table entries.
    fn commit(&self, a: &Allocation, _written: u64, _len: u64) -> Result<()> {
        self.file.flush()?;
        let m = self.meta_mut();
        let g = a.guest_offset / m.header.grain();
        self.set_entry(&m, g, (a.host_offset / SECTOR) as u32)
            .map_err(|e| self.ctx(e))
    }

    fn abort(&self, a: &Allocation) {
        let m = self.meta();
        let gs = m.header.grain();
        m.alloc.undo(&AppendAllocation {
            offset: a.host_offset,
            len: gs,
            index: 0,
            trailer_offset: a.host_offset + gs,
        });
    }

    /// With the zeroed-grain flag a whole unallocated grain becomes a
    /// zeroed grain (GTE 1); anything else is written as zeros.
    fn make_zero(&self, offset: u64, len: u64, _unmap: bool) -> Result<bool> {
        let m = self.meta_mut();
        let gs = m.header.grain();
        if !m.header.zeroed_grain()
            || offset % gs != 0
            || (len < gs && offset + len < m.header.size())
        {
            return Ok(false);
        }
        match self
            .lookup(&m, "write_zeroes", offset / gs)
            .map_err(|e| self.ctx(e))?
        {
            Grain::Zero => Ok(true),
            Grain::Data(_) => Ok(false),
            Grain::Unallocated => {
                self.set_entry(&m, offset / gs, 1)
                    .map_err(|e| self.ctx(e))?;
                Ok(true)
            }
        }
    }

    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| self.ctx(e))?;
        self.gt.clear();
        *self.meta_mut() = fresh;
        Ok(())
    }

    /// The first change of this open gives the descriptor a new CID.
    fn will_change(&self, _offset: u64, _len: u64) -> Result<()> {
        if self.cid_updated.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut m = self.meta_mut();
        let h = m.header;
        let mut text = vec![0u8; (h.desc_size * SECTOR) as usize];
        self.file.read_at(h.desc_offset * SECTOR, &mut text)?;
        let cid = crate::descriptor::new_cid(m.descriptor.cid);
        let new = crate::descriptor::with_cid(&text, cid);
        if new.len() > text.len() {
            return Err(self.ctx(BlockError::invalid(
                "write",
                "descriptor too long for a new CID",
            )));
        }
        let mut out = new.into_bytes();
        out.resize(text.len(), 0);
        self.file
            .write_at(h.desc_offset * SECTOR, &out)
            .map_err(|e| self.ctx(e))?;
        m.descriptor.cid = cid;
        Ok(())
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }

    /// The fields of `qemu-img info`, with vmdk's format-specific part.
    fn info(&self) -> Result<NodeInfo> {
        let m = self.meta();
        let d = &m.descriptor;
        let extents: Vec<serde_json::Value> = d
            .extents
            .iter()
            .map(|e| {
                serde_json::json!({
                    "virtual-size": e.sectors * SECTOR,
                    "filename": self.filename,
                    "cluster-size": m.header.grain(),
                    "format": "",
                })
            })
            .collect();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: m.header.size(),
            cluster_size: Some(m.header.grain()),
            dirty_flag: false,
            backing_filename: d.parent_hint.clone(),
            backing_filename_format: None,
            format_specific: Some(serde_json::json!({
                "type": "vmdk",
                "data": {
                    "cid": d.cid,
                    "parent-cid": d.parent_cid,
                    "create-type": d.create_type,
                    "extents": extents,
                }
            })),
        })
    }

    fn has_zero_init(&self) -> bool {
        true
    }

    /// `blk check` ([`crate::check`]).
    fn check_control(&self) -> Option<&dyn block_core::control::CheckControl> {
        Some(self)
    }
}
