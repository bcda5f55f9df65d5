//! The metadata regions of an image that a data write must not hit.
//!
//! Every format keeps metadata in its image file beside guest data
//! (qcow2's header, L1/L2 and refcount tables; qed's L1/L2 tables; the
//! BAT of vhdx, vdi and parallels; vmdk's grain directories). A bug or a
//! corrupted table that sends a data write into one of them destroys the
//! image, so a driver checks every write against an [`OverlapMap`] of its
//! metadata first and refuses (and marks the image corrupt) on a hit.
//!
//! Regions carry a kind, a bit flag of the format's choosing, so that a
//! metadata write may ignore the kinds it is meant to replace (writing an
//! L2 table ignores "L2 tables"). The map is rebuilt whenever the
//! metadata layout changes and published through [`SharedOverlapMap`]:
//! checks take a snapshot without blocking the rebuild.

use std::sync::{Arc, RwLock};

/// Sorted metadata regions, widened to a granule (the cluster size).
#[derive(Debug, Default, Clone)]
pub struct OverlapMap {
    /// (start, end, kind), sorted by start once finished.
    regions: Vec<(u64, u64, u32)>,
    granule: u64,
    /// The longest region, bounding how far before an offset a region
    /// overlapping it can start.
    longest: u64,
}

impl OverlapMap {
    /// An empty map whose regions are widened to multiples of `granule`
    /// (a power of two).
    pub fn new(granule: u64) -> OverlapMap {
        OverlapMap {
            regions: Vec::new(),
            granule,
            longest: 0,
        }
    }

    /// Adds a region of kind `kind`, `len` bytes at `start` (nothing when
    /// `len` is 0).
    pub fn add(&mut self, start: u64, len: u64, kind: u32) {
        if len == 0 {
            return;
        }
        let g = self.granule;
        let s = start & !(g - 1);
        let e = start.saturating_add(len).div_ceil(g).saturating_mul(g);
        self.longest = self.longest.max(e - s);
        self.regions.push((s, e, kind));
    }

    /// Adds a region of `len` bytes at each nonzero offset of `starts`
    /// (the tables a table of offsets names; 0 is "none").
    pub fn add_each(&mut self, starts: impl IntoIterator<Item = u64>, len: u64, kind: u32) {
        for s in starts.into_iter().filter(|&s| s != 0) {
            self.add(s, len, kind);
        }
    }

    /// Sorts the regions; call after the last `add`.
    pub fn finish(&mut self) {
        self.regions.sort_unstable();
    }

    /// The kind of the first region of a kind not in `ignore` that
    /// overlaps `[offset, offset+len)`.
    pub fn check(&self, offset: u64, len: u64, ignore: u32) -> Option<u32> {
        if len == 0 {
            return None;
        }
        let end = offset.saturating_add(len);
        let lo = offset.saturating_sub(self.longest);
        let first = self.regions.partition_point(|r| r.0 < lo);
        self.regions[first..]
            .iter()
            .take_while(|r| r.0 < end)
            .find(|&&(_, e, k)| e > offset && k & ignore == 0)
            .map(|r| r.2)
    }
}

/// The current [`OverlapMap`] of an open image: replaced as a whole when
/// the layout changes, read as a snapshot by the checks.
#[derive(Debug, Default)]
pub struct SharedOverlapMap(RwLock<Arc<OverlapMap>>);

impl SharedOverlapMap {
    /// A shared map starting as `map`.
    pub fn new(map: OverlapMap) -> SharedOverlapMap {
        SharedOverlapMap(RwLock::new(Arc::new(map)))
    }

    /// The current map.
    pub fn get(&self) -> Arc<OverlapMap> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes `map` (finished) as the current map.
    pub fn set(&self, map: OverlapMap) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    /// [`OverlapMap::check`] on the current map.
    pub fn check(&self, offset: u64, len: u64, ignore: u32) -> Option<u32> {
        self.get().check(offset, len, ignore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_overlaps_and_ignores_kinds() {
        let mut m = OverlapMap::new(512);
        m.add(8192, 512, 4);
        m.add(0, 512, 1);
        m.add(4096, 8, 2);
        m.add(100_000, 0, 8);
        m.finish();
        assert_eq!(m.check(0, 1, 0), Some(1));
        assert_eq!(m.check(512, 3584, 0), None);
        assert_eq!(m.check(4600, 10, 0), Some(2));
        assert_eq!(m.check(8192, 512, 4), None);
        assert_eq!(m.check(8000, 512, 0), Some(4));
        assert_eq!(m.check(8000, 0, 0), None);
        assert_eq!(m.check(100_000, 512, 0), None);
    }

    #[test]
    fn long_regions_are_found_from_far_inside() {
        let mut m = OverlapMap::new(4096);
        m.add(1 << 20, 256 << 20, 1);
        m.add_each([0, 1 << 30, 0, (1 << 30) + 4096], 4096, 2);
        m.finish();
        assert_eq!(m.check((200 << 20) + 7, 1, 0), Some(1));
        assert_eq!(m.check((1 << 30) + 4095, 2, 0), Some(2));
        assert_eq!(m.check(0, 4096, 0), None);
        assert_eq!(m.check(u64::MAX - 1, 10, 0), None);
        let shared = SharedOverlapMap::default();
        assert_eq!(shared.check(1 << 20, 1, 0), None);
        shared.set(m);
        assert_eq!(shared.check(1 << 20, 1, 0), Some(1));
        assert_eq!(shared.get().check(1 << 20, 1, 1), None);
    }
}
