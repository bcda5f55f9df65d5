//! An open file: positional I/O and space management.

use crate::lock::{FileLock, LockSet};
use crate::sys;
use block_core::{
    iov_len, iov_len_mut, BlockError, BlockNode, ErrorKind, Extent, ExtentFlags, IoLimits,
    MigrationControl, NodeCapabilities, NodeInfo, OpenFlags, Preallocation, ReqFlags, Result,
    ThreadModel, ZeroFlags,
};
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Attributes of a new file (the `nocow` and `extent_size_hint` create
/// options).
#[derive(Debug, Default, Clone)]
pub struct CreateAttrs {
    /// Set the no-copy-on-write inode flag.
    pub nocow: bool,
    /// The extent size hint given, if any (QEMU's default is 1 MiB).
    pub extent_size_hint: Option<u64>,
}

/// An open file node.
#[derive(Debug)]
pub struct FileNode {
    file: File,
    path: String,
    read_only: bool,
    /// The locks this node takes while active (`None`: locking disabled).
    lock_set: Option<LockSet>,
    /// Whether the locks are taken exclusively ([`OpenFlags::EXCLUSIVE`]).
    exclusive: bool,
    lock: Mutex<FileLock>,
    /// False while inactive (incoming migration): no writes, no locks.
    active: AtomicBool,
}

impl FileNode {
    /// Opens `path` (read-only with [`OpenFlags::READ_ONLY`]). Takes QEMU
    /// compatible image locks unless the open is inactive, force-shared or
    /// `locking` is off; with [`OpenFlags::EXCLUSIVE`] takes them exclusively
    /// (no other holder of any kind).
    pub fn open(path: &str, flags: OpenFlags, locking: bool) -> Result<FileNode> {
        let read_only = flags.contains(OpenFlags::READ_ONLY);
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| {
                // In QEMU's words, naming the file, so that every layer
                // above reports it as is.
                BlockError::from_io("open", e)
                    .context(format_args!("Could not open '{path}'"))
                    .in_file(path)
            })?;
        let meta = file
            .metadata()
            .map_err(|e| BlockError::from_io("open", e).in_file(path))?;
        if meta.is_dir() {
            return Err(BlockError::invalid("open", "is a directory").in_file(path));
        }
        let lock_set = if !locking
            || flags.contains(OpenFlags::FORCE_SHARE)
            || flags.contains(OpenFlags::NO_LOCK)
        {
            None
        } else if read_only {
            Some(LockSet::READER)
        } else {
            Some(LockSet::WRITER)
        };
        let inactive = flags.contains(OpenFlags::INACTIVE);
        let node = FileNode {
            file,
            path: path.to_string(),
            read_only,
            lock_set,
            exclusive: flags.contains(OpenFlags::EXCLUSIVE),
            lock: Mutex::new(FileLock::none()),
            active: AtomicBool::new(!inactive),
        };
        if !inactive {
            node.take_locks()?;
        }
        log::debug!("file: opened {path} (read_only={read_only}, inactive={inactive})");
        Ok(node)
    }

    fn take_locks(&self) -> Result<()> {
        if let Some(set) = self.lock_set {
            let mut l = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if self.exclusive {
                l.acquire_exclusive(&self.file, &self.path, set)?;
            } else {
                l.acquire(&self.file, &self.path, set)?;
            }
        }
        Ok(())
    }

    fn release_locks(&self) {
        let mut l = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        l.release(&self.file);
    }

    /// Creates `path` with `size` bytes, or empties and resizes it when it
    /// exists. The size is rounded up to whole 512-byte sectors, as QEMU does.
    ///
    /// Nothing of an existing file changes before its locks are held: it is
    /// opened without truncation, locked exclusively (QEMU's create locks
    /// first, for QEMU's messages, then no other holder of any kind), and
    /// only then truncated to 0 and sized. A file this call created is
    /// removed again when a later step fails.
    /// `attrs` (nocow, extent size hint) are applied to the emptied file,
    /// before it is sized, as they only take effect on an empty file.
    pub fn create(
        path: &str,
        size: u64,
        prealloc: Preallocation,
        attrs: &CreateAttrs,
    ) -> Result<()> {
        let size = size.div_ceil(512) * 512;
        let create_err = |e: std::io::Error| {
            BlockError::from_io("", e)
                .in_file(path)
                .context(format_args!("Could not create '{path}'"))
        };
        // O_NONBLOCK: opening a FIFO never waits for a peer (it is refused
        // below, as QEMU refuses it, after the locks).
        let (file, created) = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => (f, true),
            // Exists (or is a dangling symlink, which O_EXCL refuses and
            // plain O_CREAT follows, as QEMU's create does): open it as it
            // is, without truncating.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(path)
                    .map_err(create_err)?;
                (f, false)
            }
            Err(e) => return Err(create_err(e)),
        };
        let node = FileNode {
            file,
            path: path.to_string(),
            read_only: false,
            lock_set: Some(LockSet::CREATE),
            exclusive: true,
            lock: Mutex::new(FileLock::none()),
            active: AtomicBool::new(true),
        };
        let file_type = node
            .file
            .metadata()
            .map_err(|e| node.err("open", 0, e))?
            .file_type();
        if file_type.is_char_device() || file_type.is_block_device() {
            return node
                .take_locks()
                .and_then(|()| node.size_device(size, prealloc));
        }
        let r = node
            .take_locks()
            .and_then(|()| node.check_truncatable(file_type))
            .and_then(|()| node.probe_space(size, prealloc))
            .and_then(|()| node.probe_size(size))
            .and_then(|()| node.resize(0, 0, Preallocation::Off))
            .map(|()| node.apply_attrs(attrs))
            .and_then(|()| node.resize(0, size, prealloc))
            .and_then(|()| node.flush());
        if r.is_err() && created {
            let _ = std::fs::remove_file(path);
        }
        drop(node);
        r
    }

    /// Sets the create attributes on the (empty) file: a nocow failure is
    /// ignored, and an extent size hint that cannot be set is reported only
    /// when it was given and nonzero (QEMU's default hint is 1 MiB).
    fn apply_attrs(&self, attrs: &CreateAttrs) {
        if attrs.nocow {
            crate::create_attrs::set_nocow(&self.file);
        }
        let hint = attrs.extent_size_hint.unwrap_or(1 << 20);
        if let Err(errno) = crate::create_attrs::set_extent_size_hint(&self.file, hint as u32) {
            if attrs.extent_size_hint.is_some_and(|h| h != 0) {
                log::warn!(
                    "Failed to set extent size hint: {}",
                    std::io::Error::from_raw_os_error(errno)
                );
            }
        }
    }

    /// A FIFO or socket cannot be truncated: QEMU's create tries and
    /// reports `Could not resize file: Invalid argument`; the same
    /// truncation is tried here (it changes nothing when it fails).
    fn check_truncatable(&self, file_type: std::fs::FileType) -> Result<()> {
        if file_type.is_file() {
            return Ok(());
        }
        self.file.set_len(0).map_err(|e| {
            BlockError::from_io("", e)
                .context("Could not resize file")
                .in_file(&self.path)
        })
    }

    /// A device keeps its size and contents: as QEMU's host_device create,
    /// it is not truncated, only checked to hold `size` bytes.
    fn size_device(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        if prealloc != Preallocation::Off {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "",
                format!("Unsupported preallocation mode '{}'", prealloc.as_str()),
            )
            .in_file(&self.path));
        }
        if size > self.file_len()? {
            return Err(BlockError::invalid("", "Cannot grow device files").in_file(&self.path));
        }
        Ok(())
    }

    /// Before an existing file is emptied: a size the file cannot have
    /// (too large for the filesystem) fails here, with the file unchanged,
    /// rather than after it has been truncated. Growing first only appends
    /// zeros that the truncation right after drops again.
    fn probe_size(&self, size: u64) -> Result<()> {
        if size > self.file_len()? {
            self.file
                .set_len(size)
                .map_err(|e| self.err("truncate", size, e))?;
        }
        Ok(())
    }

    /// Before an existing file is emptied: preallocation the filesystem
    /// has no room for (its free space plus what the file holds now, which
    /// the truncation frees) fails here, with the file unchanged and the
    /// message the preallocation itself would give. Approximate (the
    /// filesystem's own metadata is not counted), so the preallocation can
    /// still run out of space after the truncation.
    fn probe_space(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        if !matches!(prealloc, Preallocation::Falloc | Preallocation::Full) {
            return Ok(());
        }
        let Ok(avail) = sys::available_bytes(&self.file) else {
            return Ok(());
        };
        let held = self.file.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
        if size > avail.saturating_add(held) {
            let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
            return Err(self.prealloc_err(prealloc, 0, e));
        }
        Ok(())
    }

    /// A failed preallocation in QEMU's words.
    fn prealloc_err(&self, prealloc: Preallocation, offset: u64, e: std::io::Error) -> BlockError {
        let what = if prealloc == Preallocation::Full {
            "Could not write zeros for preallocation"
        } else {
            "Could not preallocate new data"
        };
        let mut e = self.err("", offset, e).context(what);
        e.offset = None;
        e
    }

    /// The file name.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, op: &str, offset: u64, e: std::io::Error) -> BlockError {
        BlockError::from_io(op, e).at(offset).in_file(&self.path)
    }

    fn check_writable(&self, op: &str) -> Result<()> {
        if !self.active.load(Ordering::Acquire) {
            return Err(BlockError::read_only(op, "image is inactive").in_file(&self.path));
        }
        if self.read_only {
            return Err(BlockError::read_only(op, "the file is open read-only").in_file(&self.path));
        }
        Ok(())
    }

    fn file_len(&self) -> Result<u64> {
        let meta = self.file.metadata().map_err(|e| self.err("length", 0, e))?;
        if meta.file_type().is_file() {
            return Ok(meta.len());
        }
        sys::seek(&self.file, 0, libc::SEEK_END)
            .map_err(|e| self.err("length", 0, e))
            .map(|o| o.unwrap_or(0))
    }

    fn resize(&self, old: u64, size: u64, prealloc: Preallocation) -> Result<()> {
        match prealloc {
            Preallocation::Off | Preallocation::Metadata => {
                self.file
                    .set_len(size)
                    .map_err(|e| self.err("truncate", size, e))?;
                if prealloc == Preallocation::Off && old == 0 && size > 0 {
                    self.allocate_first_block(size)?;
                }
                Ok(())
            }
            Preallocation::Falloc => {
                if size > old {
                    sys::fallocate(&self.file, 0, old, size - old)
                        .map_err(|e| self.prealloc_err(prealloc, old, e))?;
                }
                self.file
                    .set_len(size)
                    .map_err(|e| self.err("truncate", size, e))
            }
            Preallocation::Full => {
                if size > old {
                    let chunk = vec![0u8; 1 << 20];
                    let mut off = old;
                    while off < size {
                        let n = (size - off).min(chunk.len() as u64) as usize;
                        self.file
                            .write_all_at(&chunk[..n], off)
                            .map_err(|e| self.prealloc_err(prealloc, off, e))?;
                        off += n as u64;
                    }
                }
                self.file
                    .set_len(size)
                    .map_err(|e| self.err("truncate", size, e))
            }
        }
    }
}

