//! The management capabilities of an open qcow2 image: internal snapshots,
//! check/repair, persistent bitmaps (the migration handoff is the
//! engine's, with this format's `activate`/`inactivate`; amend is
//! amend.rs's, the backing-file reference and make_empty make_empty.rs's).
//! Each dispatches to the file that implements it.

use crate::node::Qcow2Node;
use block_core::{
    BitmapControl, CheckControl, CheckMode, CheckReport, Result, SnapshotControl, SnapshotInfo,
};

impl SnapshotControl for Qcow2Node {
    fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        let m = self.meta_read();
        Ok(m.snapshots.iter().map(|s| s.info()).collect())
    }

    fn snapshot_create(&self, name: &str) -> Result<()> {
        self.snapshot_create_impl(name)
    }

    fn snapshot_apply(&self, id_or_name: &str) -> Result<()> {
        self.snapshot_apply_impl(id_or_name)
    }

    fn snapshot_delete(&self, id_or_name: &str) -> Result<()> {
        self.snapshot_delete_impl(id_or_name)
    }
}

impl CheckControl for Qcow2Node {
    fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        self.check_impl(mode)
    }
}

impl BitmapControl for Qcow2Node {
    fn bitmap(&self, request: &str) -> Result<String> {
        self.bitmap_control(request)
    }
}
