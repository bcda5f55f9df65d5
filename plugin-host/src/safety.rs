//! Checks made before any byte of an existing file changes
//! (docs/data-safety.md): whether two names are one file, which files an
//! open image reads, and whether another process holds a file open.

use crate::graph::GraphNode;
use block_core::{ChildRole, Registry, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

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
            (FileRelation::Backing, _) | (_, ChildRole::Backing) => FileRelation::Backing,
            (_, ChildRole::DataFile) => FileRelation::DataFile,
            (r, ChildRole::File) => r,
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

/// Checks, without changing or locking anything, that no other process
/// holds the existing file `name` open (QEMU's create conflicts first, with
/// QEMU's messages, then a holder of any kind). A name that does not exist,
/// is not served by the `file` protocol or cannot be opened passes: the
/// create that follows reports those itself.
pub fn check_unused(registry: &Registry, name: &str) -> Result<()> {
    match registry.protocol_for(name) {
        Some(p) if p.driver.name() == "file" => {}
        _ => return Ok(()),
    }
    let path = name.strip_prefix("file:").unwrap_or(name);
    // Only regular files and block devices are opened (a FIFO would block).
    let is_image =
        |m: &std::fs::Metadata| m.file_type().is_file() || m.file_type().is_block_device();
    if !std::fs::metadata(path)
        .map(|m| is_image(&m))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Ok(());
    };
    if !file.metadata().map(|m| is_image(&m)).unwrap_or(false) {
        return Ok(());
    }
    blk_file::lock::check_unused(&file, path, blk_file::lock::LockSet::CREATE)
}
