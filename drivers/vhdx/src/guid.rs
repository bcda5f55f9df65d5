//! GUIDs as VHDX stores them (Microsoft's mixed-endian layout: the first
//! three fields little-endian, the last eight bytes as they are), and fresh
//! random ones for the header's write GUIDs, the log GUID and page 83 data.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A GUID in its 16 on-disk bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID (an empty log, in the header's log GUID).
    pub const ZERO: Guid = Guid([0; 16]);

    /// The GUID written as `data1-data2-data3-data4` (the spec's notation).
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// The GUID stored at `b[off..off + 16]` (the caller checked the length).
    pub fn read(b: &[u8], off: usize) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[off..off + 16]);
        Guid(g)
    }

    /// Stores the GUID at `b[off..off + 16]`.
    pub fn write(&self, b: &mut [u8], off: usize) {
        b[off..off + 16].copy_from_slice(&self.0);
    }

    /// True for the all-zero GUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A new random (version 4) GUID. Randomness comes from the standard
    /// library's per-process hash keys mixed with the time and a counter:
    /// GUIDs here only need to differ, not to be secret.
    pub fn random() -> Guid {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 16];
        for (i, half) in out.chunks_mut(8).enumerate() {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(now);
            h.write_u64(n);
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        out[7] = (out[7] & 0x0f) | 0x40;
        out[8] = (out[8] & 0x3f) | 0x80;
        Guid(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_layout_and_randomness() {
        let g = Guid::from_fields(0x2dc27766, 0xf623, 0x4200, [0x9d, 0x64, 1, 2, 3, 4, 5, 6]);
        assert_eq!(&g.0[..8], &[0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42]);
        assert_ne!(Guid::random(), Guid::random());
        assert!(!Guid::random().is_zero());
    }
}
