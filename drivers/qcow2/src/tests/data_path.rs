//! The data path helpers (io/data_path.rs).

use crate::io::data_path::sc_mask;

#[test]
fn masks() {
    assert_eq!(sc_mask(0, 0), 1);
    assert_eq!(sc_mask(0, 31), 0xffff_ffff);
    assert_eq!(sc_mask(3, 5), 0b111000);
}
