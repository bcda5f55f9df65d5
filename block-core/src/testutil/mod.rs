//! Test utilities every driver's unit tests use: an in-memory file node
//! ([`MemFile`]) that records the requests it receives, and host services
//! ([`TestHost`]) that hand out such nodes by child role and name, and the
//! create/open harness of a format driver's tests ([`create_image`],
//! [`open_image`], [`pattern`]).
//!
//! The module is always compiled (it is small and has no dependencies), so a
//! driver's `#[cfg(test)]` code uses it with only its normal dependency on
//! block-core:
//!
//! ```
//! use block_core::testutil::{MemFile, TestHost};
//! use block_core::{BlockNodeExt, ChildRole};
//!
//! let host = TestHost::new();
//! let file = host.add_file(ChildRole::File, "disk.img", MemFile::new(1 << 20));
//! file.write_at(4096, b"hello").unwrap();
//! assert_eq!(file.stats().writes, 1);
//! ```

mod host;
mod images;
mod memfile;

pub use host::TestHost;
pub use images::{create_image, create_in, create_options, open_image, pattern};
pub use memfile::{ChildOp, InjectedError, MemFile, RequestLog, RequestRecord};
