//! The in-memory dirty bitmap: sparse, in chunks of one bitmap data
//! cluster, so memory follows what is set (or stored in the image), never
//! a size taken from a header.
//!
//! Bit `i` covers guest bytes `[i << g, (i + 1) << g)`; it is bit `i % 8`
//! (least significant first) of byte `i / 8` of the bitmap data, as the
//! qcow2 specification lays it out.

use std::collections::BTreeMap;

/// One chunk (the bits stored in one bitmap data cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Every bit set.
    Ones,
    /// The bytes (`chunk_bytes` long).
    Data(Box<[u8]>),
}

/// A dirty bitmap over a virtual disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    /// log2 of the granularity in bytes.
    pub gran_bits: u32,
    /// The virtual size the bitmap covers.
    pub size: u64,
    /// Bytes per chunk (the cluster size).
    pub chunk_bytes: u64,
    /// Chunks with at least one bit set (absent: all zero).
    pub chunks: BTreeMap<u64, Chunk>,
}

impl DirtyBitmap {
    /// An empty bitmap.
    pub fn new(gran_bits: u32, size: u64, chunk_bytes: u64) -> DirtyBitmap {
        DirtyBitmap {
            gran_bits,
            size,
            chunk_bytes,
            chunks: BTreeMap::new(),
        }
    }

    /// Number of bits.
    pub fn nbits(&self) -> u64 {
        self.size.div_ceil(1u64 << self.gran_bits)
    }

    fn bits_per_chunk(&self) -> u64 {
        self.chunk_bytes * 8
    }

    /// Number of chunks (bitmap table entries).
    pub fn nchunks(&self) -> u64 {
        self.nbits().div_ceil(8).div_ceil(self.chunk_bytes)
    }

    /// Sets the bits `[first, last]` (bit numbers, clamped to the bitmap).
    pub fn set_bits(&mut self, first: u64, last: u64) {
        let n = self.nbits();
        if n == 0 || first >= n {
            return;
        }
        let last = last.min(n - 1);
        let bpc = self.bits_per_chunk();
        let cb = self.chunk_bytes as usize;
        let mut b = first;
        while b <= last {
            let ci = b / bpc;
            let end = last.min((ci + 1) * bpc - 1);
            let lo = b - ci * bpc;
            let hi = end - ci * bpc;
            let whole = lo == 0 && hi == bpc - 1;
            let c = self.chunks.entry(ci).or_insert_with(|| {
                if whole {
                    Chunk::Ones
                } else {
                    Chunk::Data(vec![0u8; cb].into_boxed_slice())
                }
            });
            if whole {
                *c = Chunk::Ones;
            } else if let Chunk::Data(d) = c {
                set_range(d, lo, hi);
            }
            b = end + 1;
        }
    }

    /// Marks the guest range `[offset, offset + len)` dirty.
    pub fn mark(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let g = self.gran_bits;
        self.set_bits(offset >> g, (offset + len - 1) >> g);
    }

    /// True when bit `i` is set.
    #[cfg(test)]
    pub fn get(&self, i: u64) -> bool {
        let bpc = self.bits_per_chunk();
        match self.chunks.get(&(i / bpc)) {
            None => false,
            Some(Chunk::Ones) => true,
            Some(Chunk::Data(d)) => {
                let k = i % bpc;
                d[(k / 8) as usize] & (1 << (k % 8)) != 0
            }
        }
    }

    /// Clears every bit.
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    /// Sets every bit set in `other` (same granularity and size required
    /// by the caller; a differing granularity is merged bit by range).
    pub fn merge(&mut self, other: &DirtyBitmap) {
        if other.gran_bits == self.gran_bits && other.chunk_bytes == self.chunk_bytes {
            for (&ci, c) in &other.chunks {
                if ci >= self.nchunks() {
                    break;
                }
                match (self.chunks.get_mut(&ci), c) {
                    (_, Chunk::Ones) => {
                        let bpc = self.bits_per_chunk();
                        self.set_bits(ci * bpc, ci * bpc + bpc - 1);
                    }
                    (Some(Chunk::Ones), _) => {}
                    (Some(Chunk::Data(d)), Chunk::Data(o)) => {
                        for (a, b) in d.iter_mut().zip(o.iter()) {
                            *a |= *b;
                        }
                    }
                    (None, Chunk::Data(o)) => {
                        self.chunks.insert(ci, Chunk::Data(o.clone()));
                    }
                }
            }
            self.trim_tail();
            return;
        }
        for (first, last) in other.dirty_ranges() {
            self.mark(first, last - first);
        }
    }

