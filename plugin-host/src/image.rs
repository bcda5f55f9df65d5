//! The embedding front end: an open image graph with bounds checks, the
//! emulation of operations a driver lacks, the probed-raw first-sector guard,
//! the inactive gate, and activation through the graph.

use crate::graph::GraphNode;
use crate::host::OpenOptions;
use block_core::control::require;
use block_core::{
    BlockError, BlockNode, CheckMode, CheckReport, ChildRole, ErrorKind, Extent, ExtentFlags,
    NodeInfo, Preallocation, ProbeInput, Registry, ReqFlags, Result, SnapshotInfo, ZeroFlags,
};
use serde::Serialize;
use std::io::{IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// The largest buffer used when emulating zero writes.
const ZERO_CHUNK: u64 = 1 << 20;

/// `qemu-img info` material for one image of a chain.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// The node's own description (format, virtual size, backing...).
    #[serde(flatten)]
    pub node: NodeInfo,
    /// The file name.
    pub filename: String,
    /// Bytes used on storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
    /// The backing file name resolved against the image's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_backing_filename: Option<String>,
    /// Internal snapshots.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotInfo>,
}

/// An open image: the root of a node graph.
pub struct Image {
    registry: Arc<Registry>,
    root: Arc<GraphNode>,
    read_only: bool,
    inactive: AtomicBool,
    /// Shared by modifying operations, exclusive for activate/inactivate.
    state: RwLock<()>,
}

impl Image {
    pub(crate) fn new(registry: Arc<Registry>, root: Arc<GraphNode>, opts: &OpenOptions) -> Image {
        Image {
            registry,
            root,
            read_only: opts.read_only || opts.force_share,
            inactive: AtomicBool::new(opts.inactive),
            state: RwLock::new(()),
        }
    }

    /// The root node of the graph.
    pub fn graph(&self) -> &Arc<GraphNode> {
        &self.root
    }

    /// The root driver node.
    pub fn node(&self) -> &Arc<dyn BlockNode> {
        &self.root.node
    }

    /// The format driver name.
    pub fn format(&self) -> &str {
        &self.root.driver
    }

    /// The file name the image was opened with.
    pub fn filename(&self) -> &str {
        &self.root.filename
    }

    /// True when the image was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// True while the image is inactive (incoming migration).
    pub fn is_inactive(&self) -> bool {
        self.inactive.load(Ordering::Acquire)
    }

    /// The guest-visible length.
    pub fn length(&self) -> Result<u64> {
        self.root.node.length()
    }

    fn err(&self, e: BlockError) -> BlockError {
        e.in_file(&self.root.filename)
    }

