//! Creating and opening a driver's images over [`TestHost`]: the harness a
//! format driver's unit tests share (create with qemu-img-style option
//! pairs, get the in-memory file back, open it again), and a seeded byte
//! pattern to write.

use super::{MemFile, TestHost};
use crate::driver::{BlockDriver, OpenRequest};
use crate::error::Result;
use crate::node::BlockNode;
use crate::options::OptionValues;
use crate::types::OpenFlags;
use std::sync::Arc;

/// A deterministic byte pattern holding every byte value, varied by `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(131).wrapping_add(seed as u32 * 17) as u8)
        .collect()
}

/// `pairs` parsed against `driver`'s create options.
pub fn create_options(driver: &dyn BlockDriver, pairs: &[(&str, &str)]) -> Result<OptionValues> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    OptionValues::parse(&driver.create_options(), &pairs)
}

/// Creates image `name` with `driver` in `host`; returns the file it made.
pub fn create_in(
    driver: &dyn BlockDriver,
    host: &Arc<TestHost>,
    name: &str,
    pairs: &[(&str, &str)],
) -> Result<Arc<MemFile>> {
    driver.create(name, &create_options(driver, pairs)?, host.clone())?;
    Ok(host.created_file(name).expect("create made the file"))
}

/// Creates image `name` with `driver` in a new host; panics on an error
/// (tests only). Returns the host and the image's file.
pub fn create_image(
    driver: &dyn BlockDriver,
    name: &str,
    pairs: &[(&str, &str)],
) -> (Arc<TestHost>, Arc<MemFile>) {
    let host = Arc::new(TestHost::new());
    let file = create_in(driver, &host, name, pairs).unwrap();
    (host, file)
}

/// Opens image `name` of `host` with `driver`.
pub fn open_image(
    driver: &dyn BlockDriver,
    host: &Arc<TestHost>,
    name: &str,
    flags: OpenFlags,
) -> Result<Box<dyn BlockNode>> {
    driver.open(&OpenRequest::new(name, flags), host.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_seeded_and_covers_every_byte() {
        let a = pattern(256 * 131, 1);
        assert_eq!(a, pattern(256 * 131, 1));
        assert_ne!(a, pattern(256 * 131, 2));
        let mut seen = [false; 256];
        a.iter().for_each(|&b| seen[b as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }
}
