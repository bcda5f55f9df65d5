//! Structured results of the cold-path operations: image info, check reports
//! and snapshots. They serialize with qemu-img's JSON field names and cross the
//! plugin ABI as JSON, so fields can be added without breaking old plugins.

use serde::{Deserialize, Serialize};

/// What a node reports about itself (`qemu-img info` material).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeInfo {
    /// The driver name ("qcow2", "raw", "file", ...).
    pub format: String,
    /// Guest-visible size in bytes.
    pub virtual_size: u64,
    /// Cluster size, for formats that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u64>,
    /// The image was not closed cleanly (lazy refcounts).
    #[serde(default)]
    pub dirty_flag: bool,
    /// The backing file name as stored in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_filename: Option<String>,
    /// The backing file format as stored in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing_filename_format: Option<String>,
    /// Format-specific data, `{"type": FMT, "data": {...}}` as qemu-img prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_specific: Option<serde_json::Value>,
}

/// The result of a consistency check (`qemu-img check` material).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckReport {
    /// Corruptions found (after repair: remaining).
    pub corruptions: u64,
    /// Leaked clusters found (after repair: remaining).
    pub leaks: u64,
    /// Errors that prevented checking.
    pub check_errors: u64,
    /// Corruptions repaired.
    pub corruptions_fixed: u64,
    /// Leaks repaired.
    pub leaks_fixed: u64,
    /// The offset just past the last used byte of the image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_end_offset: Option<u64>,
    /// Clusters in the virtual disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_clusters: Option<u64>,
    /// Allocated guest clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_clusters: Option<u64>,
    /// Fragmented guest clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragmented_clusters: Option<u64>,
    /// Compressed guest clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_clusters: Option<u64>,
    /// What the check found and repaired, in the order found: the lines
    /// `qemu-img check` prints on stderr. Absent from reports of drivers
    /// that predate findings (they logged them instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<CheckFinding>,
}

impl CheckReport {
    /// Records a finding.
    pub fn push_finding(&mut self, kind: FindingKind, offset: Option<u64>, message: String) {
        self.findings.push(CheckFinding {
            kind,
            offset,
            message,
        });
    }
}

/// What a [`CheckFinding`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An inconsistency that may corrupt data (counted in `corruptions`).
    Corruption,
    /// A leaked cluster (counted in `leaks`).
    Leak,
    /// A corruption or leak being repaired.
    Repair,
    /// An error that kept part of the image from being checked
    /// (counted in `check_errors`).
    CheckError,
    /// Anything else the check says (a structure being rebuilt).
    Note,
    /// A kind this build does not know (sent by a newer driver).
    #[serde(other)]
    Other,
}

/// One finding of a consistency check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckFinding {
    /// What it is.
    pub kind: FindingKind,
    /// The host offset concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The line `qemu-img check` prints for it (without newline).
    pub message: String,
}

/// The error source of a check that stopped (`check -r leaks` when only a
/// rebuild would help, a failed rebuild): the findings up to that point,
/// which the caller prints before the error. Found with
/// `BlockError::source` and `downcast_ref`. It crosses the plugin ABI as a
/// `{"check-stopped": {...}}` document in the check slot's result sink
/// next to the error (docs/abi.md), so a plugin's stopped check reports
/// the same findings as a linked-in one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckStopped {
    /// The findings before the check stopped.
    #[serde(default)]
    pub findings: Vec<CheckFinding>,
}

impl std::fmt::Display for CheckStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "check stopped after {} findings", self.findings.len())
    }
}

impl std::error::Error for CheckStopped {}

/// One internal snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotInfo {
    /// The snapshot ID (a number as a string, unique in the image).
    pub id: String,
    /// The snapshot name.
    pub name: String,
    /// Size of the saved VM state, 0 for disk-only snapshots.
    pub vm_state_size: u64,
    /// Creation time, seconds since the epoch.
    pub date_sec: u64,
    /// Creation time, nanoseconds part.
    pub date_nsec: u64,
    /// Guest clock at creation, seconds.
    pub vm_clock_sec: u64,
    /// Guest clock at creation, nanoseconds part.
    pub vm_clock_nsec: u64,
    /// Instruction count (record/replay), if stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icount: Option<u64>,
}

/// What `measure` is asked: the size an image of this format needs for a
/// given virtual size and, optionally, for a given set of data ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MeasureRequest {
    /// Create options (`[key, value]` pairs) of the target image.
    pub options: Vec<(String, String)>,
    /// The virtual size of the target image.
    pub virtual_size: u64,
    /// Guest ranges `(offset, length)` that hold data, ascending; `None`
    /// measures an empty image (`qemu-img measure --size`).
    #[serde(default)]
    pub data_extents: Option<Vec<(u64, u64)>>,
    /// The persistent dirty bitmaps of the source image (`None`: the
    /// source cannot have any, or there is no source); a format that
    /// stores bitmaps answers how many bytes they take.
    #[serde(default)]
    pub source_bitmaps: Option<Vec<MeasureBitmap>>,
}

/// A persistent dirty bitmap of a measured source image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureBitmap {
    /// The bitmap name.
    pub name: String,
    /// Bytes per bit.
    pub granularity: u64,
}

/// The answer of `measure` (`qemu-img measure` material).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MeasureResult {
    /// Bytes the image needs for the data given.
    pub required: u64,
    /// Bytes the image needs when every cluster is allocated.
    pub fully_allocated: u64,
    /// Bytes the source's persistent bitmaps would take (`None`: the
    /// target cannot store them or the source has none to offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitmaps: Option<u64>,
}
