//! The errors of the operations.

use super::BlockError;

/// The step of an operation: where an error happened, or what
/// [`super::Progress`] is reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Querying block status (what is allocated, what reads as zeros).
    BlockStatus,
    /// Reading data.
    Read,
    /// Writing data or zeroes.
    Write,
    /// Flushing the target.
    Flush,
    /// Flushing with every other request drained first (bench's flush
    /// interval).
    DrainFlush,
    /// Copying (convert's progress: reads and writes together).
    Copy,
    /// Comparing (compare's progress over the length both images have).
    Compare,
    /// Compare: checking that the rest of the longer image reads as zeros
    /// (the images differ in size).
    CompareTail,
    /// Mapping (map's progress).
    Map,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::BlockStatus => "block status",
            Stage::Read => "read",
            Stage::Write => "write",
            Stage::Flush => "flush",
            Stage::DrainFlush => "drained flush",
            Stage::Copy => "copy",
            Stage::Compare => "compare",
            Stage::CompareTail => "compare past the shorter image",
            Stage::Map => "map",
        })
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The [`super::CancelToken`] was cancelled; the target was left
    /// consistent.
    #[error("operation cancelled")]
    Cancelled,
    /// A request failed. `image` indexes the images the operation was given
    /// (each operation documents its numbering); `offset` is the byte
    /// offset the request was at (for convert, in the target).
    #[error("{stage} failed at offset {offset} of image {image}: {error}")]
    At {
        /// The step that failed.
        stage: Stage,
        /// Which of the operation's images.
        image: usize,
        /// The byte offset.
        offset: u64,
        /// The error underneath (boxed: it keeps `OpError` small).
        #[source]
        error: Box<BlockError>,
    },
    /// The request cannot be carried out with these images (a target
    /// smaller than the sources, a feature the target's format lacks...).
    #[error("{0}")]
    Invalid(String),
    /// A query outside any chunk (an image's length, its info) failed.
    #[error(transparent)]
    Block(#[from] BlockError),
}

impl OpError {
    /// An [`OpError::At`].
    pub(crate) fn at(stage: Stage, image: usize, offset: u64, error: BlockError) -> OpError {
        OpError::At {
            stage,
            image,
            offset,
            error: Box::new(error),
        }
    }

    /// The [`BlockError`] underneath, if any.
    pub fn block_error(&self) -> Option<&BlockError> {
        match self {
            OpError::At { error, .. } => Some(error),
            OpError::Block(error) => Some(error),
            _ => None,
        }
    }
}
