//! The one error type of the block layer: an errno-like kind plus context
//! (operation, offset, file) and a human message, with the context helpers
//! ([`BlockError::at`], [`BlockError::in_file`], [`BlockError::context`],
//! [`ResultExt`]) every crate adds context with.

use std::fmt;

pub use crate::operation::Operation;

/// An errno-like classification of a [`BlockError`]. Values match Linux errno
/// numbers so they cross the plugin ABI unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Generic I/O failure (EIO).
    Io,
    /// Invalid argument or option (EINVAL).
    InvalidInput,
    /// The driver or file does not support the operation (ENOTSUP).
    Unsupported,
    /// No space left (ENOSPC).
    NoSpace,
    /// Operation not permitted (EPERM), e.g. a write that would change a probed raw image's format.
    PermissionDenied,
    /// File or driver not found (ENOENT).
    NotFound,
    /// Read-only image or inactive node (EROFS).
    ReadOnly,
    /// The image is corrupt or hostile (EUCLEAN).
    Corrupt,
    /// The node is busy or locked by another process (EAGAIN).
    Busy,
    /// A request or header field is out of range (ERANGE / EFBIG).
    OutOfRange,
    /// A loop was found, e.g. in a backing chain (ELOOP).
    Loop,
    /// Plugin ABI mismatch (ENOEXEC).
    AbiMismatch,
    /// Any other errno value.
    Other(i32),
}

impl ErrorKind {
    /// The Linux errno number of this kind.
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::Io => libc::EIO,
            ErrorKind::InvalidInput => libc::EINVAL,
            ErrorKind::Unsupported => libc::ENOTSUP,
            ErrorKind::NoSpace => libc::ENOSPC,
            ErrorKind::PermissionDenied => libc::EPERM,
            ErrorKind::NotFound => libc::ENOENT,
            ErrorKind::ReadOnly => libc::EROFS,
            ErrorKind::Corrupt => libc::EUCLEAN,
            ErrorKind::Busy => libc::EAGAIN,
            ErrorKind::OutOfRange => libc::ERANGE,
            ErrorKind::Loop => libc::ELOOP,
            ErrorKind::AbiMismatch => libc::ENOEXEC,
            ErrorKind::Other(e) => e,
        }
    }

    /// The kind for an errno number (the inverse of [`ErrorKind::errno`]).
    pub fn from_errno(errno: i32) -> ErrorKind {
        match errno {
            libc::EIO => ErrorKind::Io,
            libc::EINVAL => ErrorKind::InvalidInput,
            libc::ENOTSUP => ErrorKind::Unsupported,
            libc::ENOSPC => ErrorKind::NoSpace,
            libc::EPERM | libc::EACCES => ErrorKind::PermissionDenied,
            libc::ENOENT => ErrorKind::NotFound,
            libc::EROFS => ErrorKind::ReadOnly,
            libc::EUCLEAN => ErrorKind::Corrupt,
            libc::EAGAIN => ErrorKind::Busy,
            libc::ERANGE | libc::EFBIG => ErrorKind::OutOfRange,
            libc::ELOOP => ErrorKind::Loop,
            libc::ENOEXEC => ErrorKind::AbiMismatch,
            e => ErrorKind::Other(e),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Io => "I/O error",
            ErrorKind::InvalidInput => "invalid argument",
            ErrorKind::Unsupported => "operation not supported",
            ErrorKind::NoSpace => "no space left on device",
            ErrorKind::PermissionDenied => "operation not permitted",
            ErrorKind::NotFound => "not found",
            ErrorKind::ReadOnly => "read-only",
            ErrorKind::Corrupt => "image is corrupt",
            ErrorKind::Busy => "resource busy",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::Loop => "loop detected",
            ErrorKind::AbiMismatch => "ABI mismatch",
            ErrorKind::Other(e) => return write!(f, "errno {e}"),
        };
        f.write_str(s)
    }
}

/// The error of every block-layer operation.
///
/// Carries an errno-like [`ErrorKind`], the operation that failed, optionally
/// the byte offset and the file, and a message. Display renders
/// `"<file>: <op> at offset <off>: <message>"`, omitting absent parts.
#[derive(Debug, thiserror::Error)]
pub struct BlockError {
    /// The errno-like classification.
    pub kind: ErrorKind,
    /// The operation that failed ([`Operation::Read`], [`Operation::Open`], ...).
    pub op: Operation,
    /// The byte offset the operation was working on, if any.
    pub offset: Option<u64>,
    /// The file (or node) the operation was working on, if known.
    pub file: Option<String>,
    /// A human-readable message: the reason, preceded by every prefix
    /// [`BlockError::context`] added ("Could not open: No such file ...").
    pub message: String,
    /// The underlying cause, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        self.write_detail(f)
    }
}

