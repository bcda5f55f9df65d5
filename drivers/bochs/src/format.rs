//! The open image: the header and the catalog held in memory, and the
//! engine's `Format` over them (read-only).
//!
//! Guest sector `s` is in extent `e = s / S` (`S` sectors per extent),
//! at sector `k = s % S` of it. A catalog entry of `0xffffffff` means the
//! extent is not allocated (zeros); otherwise entry `n` places the extent
//! at `data_offset + 512 * n * (B + S)` (`B` bitmap sectors): its bitmap
//! first, then its sectors. Bit `k % 8` of bitmap byte `k / 8` says
//! whether sector `k` holds data; a clear bit reads as zeros.

use crate::header::{Header, HEADER_LEN, UNALLOCATED};
use crate::DRIVER_NAME;
use block_core::engine::codec::{get_le32, TableRules};
use block_core::engine::padded_read::read_padded;
use block_core::engine::{ChildRef, Format, FormatNode, Mapping};
use block_core::{BlockError, BlockNode, BlockNodeExt, NodeInfo, Result};
use std::sync::{Arc, RwLock};

/// An open image as the generic node the host gets.
pub type BochsNode = FormatNode<BochsFormat>;

/// The header and catalog of one image.
#[derive(Debug)]
pub struct Metadata {
    /// The header.
    pub header: Header,
    /// The catalog entries.
    pub catalog: Vec<u32>,
    /// The file's length when it was read.
    pub file_len: u64,
}

impl Metadata {
    /// Reads and checks the header of `file`, then the catalog (placed
    /// inside the file before a buffer for it is allocated).
    pub fn load(file: &dyn BlockNode) -> Result<Metadata> {
        let file_len = file.length()?;
        if file_len < HEADER_LEN as u64 {
            return Err(BlockError::invalid("open", "Image not in Bochs format"));
        }
        let mut b = vec![0u8; HEADER_LEN];
        file.read_at(0, &mut b)?;
        let header = Header::decode(&b)?;
        let bytes = u64::from(header.catalog) * 4;
        let rules = TableRules {
            op: "open",
            alignment: 1,
            unit: "byte",
            max_end: file_len,
        };
        rules.check(
            "catalog",
            u64::from(header.header_size),
            bytes,
            u64::from(crate::header::MAX_CATALOG) * 4,
        )?;
        let mut raw = vec![0u8; bytes as usize];
        file.read_at(u64::from(header.header_size), &mut raw)?;
        let catalog = (0..header.catalog as usize)
            .map(|i| get_le32(&raw, i * 4))
            .collect();
        Ok(Metadata {
            header,
            catalog,
            file_len,
        })
    }

    /// The file offset of allocated extent number `n` (its bitmap).
    fn extent_offset(&self, e: u64, n: u32) -> Result<u64> {
        let h = &self.header;
        let per = h.bitmap_sectors() + h.extent_sectors();
        u64::from(n)
            .checked_mul(per)
            .and_then(|x| x.checked_mul(512))
            .and_then(|x| x.checked_add(h.data_offset()))
            .filter(|&x| x < i64::MAX as u64 / 2)
            .ok_or_else(|| {
                BlockError::corrupt(
                    "read",
                    format!("catalog entry {e} names an invalid extent {n:#x}"),
                )
            })
    }
}

/// The format of one open image over its `file` child.
pub struct BochsFormat {
    file: Arc<dyn BlockNode>,
    filename: String,
    meta: RwLock<Metadata>,
}

impl std::fmt::Debug for BochsFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BochsFormat")
            .field("filename", &self.filename)
            .finish()
    }
}

impl BochsFormat {
    /// The format over `file` (image `filename`) with its metadata read.
    pub fn new(file: Arc<dyn BlockNode>, filename: String, meta: Metadata) -> BochsFormat {
        BochsFormat {
            file,
            filename,
            meta: RwLock::new(meta),
        }
    }

    fn meta(&self) -> std::sync::RwLockReadGuard<'_, Metadata> {
        self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    fn ctx(&self, e: BlockError) -> BlockError {
        e.in_file(&self.filename)
    }

    fn map_sectors(&self, offset: u64, len: u64) -> Result<Mapping> {
        let m = self.meta();
        let h = &m.header;
        let es = u64::from(h.extent);
        let (e, in_extent) = (offset / es, offset % es);
        let len = len.min(es - in_extent);
        let n = m.catalog[e as usize];
        if n == UNALLOCATED {
            return Ok(Mapping::Unallocated { len, host: None });
        }
        let at = m.extent_offset(e, n)?;
        // The bitmap bytes of the sectors asked for.
        let (k0, k1) = (in_extent / 512, (in_extent + len).div_ceil(512));
        let mut bits = vec![0u8; (k1 / 8 - k0 / 8 + 1) as usize];
        read_padded(self.file.as_ref(), m.file_len, at + k0 / 8, &mut bits)?;
        let bit = |k: u64| bits[(k / 8 - k0 / 8) as usize] >> (k % 8) & 1 == 1;
        let set = bit(k0);
        let run = (k0..k1).take_while(|&k| bit(k) == set).count() as u64;
        let len = (run * 512 - offset % 512).min(len);
        Ok(if set {
            Mapping::Data {
                child: ChildRef::FILE,
                host_offset: at + (h.bitmap_sectors() * 512) + in_extent,
                len,
                writable: false,
            }
        } else {
            Mapping::Unallocated { len, host: None }
        })
    }
}

impl Format for BochsFormat {
    fn size(&self) -> u64 {
        self.meta().header.sectors() * 512
    }

    /// The sector: the unit of the bitmap.
    fn allocation_unit(&self) -> u64 {
        512
    }

    fn child(&self, child: ChildRef) -> Option<Arc<dyn BlockNode>> {
        (child == ChildRef::FILE).then(|| self.file.clone())
    }

    /// A run of sectors inside one extent with the same bitmap state.
    fn map(&self, offset: u64, len: u64) -> Result<Mapping> {
        self.map_sectors(offset, len).map_err(|e| self.ctx(e))
    }

    /// Another process may have changed the image: read it again.
    fn invalidate(&self) -> Result<()> {
        let fresh = Metadata::load(self.file.as_ref()).map_err(|e| self.ctx(e))?;
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn error_context(&self, e: BlockError) -> BlockError {
        self.ctx(e)
    }

    /// What qemu-img reports for bochs: the format and the size.
    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: self.size(),
            ..NodeInfo::default()
        })
    }
}
