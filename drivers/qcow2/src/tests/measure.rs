//! `measure` numbers that need no qemu-img (the image-based comparisons
//! are in amend.rs).

use crate::ops::measure::measure;
use block_core::MeasureRequest;

#[test]
fn qemu_numbers() {
    // qemu-img measure -O qcow2 --size 1G
    let r = measure(&MeasureRequest {
        options: vec![("size".into(), "1G".into())],
        virtual_size: 0,
        data_extents: None,
        source_bitmaps: None,
    })
    .unwrap();
    assert_eq!(r.required, 393216);
    assert_eq!(r.fully_allocated, 1074135040);
}
