//! Guest-to-host mapping geometry and entry decoding (layout/mapping.rs).

use crate::layout::mapping::*;

fn geo(ext: bool) -> Geometry {
    Geometry {
        cluster_bits: 16,
        extended_l2: ext,
        refcount_order: 4,
        data_file: false,
        version: 3,
        compression_type: 0,
    }
}

#[test]
fn pack_roundtrip() {
    let mut g = geo(true);
    g.data_file = true;
    g.compression_type = 1;
    g.refcount_order = 6;
    assert_eq!(Geometry::unpack(g.pack()), g);
}

#[test]
fn types() {
    let g = geo(false);
    assert_eq!(g.cluster_type(0), ClusterType::Unallocated);
    assert_eq!(g.cluster_type(1), ClusterType::ZeroPlain);
    assert_eq!(g.cluster_type(0x10000 | 1), ClusterType::ZeroAlloc);
    assert_eq!(g.cluster_type(OFLAG_COPIED | 0x10000), ClusterType::Normal);
    let e = g.compressed_entry(0x12345, 1000);
    assert_eq!(g.cluster_type(e), ClusterType::Compressed);
    let (o, n) = g.compressed_range(e);
    assert_eq!(o, 0x12345);
    assert!((1000..1000 + 512).contains(&n));
    let x = geo(true);
    assert_eq!(x.subcluster_type(0x10000, 1, 0), SubType::Normal);
    assert_eq!(x.subcluster_type(0x10000, 1, 1), SubType::UnallocAlloc);
    assert_eq!(x.subcluster_type(0x10000, 1 << 33, 1), SubType::ZeroAlloc);
    assert_eq!(x.subcluster_type(0, 1 << 33, 1), SubType::ZeroPlain);
    assert_eq!(x.subcluster_type(0, 1, 1), SubType::Invalid);
    assert_eq!(x.subcluster_type(0x10000, 1 | 1 << 32, 1), SubType::Invalid);
}