impl BlockError {
    /// The error as displayed without its leading `file: `: operation,
    /// offset, message and source. A front end that names the file itself
    /// prints this.
    pub fn detail(&self) -> String {
        struct Detail<'a>(&'a BlockError);
        impl fmt::Display for Detail<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_detail(f)
            }
        }
        Detail(self).to_string()
    }

    fn write_detail(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.op.is_empty() {
            f.write_str(self.op.as_str())?;
            if let Some(off) = self.offset {
                write!(f, " at offset {off}")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl BlockError {
    /// A new error of `kind` for operation `op` with `message`.
    pub fn new(kind: ErrorKind, op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError {
            kind,
            op: op.into(),
            offset: None,
            file: None,
            message: message.into(),
            source: None,
        }
    }

    /// An "operation not supported" error for `op`.
    pub fn unsupported(op: impl Into<Operation>) -> Self {
        let op = op.into();
        let msg = unsupported_message(&op);
        BlockError::new(ErrorKind::Unsupported, op, msg)
    }

    /// An [`ErrorKind::Unsupported`] error in the driver's own words: the
    /// image uses a feature (or asks for a combination) the driver refuses.
    pub fn unsupported_feature(op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError::new(ErrorKind::Unsupported, op, message)
    }

    /// True when this is the error of [`BlockError::unsupported`]: the
    /// driver does not implement the operation at all (as opposed to a
    /// driver's own ENOTSUP refusal with its own words). Holds for an error
    /// that crossed the plugin ABI too, which carries op and message as text.
    pub fn is_unsupported_operation(&self) -> bool {
        self.kind == ErrorKind::Unsupported && self.message == unsupported_message(&self.op)
    }

    /// An invalid-argument error.
    pub fn invalid(op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError::new(ErrorKind::InvalidInput, op, message)
    }

    /// A corrupt-image error.
    pub fn corrupt(op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError::new(ErrorKind::Corrupt, op, message)
    }

    /// An I/O error.
    pub fn io(op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError::new(ErrorKind::Io, op, message)
    }

    /// A read-only error (the node is read-only or inactive).
    pub fn read_only(op: impl Into<Operation>, message: impl Into<String>) -> Self {
        BlockError::new(ErrorKind::ReadOnly, op, message)
    }

    /// Wraps an [`std::io::Error`] from operation `op`.
    pub fn from_io(op: impl Into<Operation>, err: std::io::Error) -> Self {
        let kind = err
            .raw_os_error()
            .map(ErrorKind::from_errno)
            .unwrap_or(match err.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                std::io::ErrorKind::InvalidInput => ErrorKind::InvalidInput,
                std::io::ErrorKind::UnexpectedEof => ErrorKind::Io,
                _ => ErrorKind::Io,
            });
        // Rust renders OS errors as "No such file or directory (os error 2)";
        // keep the strerror text only, as QEMU prints it.
        let text = err.to_string();
        let message = match text.rfind(" (os error ") {
            Some(i) if err.raw_os_error().is_some() => text[..i].to_string(),
            _ => text,
        };
        BlockError {
            kind,
            op: op.into(),
            offset: None,
            file: None,
            message,
            source: None,
        }
    }

    /// Prefixes the message with `prefix` in QEMU's style,
    /// `"<prefix>: <message>"`: how a caller words a callee's failure in its
    /// own terms ("Could not open backing file: ..."). Kind, op, offset,
    /// file and source are kept.
    pub fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// Sets the operation, replacing the one the callee named.
    pub fn with_op(mut self, op: impl Into<Operation>) -> Self {
        self.op = op.into();
        self
    }

    /// Sets the offset context.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Sets the file context unless one is already set.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        if self.file.is_none() {
            self.file = Some(file.into());
        }
        self
    }

    /// Sets the source error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// True when this error means "not supported", so a caller may emulate.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ErrorKind::Unsupported
    }

    /// The errno number of this error.
    pub fn errno(&self) -> i32 {
        self.kind.errno()
    }
}

/// The message of [`BlockError::unsupported`] for `op`.
fn unsupported_message(op: &Operation) -> String {
    format!("{op} is not supported by this driver")
}

/// The result type of the block layer.
pub type Result<T, E = BlockError> = std::result::Result<T, E>;

