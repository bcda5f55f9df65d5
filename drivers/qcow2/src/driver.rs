//! The qcow2 driver descriptor.

use crate::layout::header::{get_u32, MAGIC};
use block_core::engine::FormatNode;
use block_core::{
    BlockDriver, BlockNode, DriverCaps, DriverKind, HostServices, OpenRequest, OptDesc,
    OptionValues, ProbeInput, Result,
};
use std::sync::Arc;

/// The qcow2 format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Qcow2Driver;

impl Qcow2Driver {
    /// A new driver instance.
    pub const fn new() -> Qcow2Driver {
        Qcow2Driver
    }
}

impl BlockDriver for Qcow2Driver {
    fn name(&self) -> &str {
        "qcow2"
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    fn caps(&self) -> DriverCaps {
        use DriverCaps as C;
        C::CREATE | C::BACKING | C::SNAPSHOTS | C::CHECK | C::RESIZE | C::COMPRESSION | C::MIGRATION
    }

    fn description(&self) -> &str {
        "QEMU copy-on-write image format, versions 2 and 3"
    }

    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        let h = input.head;
        // As QEMU: the magic with any version from 2 on is qcow2, so that
        // open refuses an unsupported version instead of the file being
        // taken for raw (version 1 is QEMU's older qcow format).
        let qcow2 = h.len() >= 8 && get_u32(h, 0) == MAGIC && get_u32(h, 4) >= 2;
        u32::from(qcow2) * 100
    }

    fn create_options(&self) -> Vec<OptDesc> {
        crate::ops::create::create_options()
    }

    fn create(&self, name: &str, o: &OptionValues, host: Arc<dyn HostServices>) -> Result<()> {
        crate::ops::create::create(name, o, host)
    }

    fn amend_options(&self) -> Vec<OptDesc> {
        crate::ops::amend::amend_options()
    }

    fn open_options(&self) -> Vec<OptDesc> {
        crate::open::open_options()
    }

    fn measure(&self, req: &block_core::MeasureRequest) -> Result<block_core::MeasureResult> {
        crate::ops::measure::measure(req)
    }

    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let image = crate::open::open(req, host)?;
        Ok(Box::new(FormatNode::for_request(image, req)))
    }
}
