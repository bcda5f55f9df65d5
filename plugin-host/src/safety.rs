//! Checks made before any byte of an existing file changes
//! (docs/data-safety.md): whether two names are one file, which files an
//! open image reads, and whether another process holds a file open.

use crate::graph::{GraphNode, NodeSpec};
use block_core::{ChildRole, ErrorKind, OpenFlags, Registry, Result};
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