/// The context helpers of [`BlockError`] on a [`Result`], so that a call
/// site reads `file.read_at(..).map_err(..).at(off).in_file(name)?` instead
/// of a `map_err` closure that edits the error's fields. Each one leaves an
/// `Ok` untouched; the `with_` forms build their argument only on error.
pub trait ResultExt<T> {
    /// [`BlockError::context`] on the error.
    fn context(self, prefix: impl fmt::Display) -> Result<T>;
    /// [`BlockError::context`] with a prefix built only on error.
    fn with_context<D: fmt::Display>(self, prefix: impl FnOnce() -> D) -> Result<T>;
    /// [`BlockError::in_file`] on the error (an inner file name wins).
    fn in_file(self, file: impl Into<String>) -> Result<T>;
    /// [`BlockError::in_file`] with a name built only on error.
    fn with_file<S: Into<String>>(self, file: impl FnOnce() -> S) -> Result<T>;
    /// [`BlockError::at`] on the error.
    fn at(self, offset: u64) -> Result<T>;
    /// [`BlockError::with_op`] on the error.
    fn with_op(self, op: impl Into<Operation>) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, prefix: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(prefix))
    }

    fn with_context<D: fmt::Display>(self, prefix: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.context(prefix()))
    }

    fn in_file(self, file: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.in_file(file))
    }

    fn with_file<S: Into<String>>(self, file: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.in_file(file()))
    }

    fn at(self, offset: u64) -> Result<T> {
        self.map_err(|e| e.at(offset))
    }

    fn with_op(self, op: impl Into<Operation>) -> Result<T> {
        self.map_err(|e| e.with_op(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_context() {
        let e = BlockError::corrupt("read", "L2 entry points past the end")
            .at(4096)
            .in_file("a.qcow2");
        assert_eq!(
            e.to_string(),
            "a.qcow2: read at offset 4096: L2 entry points past the end"
        );
        assert_eq!(e.errno(), libc::EUCLEAN);
    }

    #[test]
    fn io_errors_read_like_strerror() {
        let e = BlockError::from_io("open", std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.message, "No such file or directory");
        assert_eq!(e.kind, ErrorKind::NotFound);
    }

    #[test]
    fn op_is_an_enum_with_the_old_names() {
        let e = BlockError::io("write_zeroes", "boom").at(512);
        assert_eq!(e.op, Operation::WriteZeroes);
        assert_eq!(e.to_string(), "write_zeroes at offset 512: boom");
        let e = BlockError::invalid(Operation::Other("frob".into()), "no");
        assert_eq!(e.to_string(), "frob: no");
        let e = BlockError::invalid("", "bare message");
        assert_eq!(e.op, Operation::Unspecified);
        assert_eq!(e.to_string(), "bare message");
    }

    #[test]
    fn context_prefixes_in_qemu_style() {
        let e = BlockError::from_io("open", std::io::Error::from_raw_os_error(libc::ENOENT))
            .context("Could not open")
            .in_file("x.img")
            .context(format_args!("Could not open '{}'", "y.img"));
        assert_eq!(
            e.message,
            "Could not open 'y.img': Could not open: No such file or directory"
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.op, Operation::Open);
        assert_eq!(e.file.as_deref(), Some("x.img"));
    }

    #[test]
    fn in_file_keeps_the_inner_name_and_with_op_replaces() {
        let e = BlockError::io("read", "x")
            .in_file("inner")
            .in_file("outer");
        assert_eq!(e.file.as_deref(), Some("inner"));
        assert_eq!(e.with_op("flush").op, Operation::Flush);
    }

    #[test]
    fn result_ext_adds_context_only_on_error() {
        let ok: Result<u8> = Ok(7);
        let built = std::cell::Cell::new(false);
        let ok = ok
            .context("never")
            .with_context(|| {
                built.set(true);
                "never"
            })
            .with_file(|| {
                built.set(true);
                "never"
            })
            .at(1)
            .with_op("write");
        assert_eq!(ok.unwrap(), 7);
        assert!(!built.get());

        let err: Result<u8> = Err(BlockError::corrupt("read", "bad L2"));
        let e = err
            .at(65536)
            .with_file(|| "a.qcow2")
            .with_context(|| "Could not read")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.qcow2: read at offset 65536: Could not read: bad L2"
        );
    }

    #[test]
    fn unsupported_operation_is_told_from_a_driver_refusal() {
        assert!(BlockError::unsupported("amend").is_unsupported_operation());
        assert_eq!(
            BlockError::unsupported("amend").message,
            "amend is not supported by this driver"
        );
        // As it arrives over the ABI: op and message as text.
        let wire = BlockError::new(
            ErrorKind::Unsupported,
            String::from("amend"),
            String::from("amend is not supported by this driver"),
        );
        assert!(wire.is_unsupported_operation());
        let own = BlockError::new(ErrorKind::Unsupported, "amend", "Cannot downgrade");
        assert!(!own.is_unsupported_operation());
        assert!(own.is_unsupported());
    }

    #[test]
    fn errno_round_trip() {
        for k in [
            ErrorKind::Io,
            ErrorKind::InvalidInput,
            ErrorKind::Unsupported,
            ErrorKind::NoSpace,
            ErrorKind::PermissionDenied,
            ErrorKind::NotFound,
            ErrorKind::ReadOnly,
            ErrorKind::Corrupt,
            ErrorKind::Busy,
            ErrorKind::OutOfRange,
            ErrorKind::Loop,
            ErrorKind::AbiMismatch,
            ErrorKind::Other(1234),
        ] {
            assert_eq!(ErrorKind::from_errno(k.errno()), k);
        }
    }
}
