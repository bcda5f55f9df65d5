//! Services the host hands to drivers: opening children through the registry
//! and creating protocol-level files.

use crate::error::Result;
use crate::node::BlockNode;
pub use crate::types::ChildRole;
use crate::types::{OpenFlags, Preallocation};
use std::path::Path;
use std::sync::Arc;

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

    /// Old roles keep their numbers; indexed roles round-trip; unknown
    /// kinds and indexes on unindexed roles are refused.
    #[test]
    fn child_role_numbers() {
        assert_eq!(ChildRole::File.to_u32(), 0);
        assert_eq!(ChildRole::Backing.to_u32(), 1);
        assert_eq!(ChildRole::DataFile.to_u32(), 2);
        assert_eq!(ChildRole::Extent(0).to_u32(), 3);
        assert_eq!(ChildRole::Parent(2).to_u32(), 0x2_0004);
        for r in [
            ChildRole::File,
            ChildRole::Backing,
            ChildRole::DataFile,
            ChildRole::Extent(7),
            ChildRole::Extent(u16::MAX),
            ChildRole::Parent(1),
        ] {
            assert_eq!(ChildRole::from_u32(r.to_u32()), Some(r));
        }
        assert_eq!(ChildRole::from_u32(5), None);
        assert_eq!(ChildRole::from_u32(0x1_0000), None);
        assert_eq!(ChildRole::from_u32(0x1_0002), None);
        assert!(ChildRole::Extent(3).holds_data() && !ChildRole::Parent(0).holds_data());
    }
}
