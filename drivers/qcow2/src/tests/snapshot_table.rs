//! The snapshot table codec (layout/snapshot.rs).

use crate::layout::header::put_u32;
use crate::layout::snapshot::*;
use block_core::BlockError;

#[test]
fn round_trip() {
    let s = Snapshot {
        l1_offset: 0x50000,
        l1_size: 3,
        id: "1".into(),
        name: "snap one".into(),
        date_sec: 12,
        date_nsec: 34,
        vm_clock_nsec: 5_000_000_001,
        vm_state_size: 0,
        disk_size: Some(1 << 20),
        icount: None,
        extra_tail: vec![9; 8],
    };
    let t = serialize_table(&[s.clone(), s.clone()]);
    // 40 fixed + 24 extra + 8 extra tail + id 1 + name 8 = 81, padded to 88.
    assert_eq!(t.len(), 2 * 88);
    let (p, len) = parse_table(2, |o, l| Ok(t[o as usize..o as usize + l].to_vec())).unwrap();
    assert_eq!(len, t.len() as u64);
    assert_eq!(p, vec![s.clone(), s]);
    // Hostile extra size.
    let mut bad = t.clone();
    put_u32(&mut bad, 36, 5000);
    assert!(parse_table(1, |o, l| {
        bad.get(o as usize..o as usize + l)
            .map(|b| b.to_vec())
            .ok_or_else(|| BlockError::io("r", "eof"))
    })
    .is_err());
}
