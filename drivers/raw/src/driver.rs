//! The `raw` format descriptor.

use crate::node::RawNode;
use block_core::{
    BlockDriver, BlockNode, ChildRequest, ChildRole, DriverCaps, DriverKind, HostServices,
    MeasureRequest, MeasureResult, OpenRequest, OptDesc, OptKind, OptionValues, Preallocation,
    ProbeInput, Result,
};
use std::sync::Arc;

/// The `raw` format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawDriver;

impl RawDriver {
    /// A new driver instance.
    pub const fn new() -> RawDriver {
        RawDriver
    }
}

impl BlockDriver for RawDriver {
    fn name(&self) -> &str {
        "raw"
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::RESIZE)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "raw disk image"
    }

    fn probe(&self, _input: &ProbeInput<'_>) -> u32 {
        1
    }

    /// Only the size, as QEMU's raw format: preallocation and the other
    /// file options belong to the protocol, which the host hands them to.
    fn create_options(&self) -> Vec<OptDesc> {
        block_core::options::plain_create_options()
            .into_iter()
            .filter(|o| o.name == "size")
            .collect()
    }

    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let size = options.get_size("size")?.unwrap_or(0);
        let prealloc = options
            .get("preallocation")
            .and_then(Preallocation::parse)
            .unwrap_or_default();
        host.create_file(filename, size, prealloc)
    }

    /// A raw image needs its virtual size, rounded up to whole sectors,
    /// whatever the data (as QEMU's raw_measure).
    fn measure(&self, req: &MeasureRequest) -> Result<MeasureResult> {
        // Validates the options; none of them changes the answer.
        OptionValues::parse(&self.create_options(), &req.options)?;
        let size = req.virtual_size.div_ceil(512) * 512;
        Ok(MeasureResult {
            bitmaps: None,
            required: size,
            fully_allocated: size,
        })
    }

    /// The options `open` reads: the window of the child the image is.
    fn open_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::new(
                "offset",
                OptKind::Size,
                Some("0"),
                "Offset of the image in the file",
            ),
            OptDesc::new(
                "size",
                OptKind::Size,
                None,
                "Size of the image (default: the rest of the file)",
            ),
        ]
    }

    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let o = block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let offset = o.get_size("offset")?.unwrap_or(0);
        let size = o.get_size("size")?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let child = host.open_child(&creq)?;
        Ok(Box::new(RawNode::new(
            child,
            req.filename.clone(),
            offset,
            size,
        )?))
    }
}
