//! Feature bits and the feature-name table header extension.

/// Incompatible bit 0: the image was not closed cleanly (lazy refcounts).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible bit 1: the image is corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible bit 2: an external data file is used.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible bit 3: the compression type field is used.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible bit 4: extended L2 entries.
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Every incompatible bit this driver understands.
pub const INCOMPAT_KNOWN: u64 = 0x1f;

/// Compatible bit 0: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;

/// Autoclear bit 0: bitmaps are consistent.
pub const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
/// Autoclear bit 1: the external data file is a valid raw image.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;
/// Autoclear bits a writer of this driver keeps (it does not maintain bitmaps).
pub const AUTOCLEAR_KEPT: u64 = AUTOCLEAR_DATA_FILE_RAW;

/// Feature table kind: incompatible.
pub const KIND_INCOMPAT: u8 = 0;
/// Feature table kind: compatible.
pub const KIND_COMPAT: u8 = 1;
/// Feature table kind: autoclear.
pub const KIND_AUTOCLEAR: u8 = 2;

const ENTRY_LEN: usize = 48;
const NAME_LEN: usize = 46;

/// One entry of the feature-name table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    /// Bit number.
    pub bit: u8,
    /// The name (NUL padding stripped).
    pub name: String,
}

/// Parses the feature-name table extension data (bounded by its length).
pub fn parse_table(data: &[u8]) -> Vec<FeatureName> {
    data.chunks_exact(ENTRY_LEN)
        .map(|e| {
            let raw = &e[2..];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            FeatureName {
                kind: e[0],
                bit: e[1],
                name: String::from_utf8_lossy(&raw[..end]).into_owned(),
            }
        })
        .collect()
}

/// The feature names this driver writes (the same set QEMU writes).
pub fn qemu_table() -> Vec<u8> {
    let names: [(u8, u8, &str); 8] = [
        (KIND_INCOMPAT, 0, "dirty bit"),
        (KIND_INCOMPAT, 1, "corrupt bit"),
        (KIND_INCOMPAT, 2, "external data file"),
        (KIND_INCOMPAT, 3, "compression type"),
        (KIND_INCOMPAT, 4, "extended L2 entries"),
        (KIND_COMPAT, 0, "lazy refcounts"),
        (KIND_AUTOCLEAR, 0, "bitmaps"),
        (KIND_AUTOCLEAR, 1, "raw external data"),
    ];
    let mut out = vec![0u8; names.len() * ENTRY_LEN];
    for (i, (k, b, n)) in names.iter().enumerate() {
        let e = &mut out[i * ENTRY_LEN..(i + 1) * ENTRY_LEN];
        e[0] = *k;
        e[1] = *b;
        let n = &n.as_bytes()[..n.len().min(NAME_LEN)];
        e[2..2 + n.len()].copy_from_slice(n);
    }
    out
}

/// Names the set bits of `bits` from `table` (falling back to "Unknown
/// incompatible feature: `<mask>`" as QEMU prints), comma-separated.
pub fn describe_unknown(bits: u64, kind: u8, table: &[FeatureName]) -> String {
    let name = |bit: u8| match table.iter().find(|f| f.kind == kind && f.bit == bit) {
        Some(f) => f.name.clone(),
        None => format!("Unknown incompatible feature: {:x}", 1u64 << bit),
    };
    let set = (0..64u8).filter(|b| bits & (1u64 << b) != 0);
    set.map(name).collect::<Vec<_>>().join(", ")
}