    fn check_range(&self, op: &str, offset: u64, len: u64) -> Result<()> {
        let size = self.length()?;
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(self.err(
                BlockError::new(
                    ErrorKind::OutOfRange,
                    op,
                    format!("request of {len} bytes is past the end of the image ({size} bytes)"),
                )
                .at(offset),
            )),
        }
    }

    /// Admits a modifying operation: holds the state lock shared for the
    /// operation's duration (so `inactivate` waits for it to finish) and
    /// refuses while the image is inactive or read-only.
    fn check_writable(&self, op: &str) -> Result<RwLockReadGuard<'_, ()>> {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        if self.is_inactive() {
            return Err(self.err(BlockError::read_only(op, "image is inactive")));
        }
        if self.read_only {
            return Err(self.err(BlockError::read_only(op, "image is read-only")));
        }
        Ok(guard)
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_vectored(offset, &mut [IoSliceMut::new(buf)])
    }

    /// Vectored read.
    pub fn read_vectored(&self, offset: u64, bufs: &mut [IoSliceMut<'_>]) -> Result<()> {
        self.check_range("read", offset, block_core::iov_len_mut(bufs))?;
        self.root.node.read_vectored(offset, bufs, ReqFlags::NONE)
    }

    /// Writes `buf` at `offset`.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.write_vectored(offset, &[IoSlice::new(buf)], ReqFlags::NONE)
    }

    /// Vectored write. FUA is emulated by a flush after the write;
    /// COMPRESSED is passed to the driver.
    pub fn write_vectored(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let _admitted = self.check_writable("write")?;
        self.write_admitted(offset, bufs, flags)
    }

    /// A write already admitted by [`Image::check_writable`].
    fn write_admitted(&self, offset: u64, bufs: &[IoSlice<'_>], flags: ReqFlags) -> Result<()> {
        let len = block_core::iov_len(bufs);
        self.check_range("write", offset, len)?;
        if self.root.probed_raw && offset < 512 && len > 0 {
            self.guard_first_sector(offset, bufs)?;
        }
        self.root
            .node
            .write_vectored(offset, bufs, flags.without(ReqFlags::FUA))?;
        if flags.contains(ReqFlags::FUA) {
            self.root.node.flush()?;
        }
        Ok(())
    }

    /// The CVE-2008-2004 guard: a write to the first sector of an image whose
    /// format was probed as raw must not make it probe as another format.
    fn guard_first_sector(&self, offset: u64, bufs: &[IoSlice<'_>]) -> Result<()> {
        let size = self.length()?;
        let n = size.min(block_core::PROBE_HEAD_SIZE as u64) as usize;
        let mut head = vec![0u8; n];
        self.root
            .node
            .read_vectored(0, &mut [IoSliceMut::new(&mut head)], ReqFlags::NONE)?;
        let mut pos = offset as usize;
        for b in bufs {
            for &byte in b.iter() {
                if pos >= head.len() {
                    break;
                }
                head[pos] = byte;
                pos += 1;
            }
        }
        let input = ProbeInput {
            head: &head,
            tail: &[],
            file_size: size,
            filename: &self.root.filename,
        };
        let probed = match self.registry.probe(&input)? {
            Some((d, _)) if d.driver.name() != "raw" => Some(d.driver.name().to_string()),
            _ => crate::foreign::detect(&input).map(|f| f.name.to_string()),
        };
        if let Some(name) = probed {
            return Err(self.err(
                BlockError::new(
                    ErrorKind::PermissionDenied,
                    "write",
                    format!(
                        "Operation not permitted: the write would make an image probed as raw look like '{name}' (open it with an explicit format to allow this)"
                    ),
                )
                .at(offset),
            ));
        }
        Ok(())
    }

    /// Makes a range read as zeros; emulated with zero-buffer writes when the
    /// driver does not support it (unless `NO_FALLBACK`).
    pub fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> Result<()> {
        let _admitted = self.check_writable("write_zeroes")?;
        self.check_range("write_zeroes", offset, len)?;
        match self.root.node.write_zeroes(offset, len, flags) {
            Err(e) if e.is_unsupported() && !flags.contains(ZeroFlags::NO_FALLBACK) => {
                log::debug!("write_zeroes emulated with zero writes: {e}");
                let zeros = vec![0u8; len.min(ZERO_CHUNK) as usize];
                let mut off = offset;
                while off < offset + len {
                    let n = (offset + len - off).min(ZERO_CHUNK) as usize;
                    let fl = if flags.contains(ZeroFlags::FUA) {
                        ReqFlags::FUA
                    } else {
                        ReqFlags::NONE
                    };
                    self.write_admitted(off, &[IoSlice::new(&zeros[..n])], fl)?;
                    off += n as u64;
                }
                Ok(())
            }
            r => r,
        }
    }

    /// Discards a range. Discard is advisory: a driver without it succeeds.
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let _admitted = self.check_writable("discard")?;
        self.check_range("discard", offset, len)?;
        match self.root.node.discard(offset, len) {
            Err(e) if e.is_unsupported() => {
                log::debug!("discard ignored: {e}");
                Ok(())
            }
            r => r,
        }
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<()> {
        if self.is_inactive() {
            return Ok(());
        }
        self.root.node.flush()
    }

    /// Changes the guest-visible size.
    pub fn truncate(&self, size: u64, prealloc: Preallocation) -> Result<()> {
        let _admitted = self.check_writable("truncate")?;
        self.root.node.truncate(size, prealloc)
    }

    /// The status of the range at `offset` in the top node only, refined by
    /// the file's holes where the format asks for it (`file_status.rs`).
    pub fn block_status(&self, offset: u64, len: u64) -> Result<Extent> {
        self.check_range("block_status", offset, len)?;
        let e = self.root.node.block_status(offset, len)?;
        Ok(crate::file_status::refine(&self.root, e))
    }

    /// The status of the range at `offset` through the backing chain, and the
    /// depth (0 = top) of the node that provides it. A range allocated
    /// nowhere has depth equal to the chain length and reads as zeros. The
    /// answering node's status is refined by its file's holes where the
    /// format asks for it (`file_status.rs`).
    pub fn block_status_above(&self, offset: u64, len: u64) -> Result<(Extent, usize)> {
        self.check_range("block_status", offset, len)?;
        let mut node = self.root.clone();
        let mut depth = 0usize;
        let mut want = len;
        loop {
            let node_len = node.node.length()?;
            if offset >= node_len {
                // Past the end of a shorter backing file: zeros.
                return Ok((
                    Extent {
                        length: want,
                        flags: ExtentFlags::ZERO,
                        ..Extent::default()
                    },
                    depth,
                ));
            }
            let q = want.min(node_len - offset);
            let e = node.node.block_status(offset, q)?;
            if e.flags.contains(ExtentFlags::ALLOCATED) || node.role == Some(ChildRole::File) {
                return Ok((crate::file_status::refine(&node, e), depth));
            }
            match node.backing() {
                Some(b) if offset >= b.node.length()? => {
                    // As QEMU: past the end of the backing file the range
                    // reads as zeros, answered by this node.
                    return Ok((
                        Extent {
                            flags: e
                                .flags
                                .with(ExtentFlags::ZERO)
                                .without(ExtentFlags::RECURSE),
                            ..e
                        },
                        depth,
                    ));
                }
                Some(b) => {
                    want = e.length;
                    node = b;
                    depth += 1;
                }
                None => {
                    // The offset stays with OFFSET_VALID (qemu-img maps an
                    // unallocated subcluster of an allocated qcow2 cluster).
                    return Ok((
                        Extent {
                            length: e.length,
                            flags: e
                                .flags
                                .with(ExtentFlags::ZERO)
                                .without(ExtentFlags::DATA)
                                .without(ExtentFlags::RECURSE),
                            ..e
                        },
                        depth,
                    ));
                }
            }
        }
    }

    /// Info about the top image.
    pub fn info(&self) -> Result<ImageInfo> {
        info_of(&self.root)
    }

    /// Info about every image of the backing chain, top first.
    pub fn info_chain(&self) -> Result<Vec<ImageInfo>> {
        let mut out = vec![info_of(&self.root)?];
        let mut cur = self.root.backing();
        while let Some(n) = cur {
            out.push(info_of(&n)?);
            cur = n.backing();
        }
        Ok(out)
    }

    /// Checks (and repairs) the top image.
    pub fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        let _admitted = if mode != CheckMode::REPORT {
            Some(self.check_writable("check")?)
        } else {
            None
        };
        require(self.root.node.check_control(), "check")
            .and_then(|c| c.check(mode))
            .map_err(|e| self.err(e))
    }

    /// Lists internal snapshots.
    pub fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        require(self.root.node.snapshots(), "snapshot_list")?.snapshot_list()
    }

    /// Creates an internal snapshot.
    pub fn snapshot_create(&self, name: &str) -> Result<()> {
        let _admitted = self.check_writable("snapshot_create")?;
        require(self.root.node.snapshots(), "snapshot_create")?.snapshot_create(name)
    }

    /// Reverts to an internal snapshot.
    pub fn snapshot_apply(&self, id_or_name: &str) -> Result<()> {
        let _admitted = self.check_writable("snapshot_apply")?;
        require(self.root.node.snapshots(), "snapshot_apply")?.snapshot_apply(id_or_name)
    }

    /// Deletes an internal snapshot.
    pub fn snapshot_delete(&self, id_or_name: &str) -> Result<()> {
        let _admitted = self.check_writable("snapshot_delete")?;
        require(self.root.node.snapshots(), "snapshot_delete")?.snapshot_delete(id_or_name)
    }

    /// Rewrites the backing file reference stored in the image.
    pub fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()> {
        let _admitted = self.check_writable("change_backing_file")?;
        require(self.root.node.backing_control(), "change_backing_file")?
            .change_backing_file(filename, format)
    }

    /// Drops every allocation of the top image so it reads from its backing
    /// file (used by `commit`).
    pub fn make_empty(&self) -> Result<()> {
        let _admitted = self.check_writable("make_empty")?;
        require(self.root.node.backing_control(), "make_empty")
            .and_then(|b| b.make_empty())
            .map_err(|e| self.err(e))
    }

    /// Persistent dirty bitmap control (`qemu-img bitmap`, queries): one
    /// JSON-described operation (see `BlockNode::bitmap`). Modifying
    /// operations are admitted like writes; `get` and `list` are reads.
    pub fn bitmap(&self, request: &str) -> Result<String> {
        let query = serde_json::from_str::<serde_json::Value>(request)
            .ok()
            .and_then(|v| v["op"].as_str().map(|o| o == "get" || o == "list"))
            .unwrap_or(false);
        let _admitted = if query {
            None
        } else {
            Some(self.check_writable("bitmap")?)
        };
        require(self.root.node.bitmap_control(), "bitmap")
            .and_then(|b| b.bitmap(request))
            .map_err(|e| self.err(e))
    }

    /// Changes format options (`qemu-img amend`), given as `key=value` pairs.
    pub fn amend(&self, options: &[(String, String)]) -> Result<()> {
        let _admitted = self.check_writable("amend")?;
        require(self.root.node.amend_control(), "amend")
            .and_then(|a| a.amend(options))
            .map_err(|e| self.err(e))
    }

    /// Takes ownership after a handoff: activates every node from the
    /// children up (each re-reads its metadata). On failure the image stays
    /// inactive and the error names the node.
    pub fn activate(&self) -> Result<()> {
        let _exclusive = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = activate_node(&self.root) {
            self.inactive.store(true, Ordering::Release);
            return Err(e);
        }
        self.inactive.store(false, Ordering::Release);
        Ok(())
    }

    /// Re-reads every node's cached metadata (children first) without
    /// changing the active state.
    pub fn invalidate_cache(&self) -> Result<()> {
        invalidate_node(&self.root)
    }

    /// Gives up ownership for a handoff: flushes, then inactivates every node
    /// from the top down (qcow2 writes back its caches and clears the dirty
    /// bit). Afterwards writes fail until [`Image::activate`].
    pub fn inactivate(&self) -> Result<()> {
        // Waits for every admitted write (the "writers above") to finish.
        let _exclusive = self.state.write().unwrap_or_else(|p| p.into_inner());
        if self.is_inactive() {
            return Ok(());
        }
        self.root.node.flush().map_err(|e| self.err(e))?;
        inactivate_node(&self.root)?;
        self.inactive.store(true, Ordering::Release);
        Ok(())
    }
}

