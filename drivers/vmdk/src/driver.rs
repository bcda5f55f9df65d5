//! The driver descriptor: name, probe, create options (qemu-img's), create
//! (monolithicSparse) and open.

use crate::descriptor::{Descriptor, ExtentLine, NewDescriptor, SIGNATURE};
use crate::format::{VmdkFormat, VmdkNode};
use crate::header::{Header, MAGIC, SECTOR};
use crate::DRIVER_NAME;
use block_core::engine::backing_child::backing_request;
use block_core::engine::create::{backing_options, virtual_size};
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues,
    Preallocation, ProbeInput, Result, ResultExt,
};
use std::sync::Arc;

/// The vmdk format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct VmdkDriver;

impl VmdkDriver {
    /// A new driver instance.
    pub const fn new() -> VmdkDriver {
        VmdkDriver
    }
}

const ADAPTERS: [&str; 4] = ["ide", "buslogic", "lsilogic", "legacyESX"];

impl BlockDriver for VmdkDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images (with backing files) and re-reads its metadata on a
    /// handoff between processes.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::BACKING)
            .with(DriverCaps::CHECK)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "VMware Virtual Machine Disk (monolithicSparse)"
    }

    /// Certain for "KDMV" or a text descriptor, as QEMU probes.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        let h = input.head;
        if h.starts_with(&MAGIC) || h.starts_with(SIGNATURE.as_bytes()) {
            100
        } else {
            0
        }
    }

    /// The options of `qemu-img create -f vmdk -o help`, defaulted as QEMU's.
    fn create_options(&self) -> Vec<OptDesc> {
        let s = || OptKind::String;
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new("adapter_type", s(), Some("ide"), "Virtual adapter type, can be one of ide (default), lsilogic, buslogic or legacyESX"),
            OptDesc::new("backing_file", s(), None, "File name of a base image"),
            OptDesc::new("backing_fmt", s(), None, "Image format of the base image"),
            OptDesc::new("compat6", OptKind::Bool, Some("off"), "VMDK version 6 image"),
            OptDesc::new("hwversion", s(), Some("undefined"), "VMDK hardware version"),
            OptDesc::new("toolsversion", s(), Some("undefined"), "VMware guest tools version"),
            OptDesc::new("subformat", s(), Some("monolithicSparse"), "VMDK flat extent format, can be one of {monolithicSparse (default) | monolithicFlat | twoGbMaxExtentSparse | twoGbMaxExtentFlat | streamOptimized}"),
            OptDesc::new("zeroed_grain", OptKind::Bool, Some("off"), "Enable efficient zero writes using the zeroed-grain GTE feature"),
        ]
    }

    /// Writes the header, the descriptor and both grain directories with
    /// their grain tables, as qemu-img lays out a monolithicSparse image.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let ctx = |e: BlockError| e.in_file(filename);
        let sub = options
            .get_str("subformat")
            .unwrap_or_else(|| "monolithicSparse".into());
        if sub != "monolithicSparse" {
            return Err(ctx(BlockError::unsupported_feature(
                "create",
                format!("VMDK subformat {sub} (only monolithicSparse is implemented)"),
            )));
        }
        let adapter = options
            .get_str("adapter_type")
            .unwrap_or_else(|| "ide".into());
        if !ADAPTERS.contains(&adapter.as_str()) {
            return Err(ctx(BlockError::invalid(
                "create",
                format!("Unknown adapter type: '{adapter}'"),
            )));
        }
        let compat6 = options.get_bool("compat6");
        let hw = match options.get_str("hwversion").filter(|v| v != "undefined") {
            Some(v) if compat6 => {
                return Err(ctx(BlockError::invalid(
                    "create",
                    format!("compat6 cannot be enabled with hwversion {v}"),
                )))
            }
            Some(v) => v,
            None if compat6 => "6".into(),
            None => "4".into(),
        };
        let tools = options
            .get_str("toolsversion")
            .filter(|v| v != "undefined")
            .unwrap_or_else(|| "2147483647".into());
        let (bf, bfmt) = backing_options(filename, options)?;
        let size = virtual_size(filename, options, bf.as_deref(), bfmt.as_deref(), &*host)?;
        let sectors = size.div_ceil(SECTOR);
        if sectors > crate::header::MAX_CAPACITY_SECTORS {
            return Err(ctx(BlockError::invalid(
                "create",
                "the size is too large for VMDK",
            )));
        }
        let parent_cid = match &bf {
            Some(b) => {
                let r = backing_request(filename, b, bfmt.clone(), OpenFlags::READ_ONLY);
                let node = host.open_child(&r)?;
                let info = node.info()?;
                info.format_specific
                    .and_then(|f| f["data"]["cid"].as_u64())
                    .map_or(0, |c| c as u32)
            }
            None => 0,
        };
        let h = Header::new(sectors, options.get_bool("zeroed_grain"));
        let base = std::path::Path::new(filename)
            .file_name()
            .map_or(filename.to_string(), |n| n.to_string_lossy().into_owned());
        let desc = NewDescriptor {
            cid: crate::descriptor::new_cid(0),
            parent: bf.as_deref().map(|b| (b, parent_cid)),
            create_type: "monolithicSparse",
            extents: vec![ExtentLine {
                access: "RW".into(),
                sectors,
                kind: "SPARSE".into(),
                file: base,
            }],
            sectors,
            adapter_type: &adapter,
            hw_version: &hw,
            tools_version: &tools,
        }
        .render();
        if desc.len() as u64 > h.desc_size * SECTOR {
            return Err(ctx(BlockError::invalid(
                "create",
                "the descriptor is too long",
            )));
        }
        host.create_file(filename, h.grain_offset * SECTOR, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &h.encode())?;
        file.write_at(h.desc_offset * SECTOR, desc.as_bytes())?;
        let gts = h.gt_bytes() / SECTOR;
        for gd in [h.rgd_offset, h.gd_offset] {
            let n = h.gd_entries();
            let mut b = vec![0u8; (h.gd_sectors() * SECTOR) as usize];
            for i in 0..n {
                let s = (gd + h.gd_sectors() + i * gts) as u32;
                b[i as usize * 4..i as usize * 4 + 4].copy_from_slice(&s.to_le_bytes());
            }
            file.write_at(gd * SECTOR, &b)?;
        }
        file.flush()?;
        log::debug!("{DRIVER_NAME}: created {filename}: {size} bytes");
        Ok(())
    }

    /// Opens the `file` child, the backing file its descriptor names, and
    /// reads the metadata.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let mut head = [0u8; 4];
        if file.length()? >= 4 {
            file.read_at(0, &mut head)?;
        }
        if head != MAGIC {
            return Err(BlockError::unsupported_feature(
                "open",
                "VMDK descriptor files with separate extents are not implemented",
            )
            .in_file(&req.filename));
        }
        let meta = crate::grain_table::Metadata::load(file.as_ref()).in_file(&req.filename)?;
        let d: &Descriptor = &meta.descriptor;
        let backing = match &d.parent_hint {
            Some(b) if !req.flags.contains(OpenFlags::NO_BACKING) => {
                Some(host.open_child(&backing_request(&req.filename, b, None, req.flags))?)
            }
            _ => None,
        };
        let format = VmdkFormat::open(file, req.filename.clone(), backing)?;
        Ok(Box::new(VmdkNode::for_request(format, req)))
    }
}
