//! The byte mapping between guest data and stored data.
//!
//! Each byte `b` is stored as `b ^ key`, except that `0` and `key` are
//! stored as themselves. The mapping is its own inverse (so one function
//! encodes and decodes) and keeps zeros zero, so a hole in the file reads
//! as guest zeros and the format can pass zeroing, discard and block status
//! straight to its file.

/// Maps every byte of `data` in place (encoding and decoding are the same).
pub fn apply(key: u8, data: &mut [u8]) {
    for b in data.iter_mut() {
        if *b != 0 && *b != key {
            *b ^= key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::apply;

    #[test]
    fn the_mapping_is_a_zero_keeping_involution_for_every_key() {
        let all: Vec<u8> = (0..=255).collect();
        for key in 1..=255u8 {
            let mut once = all.clone();
            apply(key, &mut once);
            assert_eq!(once[0], 0, "key {key}");
            let mut sorted = once.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, all, "key {key}: not one-to-one");
            apply(key, &mut once);
            assert_eq!(once, all, "key {key}: not its own inverse");
        }
        let mut one = [0x0fu8];
        apply(0xf0, &mut one);
        assert_eq!(one, [0xff]);
    }
}
