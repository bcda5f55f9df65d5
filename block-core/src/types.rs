//! Plain value types shared by drivers and hosts: request flags, extents,
//! preallocation modes, open flags, child roles. All are `Copy` and map 1:1
//! onto the ABI. This module imports nothing from the crate.

/// Flags of a read or write request (values as QEMU's `BDRV_REQ_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ReqFlags(pub u32);

impl ReqFlags {
    /// No flags.
    pub const NONE: ReqFlags = ReqFlags(0);
    /// Write-through: the data is durable when the write returns.
    pub const FUA: ReqFlags = ReqFlags(0x10);
    /// Store the data compressed (formats that support compression).
    pub const COMPRESSED: ReqFlags = ReqFlags(0x20);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: ReqFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both flag sets.
    pub fn with(self, other: ReqFlags) -> ReqFlags {
        ReqFlags(self.0 | other.0)
    }
    /// This set without `other`.
    pub fn without(self, other: ReqFlags) -> ReqFlags {
        ReqFlags(self.0 & !other.0)
    }
}

/// Flags of a write_zeroes request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ZeroFlags(pub u32);

impl ZeroFlags {
    /// No flags: the range must read as zeros, allocation is kept.
    pub const NONE: ZeroFlags = ZeroFlags(0);
    /// The driver may deallocate (unmap) the range.
    pub const MAY_UNMAP: ZeroFlags = ZeroFlags(0x4);
    /// Write-through.
    pub const FUA: ZeroFlags = ZeroFlags(0x10);
    /// Do not fall back to writing a zero buffer: fail with Unsupported instead.
    pub const NO_FALLBACK: ZeroFlags = ZeroFlags(0x100);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: ZeroFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both flag sets.
    pub fn with(self, other: ZeroFlags) -> ZeroFlags {
        ZeroFlags(self.0 | other.0)
    }
}

/// Flags describing an extent returned by block status (values as QEMU's `BDRV_BLOCK_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ExtentFlags(pub u32);

impl ExtentFlags {
    /// The range holds data (as opposed to a hole).
    pub const DATA: ExtentFlags = ExtentFlags(0x1);
    /// The range reads as zeros.
    pub const ZERO: ExtentFlags = ExtentFlags(0x2);
    /// `mapped_offset` is valid: the range maps to that offset in the node's
    /// child named by `mapped_child` (its `file`, or its `data-file`).
    pub const OFFSET_VALID: ExtentFlags = ExtentFlags(0x4);
    /// The range is allocated in this node (not passed through to a backing node).
    pub const ALLOCATED: ExtentFlags = ExtentFlags(0x10);
    /// A DATA range with a valid `mapped_offset` that may still read as
    /// zeros: the host asks the child the offset is in (`mapped_child`) for
    /// holes at the mapped offset and reports those as ZERO (QEMU's BDRV_BLOCK_RECURSE; qcow2
    /// sets it on preallocated images). Hosts clear it from what they return.
    pub const RECURSE: ExtentFlags = ExtentFlags(0x40);
    /// The range is stored compressed.
    pub const COMPRESSED: ExtentFlags = ExtentFlags(0x80);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: ExtentFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both flag sets.
    pub fn with(self, other: ExtentFlags) -> ExtentFlags {
        ExtentFlags(self.0 | other.0)
    }
    /// This set without `other`.
    pub fn without(self, other: ExtentFlags) -> ExtentFlags {
        ExtentFlags(self.0 & !other.0)
    }
}

/// The status of a range starting at the queried offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// Length in bytes of the range with this status (at least 1, at most the queried length).
    pub length: u64,
    /// The status flags.
    pub flags: ExtentFlags,
    /// With [`ExtentFlags::OFFSET_VALID`]: the offset of the data in the
    /// child named by `mapped_child`.
    pub mapped_offset: u64,
    /// With [`ExtentFlags::OFFSET_VALID`]: the child `mapped_offset` is in,
    /// [`ChildRole::File`] (the default) or [`ChildRole::DataFile`] (QEMU's
    /// `*file` out-parameter of block status). Never `Backing`.
    pub mapped_child: ChildRole,
}

/// How space is reserved by create and truncate (as qemu-img's `preallocation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u32)]
pub enum Preallocation {
    /// No preallocation: sparse.
    #[default]
    Off = 0,
    /// Metadata only (formats with metadata).
    Metadata = 1,
    /// Space reserved with fallocate.
    Falloc = 2,
    /// Space written with zeros.
    Full = 3,
}

