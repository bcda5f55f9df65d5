//! The on-disk layout of qcow2, as plain data and pure functions: the
//! header and its extensions (header.rs), feature bits (features.rs), the
//! guest-to-host mapping geometry and entry formats (mapping.rs), the
//! snapshot table (snapshot.rs), where the crypto header is and how it is
//! described (crypto.rs), compression types (compress.rs), and the map of
//! metadata regions that overlap checks use (overlap.rs). Nothing here
//! imports from the rest of the driver.

pub mod compress;
pub(crate) mod crypto;
pub mod features;
pub mod header;
pub mod mapping;
pub mod overlap;
pub mod snapshot;
