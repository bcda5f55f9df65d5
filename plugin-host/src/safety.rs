//! Checks made before any byte of an existing file changes
//! (docs/data-safety.md): whether two names are one file, which files an
//! open image reads, and whether another process holds a file open.

use crate::graph::{GraphNode, NodeSpec};
use block_core::{BlockError, ChildRole, ErrorKind, OpenFlags, Registry, Result};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// The identity of an existing file, symlinks followed: device and inode,
/// so that `a`, `./a`, a symlink to `a` and a hard link of `a` are one file.
pub fn file_id(name: &str) -> Option<(u64, u64)> {
    let path = name.strip_prefix("file:").unwrap_or(name);
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `a` and `b` name the same existing file.
pub fn same_file(a: &str, b: &str) -> bool {
    match (file_id(a), file_id(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Where a file sits in an image's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRelation {
    /// The image itself (its format node or its storage).
    Image,
    /// A file of the backing chain.
    Backing,
    /// An external data file (qcow2 `data_file`) of the image or of a
    /// backing file.
    DataFile,
}

/// One file an open image reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// The name the node was opened with.
    pub filename: String,
    /// Where it sits.
    pub relation: FileRelation,
}

/// Every node name of an open image graph with its relation to the root:
/// the image, its backing chain, its data files.
pub fn image_files(root: &GraphNode) -> Vec<ImageFile> {
    let mut out = Vec::new();
    collect(root, FileRelation::Image, &mut out);
    out
}

fn collect(node: &GraphNode, relation: FileRelation, out: &mut Vec<ImageFile>) {
    if !out
        .iter()
        .any(|f| f.filename == node.filename && f.relation == relation)
    {
        out.push(ImageFile {
            filename: node.filename.clone(),
            relation,
        });
    }
    for (role, child) in node.children() {
        let r = match (relation, role) {
            (FileRelation::Backing, _) | (_, ChildRole::Backing | ChildRole::Parent(_)) => {
                FileRelation::Backing
            }
            (_, ChildRole::DataFile) => FileRelation::DataFile,
            (r, ChildRole::File | ChildRole::Extent(_)) => r,
        };
        collect(&child, r, out);
    }
}

/// The first file of the image graph `root` that is the same file as
/// `target`, if any.
pub fn find_same_file(root: &GraphNode, target: &str) -> Option<ImageFile> {
    let id = file_id(target)?;
    image_files(root)
        .into_iter()
        .find(|f| file_id(&f.filename) == Some(id))
}

/// Checks, without changing anything, that no other process holds the
/// existing file `name` open: its protocol node is opened exclusively
/// ([`OpenFlags::EXCLUSIVE`]) and closed again. A name that does not exist
/// or cannot be opened passes: the create that follows reports it itself.
/// For a create of several files, so that the first is not emptied before
/// the second turns out to be held; each protocol create checks again.
pub fn check_unused(registry: &Arc<Registry>, name: &str) -> Result<()> {
    let Some(proto) = registry.protocol_for(name) else {
        return Ok(());
    };
    let spec = NodeSpec::new(
        name,
        Some(proto.driver.name().to_string()),
        OpenFlags::EXCLUSIVE,
    );
    match crate::graph::open_node(registry, &spec) {
        Err(e) if e.kind == ErrorKind::Busy => Err(e),
        _ => Ok(()),
    }
}

/// Checks, before a create of several files empties any of them, that the
/// file protocol create of `name` will not fail at its open: an existing
/// name must be a file that can be opened for writing (not a directory,
/// not immutable, not on a read-only filesystem; a FIFO fails as its
/// create would, at the truncation), and a missing name must be
/// creatable in its directory. A missing file is created for the test and
/// removed again; an existing one is opened without truncation and closed,
/// so nothing changes. Names of other protocols pass (their create checks
/// them). The error is the one the create would report.
pub fn check_creatable(registry: &Arc<Registry>, name: &str) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    match registry.protocol_for(name) {
        Some(p) if p.driver.name() == "file" => {}
        _ => return Ok(()),
    }
    let path = name.strip_prefix("file:").unwrap_or(name);
    let create_err = |e: std::io::Error| {
        BlockError::from_io("", e).context(format_args!("Could not create '{path}'"))
    };
    match std::fs::metadata(path) {
        // A FIFO opens (without waiting for a peer) and fails at the
        // create's truncation, which changes nothing: tried here the same.
        Ok(m) if m.file_type().is_fifo() => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(create_err)?
            .set_len(0)
            .map_err(|e| BlockError::from_io("", e).context("Could not resize file")),
        Ok(m) if m.is_dir() => Err(create_err(std::io::Error::from_raw_os_error(libc::EISDIR))),
        Ok(_) => std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map(drop)
            .map_err(create_err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(f) => {
                    drop(f);
                    let _ = std::fs::remove_file(path);
                    Ok(())
                }
                // A dangling symlink: its create follows it and reports
                // what it finds.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(create_err(e)),
            }
        }
        Err(e) => Err(create_err(e)),
    }
}
