//! Metadata overlap checks (layout/overlap.rs over block_core::engine::overlap).

use crate::layout::overlap::*;

#[test]
fn finds_overlaps() {
    let mut m = OverlapMap::new(512);
    m.add(0, 512, kind::HEADER);
    m.add(4096, 8, kind::ACTIVE_L1);
    m.add(8192, 512, kind::ACTIVE_L2);
    m.finish();
    assert_eq!(m.check(0, 1, 0), Some(kind::HEADER));
    assert_eq!(m.check(512, 3584, 0), None);
    assert_eq!(m.check(4600, 10, 0), Some(kind::ACTIVE_L1));
    assert_eq!(m.check(8192, 512, kind::ACTIVE_L2), None);
    assert_eq!(m.check(8000, 512, 0), Some(kind::ACTIVE_L2));
}