impl FileNode {
    /// As QEMU's file-posix when an empty file grows without preallocation:
    /// writes zeros over the first block (4 KiB, or one sector of a smaller
    /// file, never past its end), so that later O_DIRECT access and block-status probes find the
    /// file's first block allocated; `qemu-img map` of the new image and
    /// its allocated size then match QEMU's.
    fn allocate_first_block(&self, size: u64) -> Result<()> {
        const MAX_BLOCKSIZE: u64 = 4096;
        let n = if size < MAX_BLOCKSIZE {
            512.min(size)
        } else {
            MAX_BLOCKSIZE
        };
        self.file
            .write_all_at(&vec![0u8; n as usize], 0)
            .map_err(|e| self.err("truncate", 0, e))
    }
}

impl BlockNode for FileNode {
    fn read_vectored(
        &self,
        offset: u64,
        bufs: &mut [IoSliceMut<'_>],
        _flags: ReqFlags,
    ) -> Result<()> {
        offset
            .checked_add(iov_len_mut(bufs))
            .ok_or_else(|| BlockError::new(ErrorKind::OutOfRange, "read", "offset overflow"))?;
        let mut off = offset;
        for b in bufs.iter_mut() {
            let mut done = 0usize;
            while done < b.len() {
                match self.file.read_at(&mut b[done..], off + done as u64) {
                    Ok(0) => {
                        // Past the end of the file: reads as zeros.
                        b[done..].fill(0);
                        done = b.len();
                    }
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.err("read", off + done as u64, e)),
                }
            }
            off += b.len() as u64;
        }
        Ok(())
    }

    fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        self.check_writable("write")?;
        offset
            .checked_add(iov_len(bufs))
            .ok_or_else(|| BlockError::new(ErrorKind::OutOfRange, "write", "offset overflow"))?;
        let mut off = offset;
        for b in bufs {
            self.file
                .write_all_at(b, off)
                .map_err(|e| self.err("write", off, e))?;
            off += b.len() as u64;
        }
        if flags.contains(ReqFlags::FUA) {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.read_only || !self.active.load(Ordering::Acquire) {
            return Ok(());
        }
        sys::fdatasync(&self.file).or_else(|e| {
            // A character device (/dev/null) has nothing to sync and says
            // so with EINVAL; QEMU's create goes on past it.
            let is_chr = self
                .file
                .metadata()
                .is_ok_and(|m| m.file_type().is_char_device());
            if is_chr && e.raw_os_error() == Some(libc::EINVAL) {
                Ok(())
            } else {
                Err(self.err("flush", 0, e))
            }
        })
    }

    /// The length in whole 512-byte sectors, rounded up, as QEMU reports it
    /// (the bytes past the end of the file read as zeros).
    fn length(&self) -> Result<u64> {
        Ok(self.file_len()?.div_ceil(512) * 512)
    }

    fn info(&self) -> Result<NodeInfo> {
        Ok(NodeInfo {
            format: "file".to_string(),
            virtual_size: self.length()?,
            ..NodeInfo::default()
        })
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable("discard")?;
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        match sys::fallocate(&self.file, mode, offset, len) {
            Ok(()) => Ok(()),
            Err(e) if sys::is_unsupported(&e) => Err(BlockError::unsupported("discard")),
            Err(e) => Err(self.err("discard", offset, e)),
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        self.check_writable("write_zeroes")?;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| BlockError::new(ErrorKind::OutOfRange, "write_zeroes", "overflow"))?;
        let size = self.file_len()?;
        let r = if flags.contains(ZeroFlags::MAY_UNMAP) && end <= size {
            sys::fallocate(
                &self.file,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        } else {
            sys::fallocate(&self.file, libc::FALLOC_FL_ZERO_RANGE, offset, len)
        };
        match r {
            Ok(()) => {
                if flags.contains(ZeroFlags::FUA) {
                    self.flush()?;
                }
                Ok(())
            }
            Err(e) if sys::is_unsupported(&e) => Err(BlockError::unsupported("write_zeroes")),
            Err(e) => Err(self.err("write_zeroes", offset, e)),
        }
    }

    fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        self.check_writable("truncate")?;
        let old = self.file_len()?;
        self.resize(old, size, prealloc)
    }

