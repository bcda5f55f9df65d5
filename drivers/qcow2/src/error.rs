//! Small helpers to build [`BlockError`]s with qcow2 context.

use block_core::{BlockError, ErrorKind, Operation};

/// An "image is inactive" or read-only error.
pub(crate) fn read_only(op: impl Into<Operation>, msg: impl Into<String>) -> BlockError {
    BlockError::read_only(op, msg)
}

/// An unsupported-feature error.
pub(crate) fn unsupported(op: impl Into<Operation>, msg: impl Into<String>) -> BlockError {
    BlockError::new(ErrorKind::Unsupported, op, msg)
}
