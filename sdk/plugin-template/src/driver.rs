//! The driver descriptor: name, probe, create options, create and open.

use crate::header::{Header, HEADER_SIZE, MAGIC, MAX_SIZE};
use crate::node::XorNode;
use crate::DRIVER_NAME;
use block_core::{
    BlockDriver, BlockError, BlockNode, BlockNodeExt, ChildRequest, ChildRole, DriverCaps,
    DriverKind, HostServices, OpenRequest, OptDesc, OptKind, OptionValues, Preallocation,
    ProbeInput, Result,
};
use std::sync::Arc;

/// The key of images created without `-o key=N`.
pub const DEFAULT_KEY: u8 = 0x5a;

/// The format driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct XorDriver;

impl XorDriver {
    /// A new driver instance.
    pub const fn new() -> XorDriver {
        XorDriver
    }
}

impl BlockDriver for XorDriver {
    fn name(&self) -> &str {
        DRIVER_NAME
    }

    fn kind(&self) -> DriverKind {
        DriverKind::Format
    }

    /// Creates images, resizes them, and re-reads its header when the host
    /// hands the image over between processes (migration).
    fn caps(&self) -> DriverCaps {
        DriverCaps::CREATE
            .with(DriverCaps::RESIZE)
            .with(DriverCaps::MIGRATION)
    }

    fn description(&self) -> &str {
        "example format: a header, then data XOR-ed with a key"
    }

    /// Certain when the file starts with the magic; otherwise not this format.
    fn probe(&self, input: &ProbeInput<'_>) -> u32 {
        if input.head.len() >= MAGIC.len() && input.head[..MAGIC.len()] == MAGIC {
            100
        } else {
            0
        }
    }

    /// `size` (required) and `key`.
    fn create_options(&self) -> Vec<OptDesc> {
        let default_key = DEFAULT_KEY.to_string();
        vec![
            OptDesc::new("size", OptKind::Size, None, "Virtual disk size"),
            OptDesc::new(
                "key",
                OptKind::Number,
                Some(&default_key),
                "The byte (1 to 255) the data is XOR-ed with",
            ),
        ]
    }

    /// Asks the host for a file of header plus data length (its holes read
    /// as zeros, which is what a new image holds) and writes the header.
    fn create(
        &self,
        filename: &str,
        options: &OptionValues,
        host: Arc<dyn HostServices>,
    ) -> Result<()> {
        let header = header_from_options(options).map_err(|e| e.in_file(filename))?;
        host.create_file(filename, HEADER_SIZE + header.size, Preallocation::Off)?;
        let file = host.open_child(&ChildRequest::new(ChildRole::File, filename))?;
        file.write_at(0, &header.encode())?;
        file.flush()?;
        log::debug!(
            "{DRIVER_NAME}: created {filename}: {} bytes, key {}",
            header.size,
            header.key
        );
        Ok(())
    }

    /// Opens the `file` child with the request's flags and reads the header.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>> {
        // No open options are declared: any `-o key=value` is refused here,
        // in the words every driver uses.
        block_core::read_open_options(self, req).map_err(|e| e.in_file(&req.filename))?;
        let mut creq = ChildRequest::new(ChildRole::File, req.filename.clone());
        creq.flags = req.flags;
        let file = host.open_child(&creq)?;
        Ok(Box::new(XorNode::open(file, req.filename.clone())?))
    }
}

/// The header a create request describes: its size and key, validated.
fn header_from_options(options: &OptionValues) -> Result<Header> {
    let size = options
        .get_size("size")?
        .ok_or_else(|| BlockError::invalid("create", "the image size must be given"))?;
    if size > MAX_SIZE {
        return Err(BlockError::invalid(
            "create",
            format!("size {size} is larger than the format allows ({MAX_SIZE})"),
        ));
    }
    let key = options.get_u64("key")?.unwrap_or(u64::from(DEFAULT_KEY));
    let key = match u8::try_from(key) {
        Ok(k) if k != 0 => k,
        _ => {
            return Err(BlockError::invalid(
                "create",
                format!("key {key} is not between 1 and 255"),
            ))
        }
    };
    Ok(Header { size, key })
}
