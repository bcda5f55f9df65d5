//! Truncating the image file after its last used cluster (shrink,
//! make_empty), as QEMU does after freeing clusters at the end.

use crate::node::{Qcow2Node, WState};
use block_core::{Preallocation, Result};

impl Qcow2Node {
    /// Truncates the image file after the last cluster with a nonzero
    /// refcount. Call with the metadata written back (no deferred frees
    /// pending, no dirty refcount block describing the tail).
    pub(crate) fn trim_file_tail(&self, ws: &mut WState) -> Result<()> {
        let cs = self.geo().cs();
        let flen = self.file.length()?;
        let last = ws.used_end(self, flen.div_ceil(cs), 1)?;
        let end = last * cs;
        if end < flen {
            self.file.flush()?;
            self.file.truncate(end, Preallocation::Off)?;
            ws.free_hint = ws.free_hint.min(last);
        }
        Ok(())
    }
}
