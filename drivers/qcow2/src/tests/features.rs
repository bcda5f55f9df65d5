//! Feature bits and the feature-name table (layout/features.rs).

use crate::layout::features::*;

#[test]
fn table_round_trip() {
    let t = parse_table(&qemu_table());
    assert_eq!(t.len(), 8);
    assert_eq!(t[4].name, "extended L2 entries");
    assert_eq!(
        describe_unknown(1 << 4, KIND_INCOMPAT, &t),
        "extended L2 entries"
    );
    assert_eq!(
        describe_unknown(1 << 9, KIND_INCOMPAT, &t),
        "Unknown incompatible feature: 200"
    );
}
