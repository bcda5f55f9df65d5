//! Services the host hands to drivers: opening children through the registry
//! and creating protocol-level files.

use crate::error::Result;
use crate::node::BlockNode;
use crate::types::{OpenFlags, Preallocation};
use std::path::Path;
use std::sync::Arc;

/// The role of a child node relative to its parent.
///
/// Across the ABI a role is one `u32`: the role kind in the low 16 bits
/// and, for the indexed roles (ABI minor 5), the index in the high 16 bits
/// ([`ChildRole::to_u32`], [`ChildRole::from_u32`]). The unindexed roles
/// keep the numbers they always had, so older plugins never see the new
/// encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChildRole {
    /// The storage a format node is stored in: always opened with a protocol
    /// driver, never probed for a format.
    #[default]
    File,
    /// A backing file (copy-on-write base).
    Backing,
    /// An external data file (qcow2 `data_file`): protocol only, like `File`.
    DataFile,
    /// Extent N of a multi-extent image (vmdk's extent files): protocol
    /// only, like `File`; block status offsets may point into it.
    Extent(u16),
    /// Parent N of a differencing image that names several (vhdx parent
    /// locators, in the order the format lists them): probed like
    /// `Backing`.
    Parent(u16),
}

impl ChildRole {
    /// From the ABI number (kind in the low 16 bits, index above).
    pub fn from_u32(v: u32) -> Option<ChildRole> {
        let index = (v >> 16) as u16;
        Some(match (v & 0xffff, index) {
            (0, 0) => ChildRole::File,
            (1, 0) => ChildRole::Backing,
            (2, 0) => ChildRole::DataFile,
            (3, i) => ChildRole::Extent(i),
            (4, i) => ChildRole::Parent(i),
            _ => return None,
        })
    }
    /// The ABI number.
    pub fn to_u32(self) -> u32 {
        match self {
            ChildRole::File => 0,
            ChildRole::Backing => 1,
            ChildRole::DataFile => 2,
            ChildRole::Extent(i) => 3 | (i as u32) << 16,
            ChildRole::Parent(i) => 4 | (i as u32) << 16,
        }
    }
    /// The ABI minor version that introduced this role as a mapped child
    /// of block status (`File` always, `DataFile` 4, the indexed roles 5).
    pub fn mapped_since_minor(self) -> u16 {
        match self {
            ChildRole::File | ChildRole::Backing => 0,
            ChildRole::DataFile => 4,
            ChildRole::Extent(_) | ChildRole::Parent(_) => 5,
        }
    }
    /// True for roles whose node holds this image's data (block status
    /// offsets may point into it): `File`, `DataFile`, `Extent(n)`.
    pub fn holds_data(self) -> bool {
        matches!(
            self,
            ChildRole::File | ChildRole::DataFile | ChildRole::Extent(_)
        )
    }
    /// True for protocol-only roles, which are never probed for a format.
    pub fn is_protocol(self) -> bool {
        self.holds_data()
    }
    /// A lowercase name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildRole::File => "file",
            ChildRole::Backing => "backing",
            ChildRole::DataFile => "data-file",
            ChildRole::Extent(_) => "extent",
            ChildRole::Parent(_) => "parent",
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
