//! The driver descriptor: name, probe, create options, create and open.

use crate::dyn_header::{DynHeader, CREATE_BAT_OFFSET, DEFAULT_BLOCK_SIZE, DYN_HEADER_SIZE};
use crate::footer::{create_size, Footer, SizeCalc, FOOTER_SIZE};
use crate::format::{VpcFormat, VpcNode};
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenRequest, OptDesc, OptKind, OptionValues, Preallocation,
    ProbeInput, Result,
};
use std::sync::Arc;

/// The vpc format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct VpcDriver;

impl VpcDriver {
    /// A new driver instance.
    pub const fn new() -> VpcDriver {
        VpcDriver
    }
}

impl BlockDriver for VpcDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images and re-reads its metadata on a migration handoff;
    /// like QEMU's driver it neither resizes nor checks.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE.with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "Virtual PC / VHD images (dynamic and fixed)"
    }

    /// Certain when the file starts with the footer copy of a dynamic
    /// image. Fixed images (footer at the end only) probe as raw, as in
    /// QEMU: name the format with `-f vpc`.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if Footer::has_magic(input.head) {
            100
        } else {
            0
        }
    }

    /// `force_size_calc`: read the size from the CHS geometry or from the
    /// footer's current size, whatever the creator (QEMU's option).
    fn open_options(&self) -> Vec<OptDesc> {
        vec![OptDesc::new(
            "force_size_calc",
            OptKind::Enum(vec!["chs".into(), "current_size".into()]),
            None,
            "Force disk size calculation to use either CHS geometry, or use the disk current_size specified in the VHD footer. {chs, current_size}",
        )]
    }

    /// `size`, `subformat` and `force_size`, as qemu-img's.
    fn create_options(&self) -> Vec<OptDesc> {
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "subformat",
                OptKind::Enum(vec!["dynamic".into(), "fixed".into()]),
                Some("dynamic"),
                "Type of virtual hard disk format. Supported formats are {dynamic (default) | fixed} ",
            ),
            OptDesc::new(
                "force_size",
                OptKind::Bool,
                Some("off"),
                "Force disk size calculation to use the actual size specified, rather than using the nearest CHS-based calculation",
            ),
        ]
    }

    /// Writes a new image as qemu-img does: dynamic = footer, header, an
    /// all-unallocated BAT, footer; fixed = zeros (a hole) and the footer.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let ctx = |e: BlockError| e.in_file(filename);
        let size = options.get_size("size").map_err(ctx)?.ok_or_else(|| {
            ctx(BlockError::invalid(
                "create",
                "the image size must be given",
            ))
        })?;
        let force = options.get_bool("force_size");
        let dynamic = match options.get("subformat").unwrap_or("dynamic") {
            "dynamic" => true,
            "fixed" => false,
            other => {
                return Err(ctx(BlockError::invalid(
                    "create",
                    format!("Invalid subformat '{other}'"),
                )))
            }
        };
        let (size, geo) = create_size(size, force).map_err(ctx)?;
        let footer = Footer::new(size, geo, force, dynamic);
        if !dynamic {
            host.create_file(filename, size + FOOTER_SIZE, Preallocation::Off)?;
            let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
            file.write_at(size, &footer.raw)?;
            return file.flush();
        }
        let entries = size.div_ceil(DEFAULT_BLOCK_SIZE);
        let bat_len = (entries * 4).div_ceil(FOOTER_SIZE) * FOOTER_SIZE;
        let end = CREATE_BAT_OFFSET + bat_len;
        host.create_file(filename, 0, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &footer.raw)?;
        // At most 4 MiB: the size is bounded to 2040 GiB above.
        file.write_at(CREATE_BAT_OFFSET, &vec![0xff; bat_len as usize])?;
        let header = DynHeader::new(entries as u32);
        file.write_at(FOOTER_SIZE, &header.encode()[..DYN_HEADER_SIZE as usize])?;
        file.write_at(end, &footer.raw)?;
        file.flush()?;
        log::debug!("{DRIVER_NAME}: created {filename}: {size} bytes, {entries} blocks");
        Ok(())
    }

    /// Opens the `file` child with the request's flags, reads the metadata
    /// and wraps the format in the engine's node.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        let opts =
            block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let calc = match opts.get("force_size_calc") {
            Some("chs") => SizeCalc::Chs,
            Some("current_size") => SizeCalc::CurrentSize,
            _ => SizeCalc::ByCreator,
        };
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let format = VpcFormat::open(file, req.filename.clone(), calc)?;
        Ok(Box::new(VpcNode::for_request(format, req)))
    }
}