    fn allocated_size(&self) -> Result<u64> {
        let meta = self.file.metadata().map_err(|e| self.err("stat", 0, e))?;
        Ok(meta.blocks() * 512)
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        let size = self.file_len()?;
        let data = ExtentFlags::DATA
            .with(ExtentFlags::ALLOCATED)
            .with(ExtentFlags::OFFSET_VALID);
        let zero = ExtentFlags::ZERO
            .with(ExtentFlags::ALLOCATED)
            .with(ExtentFlags::OFFSET_VALID);
        if offset >= size {
            return Ok(Extent {
                length: len,
                flags: zero,
                mapped_offset: offset,
                ..Extent::default()
            });
        }
        let end = offset.saturating_add(len).min(size);
        let next_data = match sys::seek(&self.file, offset, libc::SEEK_DATA) {
            Ok(v) => v.unwrap_or(size),
            // No SEEK_DATA support: everything is data.
            Err(_) => offset,
        };
        if next_data > offset {
            return Ok(Extent {
                length: next_data.min(end) - offset,
                flags: zero,
                mapped_offset: offset,
                ..Extent::default()
            });
        }
        let next_hole = match sys::seek(&self.file, offset, libc::SEEK_HOLE) {
            Ok(v) => v.unwrap_or(size),
            Err(_) => size,
        };
        Ok(Extent {
            length: next_hole.clamp(offset + 1, end) - offset,
            flags: data,
            mapped_offset: offset,
            ..Extent::default()
        })
    }

