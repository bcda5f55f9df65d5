//! The driver descriptor: name, probe and open (read-only; no create).

use crate::format::{BochsFormat, BochsNode, Metadata};
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, ChildRequest, ChildRole, DriverCaps, DriverKind, ErrorKind,
    HostServices, OpenFlags, OpenRequest, ProbeInput, Result,
};
use std::sync::Arc;

/// The bochs format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct BochsDriver;

impl BochsDriver {
    /// A new driver instance.
    pub const fn new() -> BochsDriver {
        BochsDriver
    }
}

impl BlockDriver for BochsDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Reads only; re-reads its metadata when the host asks.
    fn caps(&self) -> DriverCaps {
        DriverCaps::MIGRATION
    }

    fn description(&self) -> &str {
        "Bochs growing disk images (read-only)"
    }

    /// Certain for a whole header of a growing Bochs image, as QEMU's.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if crate::header::probe(input.head) {
            100
        } else {
            0
        }
    }

    /// Opens the `file` child read-only and reads the header and catalog;
    /// a writable open is refused as QEMU refuses it.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        if !req.flags.contains(OpenFlags::READ_ONLY) {
            let e = BlockError::new(ErrorKind::ReadOnly, "open", "Image is read-only");
            return Err(e.in_file(&req.filename));
        }
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let meta = Metadata::load(file.as_ref()).map_err(|e| e.in_file(&req.filename))?;
        let format = BochsFormat::new(file, req.filename.clone(), meta);
        Ok(Box::new(BochsNode::for_request(format, req)))
    }
}
