//! The driver descriptor: identity, probing, creation and opening.

use crate::error::{BlockError, Result};
use crate::host::HostServices;
use crate::info::{MeasureRequest, MeasureResult};
use crate::node::BlockNode;
use crate::options::{OptDesc, OptionValues};
use crate::types::{DriverCaps, DriverKind, OpenFlags};
use std::sync::Arc;

/// How many bytes of the file head a host reads for probing.
pub const PROBE_HEAD_SIZE: usize = 4096;
/// How many bytes of the file tail a host reads for probing.
pub const PROBE_TAIL_SIZE: usize = 512;

/// What a format driver sees when asked whether a file is its format.
///
/// Probing rules: a score is 0 (not mine) to 100 (certain); raw answers 1 so
/// that any real match wins; a driver must decide from these bytes only,
/// never open other files, and never trust the content beyond scoring.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInput<'a> {
    /// The first bytes of the file (up to [`PROBE_HEAD_SIZE`]).
    pub head: &'a [u8],
    /// The last bytes of the file (up to [`PROBE_TAIL_SIZE`]).
    pub tail: &'a [u8],
    /// The file size in bytes.
    pub file_size: u64,
    /// The file name as given by the user.
    pub filename: &'a str,
}

/// A request to open a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The file name (for a format: the name its file child is opened with).
    pub filename: String,
    /// Driver-specific options (`key=value`).
    pub options: Vec<(String, String)>,
    /// Open flags.
    pub flags: OpenFlags,
}

impl OpenRequest {
    /// A request for `filename` with `flags` and no options.
    pub fn new(filename: impl Into<String>, flags: OpenFlags) -> OpenRequest {
        OpenRequest {
            filename: filename.into(),
            options: Vec::new(),
            flags,
        }
    }

    /// The value of an option, if given.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A block driver: a format or protocol implementation, registered statically
/// (through [`crate::register_driver!`]) or exported from a plugin library.
pub trait BlockDriver: Send + Sync {
    /// The format or protocol name ("qcow2", "file", ...).
    fn name(&self) -> &str;

    /// Format or protocol.
    fn kind(&self) -> DriverKind;

    /// Capability flags.
    fn caps(&self) -> DriverCaps {
        DriverCaps::default()
    }

    /// One line describing the driver.
    fn description(&self) -> &str {
        ""
    }

    /// For protocols: the filename prefixes they own (e.g. `"null-co"` for
    /// `null-co://`). The `file` protocol owns names without a prefix.
    fn protocol_prefixes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Scores how likely the file is this format (0..=100). Formats only.
    fn probe(&self, _input: &ProbeInput<'_>) -> u32 {
        0
    }

    /// As [`BlockDriver::probe`], for a probe that can fail (it could not
    /// decide whether the file is its format). The host refuses to open a
    /// file some driver failed to probe rather than guess (e.g. fall back
    /// to raw and let a write overwrite the format's header). The default
    /// returns [`BlockDriver::probe`]'s score.
    fn try_probe(&self, input: &ProbeInput<'_>) -> Result<u32> {
        Ok(self.probe(input))
    }

    /// The schema of `create` options.
    fn create_options(&self) -> Vec<OptDesc> {
        Vec::new()
    }

    /// Creates a new image named `filename` with checked options.
    fn create(
        &self,
        _filename: &str,
        _options: &OptionValues,
        _host: Arc<dyn HostServices>,
    ) -> Result<()> {
        Err(BlockError::unsupported("create"))
    }

    /// The schema of `amend` options (a subset of the create options).
    fn amend_options(&self) -> Vec<OptDesc> {
        Vec::new()
    }

    /// The schema of the options `open` understands (`OpenRequest::options`,
    /// e.g. qcow2's `l2-cache-size`), for discovery and help: what an
    /// embedder may pass and what each means. It is the single source of
    /// what `open` accepts: drivers read their options through
    /// [`crate::read_open_options`], which refuses anything undeclared. The
    /// default is no options.
    fn open_options(&self) -> Vec<OptDesc> {
        Vec::new()
    }

    /// How many bytes an image of this format needs (`qemu-img measure`).
    fn measure(&self, _req: &MeasureRequest) -> Result<MeasureResult> {
        Err(BlockError::unsupported("measure"))
    }

    /// Opens a node.
    fn open(&self, req: &OpenRequest, host: Arc<dyn HostServices>) -> Result<Box<dyn BlockNode>>;
}