impl Preallocation {
    /// Parses `off|metadata|falloc|full`.
    pub fn parse(s: &str) -> Option<Preallocation> {
        Some(match s {
            "off" => Preallocation::Off,
            "metadata" => Preallocation::Metadata,
            "falloc" => Preallocation::Falloc,
            "full" => Preallocation::Full,
            _ => return None,
        })
    }
    /// The qemu-img spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Preallocation::Off => "off",
            Preallocation::Metadata => "metadata",
            Preallocation::Falloc => "falloc",
            Preallocation::Full => "full",
        }
    }
    /// From the ABI number.
    pub fn from_u32(v: u32) -> Option<Preallocation> {
        Some(match v {
            0 => Preallocation::Off,
            1 => Preallocation::Metadata,
            2 => Preallocation::Falloc,
            3 => Preallocation::Full,
            _ => return None,
        })
    }
}

/// What `check` may repair (values as QEMU's `BDRV_FIX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CheckMode(pub u32);

impl CheckMode {
    /// Report only.
    pub const REPORT: CheckMode = CheckMode(0);
    /// Repair leaked clusters.
    pub const FIX_LEAKS: CheckMode = CheckMode(1);
    /// Repair corruptions.
    pub const FIX_ERRORS: CheckMode = CheckMode(2);
    /// Repair everything.
    pub const FIX_ALL: CheckMode = CheckMode(3);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: CheckMode) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Flags of an open request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    /// Read-write, active, with backing file, probing allowed.
    pub const NONE: OpenFlags = OpenFlags(0);
    /// Open read-only.
    pub const READ_ONLY: OpenFlags = OpenFlags(0x1);
    /// Do not open the backing file.
    pub const NO_BACKING: OpenFlags = OpenFlags(0x2);
    /// Do not probe the format of children: use raw unless a format is named.
    pub const NO_PROBE: OpenFlags = OpenFlags(0x4);
    /// Open inactive (incoming migration): write nothing, take no locks.
    pub const INACTIVE: OpenFlags = OpenFlags(0x8);
    /// Share all permissions with other processes (qemu-img -U); implies read-only use.
    pub const FORCE_SHARE: OpenFlags = OpenFlags(0x10);
    /// Open for `check`: a format driver must not refuse a corrupt or dirty image
    /// and must not repair it on open.
    pub const CHECK: OpenFlags = OpenFlags(0x20);
    /// Do not take image locks.
    pub const NO_LOCK: OpenFlags = OpenFlags(0x40);
    /// Use the image exclusively (it is about to be truncated or overwritten):
    /// a protocol shares no permission and refuses when any other process
    /// holds the file open, even one that shares everything (docs/data-safety.md).
    pub const EXCLUSIVE: OpenFlags = OpenFlags(0x80);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both flag sets.
    pub fn with(self, other: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | other.0)
    }
    /// This set without `other`.
    pub fn without(self, other: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 & !other.0)
    }
}

/// Whether a driver is an image format or a protocol (storage access).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u32)]
pub enum DriverKind {
    /// An image format over a child node (qcow2, raw, ...).
    Format = 0,
    /// A protocol that reaches storage itself (file, null, ...).
    Protocol = 1,
}

/// Capability flags of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DriverCaps(pub u32);

impl std::ops::BitOr for DriverCaps {
    type Output = DriverCaps;
    /// The union of both flag sets (as [`DriverCaps::with`]).
    fn bitor(self, other: DriverCaps) -> DriverCaps {
        self.with(other)
    }
}

impl DriverCaps {
    /// `create` is implemented.
    pub const CREATE: DriverCaps = DriverCaps(0x1);
    /// Images may have backing files.
    pub const BACKING: DriverCaps = DriverCaps(0x2);
    /// Internal snapshots.
    pub const SNAPSHOTS: DriverCaps = DriverCaps(0x4);
    /// `check` is implemented.
    pub const CHECK: DriverCaps = DriverCaps(0x8);
    /// Resizing is implemented.
    pub const RESIZE: DriverCaps = DriverCaps(0x10);
    /// Compressed writes.
    pub const COMPRESSION: DriverCaps = DriverCaps(0x20);
    /// Safe for live-migration handoff (invalidate_cache implemented).
    pub const MIGRATION: DriverCaps = DriverCaps(0x40);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: DriverCaps) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both flag sets.
    pub fn with(self, other: DriverCaps) -> DriverCaps {
        DriverCaps(self.0 | other.0)
    }
    /// Names of the set flags, for listings.
    pub fn names(self) -> Vec<&'static str> {
        let all = [
            (DriverCaps::CREATE, "create"),
            (DriverCaps::BACKING, "backing"),
            (DriverCaps::SNAPSHOTS, "snapshots"),
            (DriverCaps::CHECK, "check"),
            (DriverCaps::RESIZE, "resize"),
            (DriverCaps::COMPRESSION, "compression"),
            (DriverCaps::MIGRATION, "migration"),
        ];
        all.iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_union_with_bitor() {
        let caps = DriverCaps::CREATE | DriverCaps::CHECK;
        assert_eq!(caps, DriverCaps::CREATE.with(DriverCaps::CHECK));
        assert!(caps.contains(DriverCaps::CHECK) && !caps.contains(DriverCaps::RESIZE));
        assert_eq!(caps.names(), vec!["create", "check"]);
    }
}
