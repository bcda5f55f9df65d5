//! The management capabilities of an open qcow2 image: internal snapshots,
//! check/repair, amend, the backing-file reference and make_empty,
//! persistent bitmaps (the migration handoff is the engine's, with this
//! format's `activate`/`inactivate`). Each dispatches to the file that
//! implements it.

use crate::node::Qcow2Node;
use block_core::{
    AmendControl, BackingControl, BitmapControl, CheckControl, CheckMode, CheckReport, Result,
    SnapshotControl, SnapshotInfo,
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

impl AmendControl for Qcow2Node {
    fn amend(&self, options: &[(String, String)]) -> Result<()> {
        self.amend_impl(options)
    }
}

impl BackingControl for Qcow2Node {
    fn change_backing_file(&self, filename: Option<&str>, format: Option<&str>) -> Result<()> {
        self.check_writable("change_backing_file")?;
        let mut ws = self.wlock();
        {
            let mut m = self.meta_write();
            let mut h = m.h.clone();
            h.backing_file = filename.filter(|s| !s.is_empty()).map(str::to_string);
            h.backing_format = h.backing_file.as_ref().and(format.map(str::to_string));
            // Make sure it fits before anything is written.
            h.clone().serialize().map_err(|e| self.ctx(e))?;
            m.h = h;
            m.header_dirty = true;
        }
        self.writeback(&mut ws, false)
    }

    fn make_empty(&self) -> Result<()> {
        self.make_empty_impl()
    }
}

impl BitmapControl for Qcow2Node {
    fn bitmap(&self, request: &str) -> Result<String> {
        self.bitmap_control(request)
    }
}