fn activate_node(n: &GraphNode) -> Result<()> {
    for (_, c) in n.children() {
        activate_node(&c)?;
    }
    require(n.node.migration(), "activate")
        .and_then(|m| m.activate())
        .map_err(|e| {
            let e = e.in_file(&n.filename);
            if e.is_unsupported() {
                e.context(format_args!("driver '{}' cannot be activated", n.driver))
            } else {
                e
            }
        })
}

fn invalidate_node(n: &GraphNode) -> Result<()> {
    for (_, c) in n.children() {
        invalidate_node(&c)?;
    }
    require(n.node.migration(), "invalidate_cache")
        .and_then(|m| m.invalidate_cache())
        .map_err(|e| e.in_file(&n.filename))
}

fn inactivate_node(n: &GraphNode) -> Result<()> {
    // Every node is flushed before it is inactivated; a node without the
    // migration capability is only flushed.
    n.node.flush().map_err(|e| e.in_file(&n.filename))?;
    if let Some(m) = n.node.migration() {
        m.inactivate().map_err(|e| e.in_file(&n.filename))?;
    }
    for (_, c) in n.children() {
        inactivate_node(&c)?;
    }
    Ok(())
}

fn info_of(n: &GraphNode) -> Result<ImageInfo> {
    let node = n.node.info().map_err(|e| e.in_file(&n.filename))?;
    let actual_size = n.node.allocated_size().ok();
    let full_backing_filename = node
        .backing_filename
        .as_deref()
        .map(|b| block_core::resolve_relative(b, Some(&n.filename)));
    let snapshots = n
        .node
        .snapshots()
        .and_then(|s| s.snapshot_list().ok())
        .unwrap_or_default();
    Ok(ImageInfo {
        node,
        filename: n.filename.clone(),
        actual_size,
        full_backing_filename,
        snapshots,
    })
}
