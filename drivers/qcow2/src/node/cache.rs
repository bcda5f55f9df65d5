//! qcow2's L2 and refcount-block caches are the engine's table cache.

pub use block_core::engine::table_cache::{Table, TableCache};