    /// The dirty guest ranges `(start, end)`, ascending, merged.
    pub fn dirty_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let g = self.gran_bits;
        let bpc = self.bits_per_chunk();
        let n = self.nbits();
        let push = |a: u64, b: u64, out: &mut Vec<(u64, u64)>| {
            let s = a << g;
            let e = (b << g).min(self.size);
            match out.last_mut() {
                Some(l) if l.1 == s => l.1 = e,
                _ => out.push((s, e)),
            }
        };
        for (&ci, c) in &self.chunks {
            let base = ci * bpc;
            match c {
                Chunk::Ones => push(base, (base + bpc).min(n), &mut out),
                Chunk::Data(d) => {
                    let mut i = 0u64;
                    while i < bpc && base + i < n {
                        if d[(i / 8) as usize] == 0 && i % 8 == 0 {
                            i += 8;
                            continue;
                        }
                        if d[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                            let s = i;
                            while i < bpc
                                && base + i < n
                                && d[(i / 8) as usize] & (1 << (i % 8)) != 0
                            {
                                i += 1;
                            }
                            push(base + s, base + i, &mut out);
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        out
    }

    /// Changes the covered size (resize): bits past the new end are dropped;
    /// a grown bitmap has its new bits clear.
    pub fn resize(&mut self, size: u64) {
        self.size = size;
        let n = self.nchunks();
        self.chunks.retain(|&ci, _| ci < n);
        self.trim_tail();
    }

    /// Clears the bits past the last one of the bitmap in its last chunk
    /// (the specification requires them to be zero).
    fn trim_tail(&mut self) {
        let n = self.nbits();
        let bpc = self.bits_per_chunk();
        if n % bpc == 0 {
            return;
        }
        let last = n / bpc;
        if let Some(c) = self.chunks.get_mut(&last) {
            let used = n % bpc;
            let mut d = match c {
                Chunk::Ones => {
                    let mut d = vec![0u8; self.chunk_bytes as usize].into_boxed_slice();
                    set_range(&mut d, 0, used - 1);
                    d
                }
                Chunk::Data(d) => std::mem::take(d),
            };
            clear_from(&mut d, used);
            *c = Chunk::Data(d);
        }
    }

    /// The bytes of chunk `ci` as stored (`None`: all zero).
    pub fn chunk_bytes_of(&self, ci: u64) -> Option<Vec<u8>> {
        let bpc = self.bits_per_chunk();
        let n = self.nbits();
        let c = self.chunks.get(&ci)?;
        let mut d = match c {
            Chunk::Ones => vec![0xffu8; self.chunk_bytes as usize],
            Chunk::Data(d) => d.to_vec(),
        };
        if (ci + 1) * bpc > n {
            clear_from(&mut d, n - ci * bpc);
        }
        if d.iter().all(|&b| b == 0) {
            return None;
        }
        Some(d)
    }

    /// Loads chunk `ci` from stored bytes (zero chunks are not kept).
    pub fn load_chunk(&mut self, ci: u64, data: &[u8]) {
        if data.iter().all(|&b| b == 0) {
            return;
        }
        if data.iter().all(|&b| b == 0xff) {
            self.chunks.insert(ci, Chunk::Ones);
        } else {
            self.chunks.insert(ci, Chunk::Data(data.into()));
        }
    }
}

fn set_range(d: &mut [u8], lo: u64, hi: u64) {
    let mut i = lo;
    while i <= hi {
        if i % 8 == 0 && i + 7 <= hi {
            d[(i / 8) as usize] = 0xff;
            i += 8;
        } else {
            d[(i / 8) as usize] |= 1 << (i % 8);
            i += 1;
        }
    }
}

fn clear_from(d: &mut [u8], from: u64) {
    let byte = (from / 8) as usize;
    if byte < d.len() {
        if from % 8 != 0 {
            d[byte] &= (1u8 << (from % 8)) - 1;
            d[byte + 1..].fill(0);
        } else {
            d[byte..].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_ranges() {
        // 1 MiB disk, 4 KiB granularity: 256 bits in one 512-byte chunk.
        let mut b = DirtyBitmap::new(12, 1 << 20, 512);
        b.mark(4096, 1);
        b.mark(8191, 2); // bits 1 and 2
        b.mark((1 << 20) - 1, 100); // last bit, clamped
        assert!(b.get(1) && b.get(2) && b.get(255) && !b.get(0) && !b.get(3));
        assert_eq!(
            b.dirty_ranges(),
            vec![(4096, 12288), ((1 << 20) - 4096, 1 << 20)]
        );
        let d = b.chunk_bytes_of(0).unwrap();
        assert_eq!(d[0], 0b110);
        assert_eq!(d[31], 0x80);
        assert!(d[32..].iter().all(|&x| x == 0));
        b.clear();
        assert!(b.chunk_bytes_of(0).is_none());
    }

    #[test]
    fn whole_chunks_and_resize() {
        // 64 bits per 8-byte chunk, granularity 512: 32 KiB per chunk.
        let mut b = DirtyBitmap::new(9, 100 * 1024, 8);
        assert_eq!(b.nbits(), 200);
        assert_eq!(b.nchunks(), 4);
        b.mark(0, 100 * 1024);
        assert_eq!(b.chunks.get(&0), Some(&Chunk::Ones));
        // The last chunk holds 8 bits only; the tail is clear when stored.
        let last = b.chunk_bytes_of(3).unwrap();
        assert_eq!(last, vec![0xff, 0, 0, 0, 0, 0, 0, 0]);
        b.resize(40 * 1024);
        assert_eq!(b.nchunks(), 2);
        assert_eq!(b.dirty_ranges(), vec![(0, 40 * 1024)]);
        b.resize(100 * 1024);
        assert_eq!(b.dirty_ranges(), vec![(0, 40 * 1024)]);
        let mut c = DirtyBitmap::new(9, 100 * 1024, 8);
        c.mark(90 * 1024, 512);
        c.merge(&b);
        assert_eq!(
            c.dirty_ranges(),
            vec![(0, 40 * 1024), (90 * 1024, 90 * 1024 + 512)]
        );
        let mut d = DirtyBitmap::new(16, 100 * 1024, 8);
        d.merge(&c);
        assert_eq!(d.dirty_ranges(), vec![(0, 100 * 1024)]);
    }
}
