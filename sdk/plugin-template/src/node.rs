//! An open image: guest offsets shifted past the header, bytes mapped
//! through the key, everything else passed to the `file` child.

use crate::codec;
use crate::header::{Header, HEADER_SIZE};
use crate::DRIVER_NAME;
use block_core::{
    iov_len, iov_len_mut, BlockError, BlockNode, BlockNodeExt, ErrorKind, Extent, ExtentFlags,
    MigrationControl, NodeInfo, Preallocation, ReqFlags, Result, ZeroFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The largest buffer a write encodes into at a time: a guest request of
/// any length costs at most this much memory.
const WRITE_CHUNK: usize = 64 << 10;

/// An open image over its `file` child.
///
/// Every method takes `&self` and may be called from many threads at once
/// (the ABI's thread rule). The header is behind a lock: I/O holds it shared,
/// so a resize or a re-read of the header never runs in the middle of a
/// request.
pub struct XorNode {
    file: Arc<dyn BlockNode>,
    filename: String,
    header: RwLock<Header>,
}

impl XorNode {
    /// Reads and checks the header of `file`, opened as image `filename`.
    pub fn open(file: Arc<dyn BlockNode>, filename: String) -> Result<XorNode> {
        let header = read_header(file.as_ref()).map_err(|e| e.in_file(&filename))?;
        Ok(XorNode {
            file,
            filename,
            header: RwLock::new(header),
        })
    }

    fn header(&self) -> RwLockReadGuard<'_, Header> {
        self.header.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `h` over the header and makes it durable.
    fn write_header(&self, h: &Header) -> Result<()> {
        self.file.write_at(0, &h.encode())?;
        self.file.flush()
    }

    /// The file offset of guest `offset` for a request of `len` bytes, or an
    /// `OutOfRange` error (the host checks too; a driver never trusts that).
    fn file_offset(&self, h: &Header, op: &str, offset: u64, len: u64) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= h.size => Ok(HEADER_SIZE + offset),
            _ => Err(BlockError::new(
                ErrorKind::OutOfRange,
                op,
                format!("request of {len} bytes exceeds the image size {}", h.size),
            )
            .at(offset)
            .in_file(&self.filename)),
        }
    }
}

/// Reads the header of `file` and checks that the data it describes is in
/// the file.
fn read_header(file: &dyn BlockNode) -> Result<Header> {
    let file_len = file.length()?;
    if file_len < HEADER_SIZE {
        return Err(BlockError::corrupt(
            "open",
            format!("the file ({file_len} bytes) is shorter than the header"),
        ));
    }
    let mut b = [0u8; HEADER_SIZE as usize];
    file.read_at(0, &mut b)?;
    let h = Header::decode(&b)?;
    // Header::decode bounds the size, so the sum cannot overflow.
    if file_len < HEADER_SIZE + h.size {
        return Err(BlockError::corrupt(
            "open",
            format!(
                "the file ({file_len} bytes) ends before the data of a {} byte image",
                h.size
            ),
        ));
    }
    Ok(h)
}

impl BlockNode for XorNode {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        flags: ReqFlags,
    ) -> Result<()> {
        let h = self.header();
        let at = self.file_offset(&h, "read", offset, iov_len_mut(bufs))?;
        self.file.read_vectored(at, bufs, flags)?;
        for b in bufs.iter_mut() {
            codec::apply(h.key, b);
        }
        Ok(())
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let h = self.header();
        let mut at = self.file_offset(&h, "write", offset, iov_len(bufs))?;
        // Compression means nothing to this format; FUA goes to the file
        // with every chunk, so all of them are durable on return.
        let flags = flags.without(ReqFlags::COMPRESSED);
        let mut chunk = Vec::with_capacity(WRITE_CHUNK.min(iov_len(bufs) as usize));
        for b in bufs {
            for part in b.chunks(WRITE_CHUNK) {
                chunk.clear();
                chunk.extend_from_slice(part);
                codec::apply(h.key, &mut chunk);
                self.file
                    .write_vectored(at, &[IoSlice::new(&chunk)], flags)?;
                at += part.len() as u64;
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.file.flush()
    }

    fn length(&self) -> Result<u64> {
        Ok(self.header().size)
    }

    /// `blk info` prints the key under "Format specific information".
    fn info(&self) -> Result<NodeInfo> {
        let h = self.header();
        Ok(NodeInfo {
            format: DRIVER_NAME.to_string(),
            virtual_size: h.size,
            format_specific: Some(serde_json::json!({
                "type": DRIVER_NAME,
                "data": { "key": h.key },
            })),
            ..NodeInfo::default()
        })
    }

    /// Zeros are stored as zeros, so the file's discard is this format's.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let h = self.header();
        let at = self.file_offset(&h, "discard", offset, len)?;
        self.file.discard(at, len)
    }

    /// Zeros are stored as zeros, so the file's zeroing is this format's.
    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        let h = self.header();
        let at = self.file_offset(&h, "write_zeroes", offset, len)?;
        self.file.write_zeroes(at, len, flags)
    }

    /// Resizes the file and records the size in the header. Bytes a grow
    /// adds are holes of the file, which read as zeros.
    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        let mut h = self.header.write().unwrap_or_else(|e| e.into_inner());
        if size > crate::header::MAX_SIZE {
            return Err(BlockError::invalid(
                "truncate",
                format!("size {size} is larger than the format allows"),
            )
            .in_file(&self.filename));
        }
        // Whichever step fails, the header never describes more data than
        // the file holds: a grow resizes first, a shrink rewrites first.
        let new = Header { size, ..*h };
        if size >= h.size {
            self.file.truncate(HEADER_SIZE + size, prealloc)?;
            self.write_header(&new)?;
        } else {
            self.write_header(&new)?;
            self.file.truncate(HEADER_SIZE + size, prealloc)?;
        }
        *h = new;
        Ok(())
    }

    fn allocated_size(&self) -> Result<u64> {
        self.file.allocated_size()
    }

    /// The file's status of the same bytes: its holes are guest zeros. File
    /// offsets are not passed on (the stored bytes are not the guest's), so
    /// OFFSET_VALID and RECURSE are dropped.
    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let h = self.header();
        let at = self.file_offset(&h, "block_status", offset, len)?;
        let e = self.file.block_status(at, len)?;
        Ok(Extent {
            length: e.length.min(len),
            flags: e
                .flags
                .without(ExtentFlags::OFFSET_VALID)
                .without(ExtentFlags::RECURSE)
                .without(ExtentFlags::COMPRESSED),
            ..Extent::default()
        })
    }

    fn has_zero_init(&self) -> bool {
        self.file.has_zero_init()
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}

impl MigrationControl for XorNode {
    /// Another process may have resized the image: read the header again.
    fn invalidate_cache(&self) -> Result<()> {
        let mut h = self.header.write().unwrap_or_else(|e| e.into_inner());
        *h = read_header(self.file.as_ref()).map_err(|e| e.in_file(&self.filename))?;
        Ok(())
    }
}
