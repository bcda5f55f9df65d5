//! The driver descriptor: name, probe, create options, create and open.

use crate::format::QcowFormat;
use crate::header::{Header, ENDIAN, HEADER_LEN, MAGIC, VERSION};
use crate::mapping::QcowNode;
use crate::DRIVER_NAME;
use block_core::engine::backing_child::backing_request;
use block_core::engine::create::{backing_options, virtual_size};
use block_core::engine::encryption_options::{encryption_create_options, refuse_create_encryption};
use block_core::engine::luks::no_secret;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenFlags, OpenRequest, OptDesc, OptKind, OptionValues,
    Preallocation, ProbeInput, Result,
};
use std::sync::Arc;

/// The qcow format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct QcowDriver;

impl QcowDriver {
    /// A new driver instance.
    pub const fn new() -> QcowDriver {
        QcowDriver
    }
}

impl BlockDriver for QcowDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images (with backing files), writes compressed clusters and
    /// re-reads its metadata on a handoff between processes. No resize
    /// and no check: QEMU's qcow driver has neither.
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::BACKING)
            .with(DriverCaps::COMPRESSION)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "QEMU's qcow (version 1): two-level tables, compressed clusters, backing files"
    }

    /// Certain when a whole header starts with `QFI\xfb` and version 1.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        let h = input.head;
        if h.len() >= HEADER_LEN && h[..4] == MAGIC && ENDIAN.u32(h, 4) == VERSION {
            100
        } else {
            0
        }
    }

    /// The options of `qemu-img create -f qcow -o help`.
    fn create_options(&self) -> Vec<OptDesc> {
        let mut o = vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "backing_file",
                OptKind::String,
                None,
                "File name of a base image",
            ),
            OptDesc::new(
                "backing_fmt",
                OptKind::String,
                None,
                "Format of the backing image",
            ),
        ];
        let enc = encryption_create_options(
            &["aes"],
            "ID of the secret that provides the AES encryption key",
        );
        o.extend(enc.into_iter().take(3));
        o
    }

    /// Writes the header, the backing name and a zeroed L1 table (in whole
    /// sectors) as QEMU's create does: every cluster unallocated.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        refuse_create_encryption(options).map_err(|e| e.in_file(filename))?;
        let (bf, bfmt) = backing_options(filename, options)?;
        let size = virtual_size(filename, options, bf.as_deref(), bfmt.as_deref(), &*host)?;
        let size = size
            .checked_next_multiple_of(512)
            .ok_or_else(|| BlockError::invalid("create", "Image too large").in_file(filename))?;
        let h = Header::new(size, bf.as_deref()).map_err(|e| e.in_file(filename))?;
        let l1_bytes = (h.l1_entries() * 8).div_ceil(512) * 512;
        let mut head = h.encode().to_vec();
        if let Some(n) = &bf {
            head.extend_from_slice(n.as_bytes());
        }
        // The header goes in, then the file is made as long as the zeroed
        // L1 table's sectors (a hole reads as the zeros QEMU writes).
        host.create_file(filename, 0, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &head)
            .and_then(|_| file.truncate(h.l1_table_offset + l1_bytes, Preallocation::Off))
            .and_then(|_| file.flush())
            .map_err(|e| e.context("Could not write qcow header").in_file(filename))?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {size} bytes, clusters of {}",
            h.cluster()
        );
        Ok(())
    }

    /// Opens the `file` child and the backing file and reads the metadata.
    /// An encrypted image opens read-only (for `info`); a writable open of
    /// one is refused with QEMU's missing-secret error.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        let meta =
            crate::tables::Metadata::load(file.as_ref()).map_err(|e| e.in_file(&req.filename))?;
        if meta.header.encrypted() && !req.flags.contains(OpenFlags::READ_ONLY) {
            return Err(no_secret("open").in_file(&req.filename));
        }
        let backing = match &meta.backing_name {
            Some(b) if !req.flags.contains(OpenFlags::NO_BACKING) => {
                let r = backing_request(&req.filename, b, None, req.flags);
                Some(host.open_child(&r)?)
            }
            _ => None,
        };
        let format = QcowFormat::with_metadata(file, req.filename.clone(), backing, meta);
        Ok(Box::new(QcowNode::for_request(format, req)))
    }
}