    fn has_zero_init(&self) -> bool {
        self.file
            .metadata()
            .map(|m| m.file_type().is_file())
            .unwrap_or(false)
    }

    /// Buffered I/O takes any request shape (the alignment O_DIRECT needs
    /// if the descriptor has it); the file system's block size is the
    /// preferred transfer; writes and zeroing loop over short transfers,
    /// so there is no maximum.
    fn limits(&self) -> IoLimits {
        IoLimits {
            request_alignment: sys::direct_io_alignment(&self.file),
            optimal_transfer: self.file.metadata().map(|m| m.blksize()).unwrap_or(0),
            ..IoLimits::default()
        }
    }

    /// Zeroing and discarding are `fallocate` calls (fast on a regular
    /// file: extents change, no data is written; a file system without
    /// them answers Unsupported and the caller falls back), FUA is an
    /// `fdatasync` after the write, and every handle of a file shares the
    /// page cache (multi-conn safe). Nothing that writes while the node is
    /// read-only.
    fn capabilities(&self) -> NodeCapabilities {
        let writable = !self.read_only;
        let regular = self.file.metadata().is_ok_and(|m| m.file_type().is_file());
        NodeCapabilities {
            can_zero: writable,
            can_fast_zero: writable && regular,
            can_fua: writable,
            can_discard: writable,
            multi_conn_safe: true,
            thread_model: ThreadModel::Parallel,
        }
    }

    fn migration(&self) -> Option<&dyn MigrationControl> {
        Some(self)
    }
}

impl MigrationControl for FileNode {
    fn invalidate_cache(&self) -> Result<()> {
        // Nothing is cached but the size, which is read from the file on every
        // call; check that the file is still reachable.
        self.file
            .metadata()
            .map(|_| ())
            .map_err(|e| self.err("invalidate_cache", 0, e))
    }

    fn activate(&self) -> Result<()> {
        if self.active.load(Ordering::Acquire) {
            return self.invalidate_cache();
        }
        self.take_locks()?;
        self.invalidate_cache()?;
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    fn inactivate(&self) -> Result<()> {
        if !self.active.load(Ordering::Acquire) {
            return Ok(());
        }
        self.flush()?;
        self.active.store(false, Ordering::Release);
        self.release_locks();
        Ok(())
    }
}
