//! Services the host hands to drivers: opening children through the registry
//! and creating protocol-level files.

use crate::error::Result;
use crate::node::BlockNode;
use crate::types::{OpenFlags, Preallocation};
use std::path::Path;
use std::sync::Arc;

/// The role of a child node relative to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum ChildRole {
    /// The storage a format node is stored in: always opened with a protocol
    /// driver, never probed for a format.
    #[default]
    File = 0,
    /// A backing file (copy-on-write base).
    Backing = 1,
    /// An external data file (qcow2 `data_file`): protocol only, like `File`.
    DataFile = 2,
}

impl ChildRole {
    /// From the ABI number.
    pub fn from_u32(v: u32) -> Option<ChildRole> {
        Some(match v {
            0 => ChildRole::File,
            1 => ChildRole::Backing,
            2 => ChildRole::DataFile,
            _ => return None,
        })
    }
    /// A lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildRole::File => "file",
            ChildRole::Backing => "backing",
            ChildRole::DataFile => "data-file",
        }
    }
}

/// A request to open a child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRequest {
    /// The child's role.
    pub role: ChildRole,
    /// The file name as stored (may be relative).
    pub filename: String,
    /// Resolve a relative `filename` against this file's directory.
    pub relative_to: Option<String>,
    /// The format driver to use; `None` probes (backing files only).
    pub format: Option<String>,
    /// Open flags (read-only, no-backing, no-probe, inactive...).
    pub flags: OpenFlags,
    /// Driver options for the child.
    pub options: Vec<(String, String)>,
}

impl ChildRequest {
    /// A request for `filename` in `role` with default flags.
    pub fn new(role: ChildRole, filename: impl Into<String>) -> ChildRequest {
        ChildRequest {
            role,
            filename: filename.into(),
            relative_to: None,
            format: None,
            flags: OpenFlags::NONE,
            options: Vec::new(),
        }
    }
}

/// What a driver may ask of the host. Handed to `open` and `create`; a node
/// may keep it for later child opens.
pub trait HostServices: Send + Sync {
    /// Opens a child through the registry. `File` and `DataFile` children use
    /// the protocol driver for the name (never a probed format); `Backing`
    /// children are probed unless a format is named. The host detects loops
    /// and bounds the chain depth.
    fn open_child(&self, req: &ChildRequest) -> Result<Arc<dyn BlockNode>>;

    /// Creates (or truncates) a protocol-level file of `size` bytes.
    fn create_file(&self, filename: &str, size: u64, prealloc: Preallocation) -> Result<()>;
}

/// Resolves `name` against the directory of `relative_to` as QEMU does for
/// backing files: absolute names and protocol-prefixed names stay as they are.
pub fn resolve_relative(name: &str, relative_to: Option<&str>) -> String {
    let Some(parent) = relative_to else {
        return name.to_string();
    };
    if name.starts_with('/') || has_protocol_prefix(name) {
        return name.to_string();
    }
    match Path::new(parent).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name).to_string_lossy().into_owned(),
        _ => name.to_string(),
    }
}

/// True for names such as `null-co://` or `nbd:...` that name a protocol.
pub fn has_protocol_prefix(name: &str) -> bool {
    match name.find(':') {
        Some(i) => {
            let p = &name[..i];
            !p.is_empty()
                && !p.contains('/')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names() {
        assert_eq!(
            resolve_relative("b.img", Some("/x/y/a.qcow2")),
            "/x/y/b.img"
        );
        assert_eq!(
            resolve_relative("/abs/b.img", Some("/x/a.qcow2")),
            "/abs/b.img"
        );
        assert_eq!(resolve_relative("b.img", Some("a.qcow2")), "b.img");
        assert_eq!(resolve_relative("b.img", None), "b.img");
        assert_eq!(resolve_relative("null-co://", Some("/x/a")), "null-co://");
    }
}
