//! The operation a [`BlockError`](crate::BlockError) happened in.
//!
//! A closed set of the node, driver and host operations, plus
//! [`Operation::Other`] for the rest. Each has one canonical name
//! ([`Operation::as_str`]): the name in error messages and the string the
//! plugin ABI carries, so neither changed when the field became an enum.
//! Every string converts ([`From<&str>`]), known names to their variant, so
//! `BlockError::io("read", ...)` keeps compiling and an operation that
//! crossed the ABI as text compares equal to the one a linked driver built.

use std::borrow::Cow;
use std::fmt;

/// The operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Operation {
    /// No operation named: the message says it all (renders as "").
    #[default]
    Unspecified,
    /// A guest read ("read").
    Read,
    /// A guest write ("write").
    Write,
    /// A flush ("flush").
    Flush,
    /// Opening a node ("open").
    Open,
    /// Opening a child of a node ("open child").
    OpenChild,
    /// Creating an image ("create").
    Create,
    /// Creating the protocol file of an image ("create file").
    CreateFile,
    /// Probing a format ("probe").
    Probe,
    /// A discard ("discard").
    Discard,
    /// A write of zeroes ("write_zeroes").
    WriteZeroes,
    /// A resize request to a node ("truncate").
    Truncate,
    /// Fitting a format's metadata to a new image size ("resize"), e.g.
    /// growing or bounding a mapping table such as qcow2's L1 table; an
    /// out-of-range error here means the format cannot have that size.
    Resize,
    /// A length query ("length").
    Length,
    /// An allocated-size query ("allocated_size").
    AllocatedSize,
    /// A block-status query ("block_status").
    BlockStatus,
    /// An image information query ("info").
    Info,
    /// A consistency check or repair ("check").
    Check,
    /// An amend of image options ("amend").
    Amend,
    /// A size measurement ("measure").
    Measure,
    /// Listing snapshots ("snapshot_list").
    SnapshotList,
    /// Creating a snapshot ("snapshot_create").
    SnapshotCreate,
    /// Reverting to a snapshot ("snapshot_apply").
    SnapshotApply,
    /// Deleting a snapshot ("snapshot_delete").
    SnapshotDelete,
    /// Changing the backing file name ("change_backing_file").
    ChangeBackingFile,
    /// Emptying an image ("make_empty").
    MakeEmpty,
    /// A persistent-bitmap operation ("bitmap").
    Bitmap,
    /// Dropping cached metadata ("invalidate_cache").
    InvalidateCache,
    /// Giving up the image for a migration ("inactivate").
    Inactivate,
    /// Taking the image back after a migration ("activate").
    Activate,
    /// Taking or checking image locks ("lock").
    Lock,
    /// Parsing driver or open options ("parse options").
    ParseOptions,
    /// Loading a plugin library ("load plugin").
    LoadPlugin,
    /// Any other operation, by name.
    Other(Cow<'static, str>),
}

/// Every named variant with its canonical string (one table, both ways).
const NAMES: &[(Operation, &str)] = &[
    (Operation::Unspecified, ""),
    (Operation::Read, "read"),
    (Operation::Write, "write"),
    (Operation::Flush, "flush"),
    (Operation::Open, "open"),
    (Operation::OpenChild, "open child"),
    (Operation::Create, "create"),
    (Operation::CreateFile, "create file"),
    (Operation::Probe, "probe"),
    (Operation::Discard, "discard"),
    (Operation::WriteZeroes, "write_zeroes"),
    (Operation::Truncate, "truncate"),
    (Operation::Resize, "resize"),
    (Operation::Length, "length"),
    (Operation::AllocatedSize, "allocated_size"),
    (Operation::BlockStatus, "block_status"),
    (Operation::Info, "info"),
    (Operation::Check, "check"),
    (Operation::Amend, "amend"),
    (Operation::Measure, "measure"),
    (Operation::SnapshotList, "snapshot_list"),
    (Operation::SnapshotCreate, "snapshot_create"),
    (Operation::SnapshotApply, "snapshot_apply"),
    (Operation::SnapshotDelete, "snapshot_delete"),
    (Operation::ChangeBackingFile, "change_backing_file"),
    (Operation::MakeEmpty, "make_empty"),
    (Operation::Bitmap, "bitmap"),
    (Operation::InvalidateCache, "invalidate_cache"),
    (Operation::Inactivate, "inactivate"),
    (Operation::Activate, "activate"),
    (Operation::Lock, "lock"),
    (Operation::ParseOptions, "parse options"),
    (Operation::LoadPlugin, "load plugin"),
];

impl Operation {
    /// The canonical name: what error messages print and the ABI carries.
    pub fn as_str(&self) -> &str {
        if let Operation::Other(s) = self {
            return s;
        }
        NAMES
            .iter()
            .find(|(op, _)| op == self)
            .map(|(_, s)| *s)
            .unwrap_or("")
    }

    /// True for [`Operation::Unspecified`] (and an empty `Other`).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// The variant named `name`, if it is one of the known ones.
    fn known(name: &str) -> Option<Operation> {
        NAMES
            .iter()
            .find(|(_, s)| *s == name)
            .map(|(op, _)| op.clone())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Operation {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Operation {
    fn from(name: &str) -> Self {
        Operation::known(name).unwrap_or_else(|| Operation::Other(Cow::Owned(name.to_string())))
    }
}

impl From<&String> for Operation {
    fn from(name: &String) -> Self {
        Operation::from(name.as_str())
    }
}

impl From<String> for Operation {
    fn from(name: String) -> Self {
        Operation::known(&name).unwrap_or(Operation::Other(Cow::Owned(name)))
    }
}

impl From<Cow<'static, str>> for Operation {
    fn from(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(s) => Operation::known(s).unwrap_or(Operation::Other(Cow::Borrowed(s))),
            Cow::Owned(s) => Operation::from(s),
        }
    }
}

impl From<&Operation> for Operation {
    fn from(op: &Operation) -> Self {
        op.clone()
    }
}

impl PartialEq<str> for Operation {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Operation {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (op, name) in NAMES {
            assert_eq!(op.as_str(), *name);
            assert_eq!(&Operation::from(*name), op);
            assert_eq!(&Operation::from(name.to_string()), op);
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, (_, a)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(_, b)| a != b), "{a}");
        }
    }

    #[test]
    fn unknown_names_are_kept() {
        let op = Operation::from("read snapshot table");
        assert_eq!(op, Operation::Other("read snapshot table".into()));
        assert_eq!(op.to_string(), "read snapshot table");
        assert_eq!(Operation::from(Cow::Borrowed("read")), Operation::Read);
        // An Other spelled like a known name still reads as that name.
        assert_eq!(Operation::Other("read".into()), "read");
    }

    #[test]
    fn unspecified_is_empty() {
        assert!(Operation::default().is_empty());
        assert_eq!(Operation::from(""), Operation::Unspecified);
        assert!(!Operation::Read.is_empty());
        assert_eq!(Operation::WriteZeroes, "write_zeroes");
    }
}
