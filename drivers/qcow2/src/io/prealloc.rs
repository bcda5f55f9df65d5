//! Detection of metadata preallocation, as QEMU's
//! `qcow2_detect_metadata_preallocation`: an image whose clusters in use
//! (refcount > 0) clearly outnumber the clusters its file really stores was
//! preallocated, so its data clusters may be file holes. Block status then
//! marks data ranges `RECURSE` (the engine asks `Format::sparse_data`) and the host asks the file for
//! the holes (they read as zeros), which `qemu-img map` reports as zero
//! extents. Decided once per open (and again after the metadata is re-read).

use crate::node::Qcow2Node;
use block_core::Result;
use std::sync::atomic::Ordering;

/// Not decided yet.
pub(crate) const UNKNOWN: u8 = 0;
/// Not preallocated.
pub(crate) const NO: u8 = 1;
/// Preallocated.
pub(crate) const YES: u8 = 2;

impl Qcow2Node {
    /// True when the image looks metadata-preallocated (decided on first use).
    pub(crate) fn metadata_preallocated(&self) -> bool {
        match self.metadata_prealloc.load(Ordering::Acquire) {
            YES => true,
            NO => false,
            _ => {
                // As QEMU: an error only means "no".
                let yes = self.detect_metadata_prealloc().unwrap_or_else(|e| {
                    log::debug!("qcow2: {}: preallocation check failed: {e}", self.filename);
                    false
                });
                self.metadata_prealloc
                    .store(if yes { YES } else { NO }, Ordering::Release);
                yes
            }
        }
    }

    /// Counts clusters in use up to a threshold of 10/9 of (and at least two
    /// more than) the clusters the file stores.
    fn detect_metadata_prealloc(&self) -> Result<bool> {
        let cs = self.geo().cs();
        let file_length = self.file.length()?;
        let real_clusters = self.file.allocated_size()? / cs;
        let threshold = (real_clusters * 10 / 9).max(real_clusters + 2);
        let end_cluster = file_length.div_ceil(cs);
        let in_use = self.wlock().count_used(self, end_cluster, threshold)?;
        Ok(in_use >= threshold)
    }
}
