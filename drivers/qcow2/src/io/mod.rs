//! The I/O layer of an open node: the data path the engine asks about
//! (mapping, allocation, compressed clusters: data_path.rs), qcow2 as an
//! engine `Format` (format.rs), zero writes (zero.rs), truncating the file
//! after its last used cluster (trim.rs), the read-only snapshot view
//! (snapview.rs), expanding zero clusters (expand.rs), preallocation
//! detection for block status (prealloc.rs) and resizing (truncate.rs).
//! Imports go to `crate::layout`, `crate::node`, `crate::meta` and the
//! bitmap state only.

pub(crate) mod data_path;
pub(crate) mod expand;
pub(crate) mod format;
pub(crate) mod prealloc;
pub(crate) mod snapview;
pub(crate) mod trim;
pub(crate) mod truncate;
pub(crate) mod zero;
