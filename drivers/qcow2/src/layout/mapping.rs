//! Guest-to-host mapping: L1/L2 entry masks and the decoding of L2 entries
//! (standard, compressed, extended with subcluster bitmaps).

use block_core::engine::codec::{get_be64, put_be64};

/// Offset bits of an L1 entry.
pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Reserved bits of an L1 entry.
pub const L1E_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
/// Offset bits of a standard L2 entry.
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Reserved bits of a standard L2 entry.
pub const L2E_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// Offset bits of a refcount table entry.
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// Reserved bits of a refcount table entry.
pub const REFT_RESERVED_MASK: u64 = 0x1ff;
/// COPIED flag: refcount is exactly one.
pub const OFLAG_COPIED: u64 = 1 << 63;
/// Compressed cluster flag.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Zero cluster flag (standard L2 entries only).
pub const OFLAG_ZERO: u64 = 1;
/// Subclusters per cluster with extended L2.
pub const SUBCLUSTERS: u32 = 32;
/// All allocation bits of an extended L2 bitmap.
pub const BITMAP_ALL_ALLOC: u64 = 0xffff_ffff;
/// All zero bits of an extended L2 bitmap.
pub const BITMAP_ALL_ZERO: u64 = 0xffff_ffff_0000_0000;

/// The type of a cluster as given by its L2 entry (ignoring subclusters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterType {
    /// No host cluster: read the backing file or zeros.
    Unallocated,
    /// Reads as zeros, no host cluster.
    ZeroPlain,
    /// Reads as zeros, with a preallocated host cluster.
    ZeroAlloc,
    /// Data in a host cluster.
    Normal,
    /// Compressed data.
    Compressed,
}

/// The type of one subcluster (or, without extended L2, of the whole cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubType {
    /// Unallocated, cluster has no host offset.
    UnallocPlain,
    /// Unallocated subcluster of an allocated cluster.
    UnallocAlloc,
    /// Reads zeros, no host offset.
    ZeroPlain,
    /// Reads zeros, host cluster allocated.
    ZeroAlloc,
    /// Data at the host offset.
    Normal,
    /// Compressed cluster.
    Compressed,
    /// The bitmap is invalid for this entry.
    Invalid,
}

impl SubType {
    /// True when the subcluster reads as zeros.
    pub fn is_zero(self) -> bool {
        matches!(self, SubType::ZeroPlain | SubType::ZeroAlloc)
    }
}

/// Immutable image geometry: everything derived from fields that never
/// change while an image is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// True with extended L2 entries.
    pub extended_l2: bool,
    /// log2 of the refcount width.
    pub refcount_order: u32,
    /// True with an external data file.
    pub data_file: bool,
    /// qcow2 version.
    pub version: u32,
    /// Compression type (0 deflate, 1 zstd).
    pub compression_type: u8,
}

impl Geometry {
    /// Packs the geometry into one word (for atomic replacement).
    pub fn pack(&self) -> u64 {
        u64::from(self.cluster_bits)
            | u64::from(self.extended_l2) << 8
            | u64::from(self.refcount_order) << 16
            | u64::from(self.data_file) << 24
            | u64::from(self.version) << 32
            | u64::from(self.compression_type) << 40
    }
    /// The inverse of [`Geometry::pack`].
    pub fn unpack(w: u64) -> Geometry {
        Geometry {
            cluster_bits: (w & 0xff) as u32,
            extended_l2: (w >> 8) & 1 != 0,
            refcount_order: ((w >> 16) & 0xff) as u32,
            data_file: (w >> 24) & 1 != 0,
            version: ((w >> 32) & 0xff) as u32,
            compression_type: ((w >> 40) & 0xff) as u8,
        }
    }
    /// Cluster size in bytes.
    pub fn cs(&self) -> u64 {
        1 << self.cluster_bits
    }
    /// Offset within a cluster.
    pub fn in_cluster(&self, off: u64) -> u64 {
        off & (self.cs() - 1)
    }
    /// Start of the containing cluster.
    pub fn cluster_start(&self, off: u64) -> u64 {
        off & !(self.cs() - 1)
    }
    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cs() / self.l2_entry_size()
    }
    /// Bytes per L2 entry.
    pub fn l2_entry_size(&self) -> u64 {
        8 << u64::from(self.extended_l2)
    }
    /// Subcluster size (the cluster size without extended L2).
    pub fn sc_size(&self) -> u64 {
        self.cs() / u64::from(self.sc_count())
    }
    /// Subclusters per cluster (1 without extended L2).
    pub fn sc_count(&self) -> u32 {
        if self.extended_l2 {
            SUBCLUSTERS
        } else {
            1
        }
    }
    /// L1 index of a guest offset.
    pub fn l1_index(&self, off: u64) -> u64 {
        (off >> self.cluster_bits) / self.l2_entries()
    }
    /// L2 index of a guest offset.
    pub fn l2_index(&self, off: u64) -> u64 {
        (off >> self.cluster_bits) % self.l2_entries()
    }
    /// Entry `i` of the L2 table `table` and its subcluster bitmap (0
    /// without extended L2 entries).
    pub fn l2_entry(&self, table: &[u8], i: usize) -> (u64, u64) {
        let at = i * self.l2_entry_size() as usize;
        let bitmap = self.extended_l2.then(|| get_be64(table, at + 8));
        (get_be64(table, at), bitmap.unwrap_or(0))
    }
    /// Stores entry `i` of the L2 table `table` (with its bitmap when
    /// entries are extended).
    pub fn set_l2_entry(&self, table: &mut [u8], i: usize, entry: u64, bitmap: u64) {
        let at = i * self.l2_entry_size() as usize;
        put_be64(table, at, entry);
        if self.extended_l2 {
            put_be64(table, at + 8, bitmap);
        }
    }
    /// Refcount width in bits.
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }
    /// Refcount entries per refcount block.
    pub fn rb_entries(&self) -> u64 {
        (self.cs() * 8) >> self.refcount_order
    }
    /// Largest refcount value.
    pub fn max_refcount(&self) -> u64 {
        u64::MAX >> (64 - self.refcount_bits())
    }
    /// Bit position of the compressed-size field.
    pub fn csize_shift(&self) -> u32 {
        62 - (self.cluster_bits - 8)
    }
    /// Mask of the compressed-size field (after shifting).
    pub fn csize_mask(&self) -> u64 {
        (1u64 << (self.cluster_bits - 8)) - 1
    }
    /// Mask of the compressed host offset.
    pub fn coffset_mask(&self) -> u64 {
        (1u64 << self.csize_shift()) - 1
    }

    /// The type of a cluster from its L2 entry.
    pub fn cluster_type(&self, entry: u64) -> ClusterType {
        if entry & OFLAG_COMPRESSED != 0 {
            ClusterType::Compressed
        } else if entry & OFLAG_ZERO != 0 && !self.extended_l2 {
            if entry & L2E_OFFSET_MASK != 0 {
                ClusterType::ZeroAlloc
            } else {
                ClusterType::ZeroPlain
            }
        } else if entry & L2E_OFFSET_MASK == 0 {
            if self.data_file && entry & OFLAG_COPIED != 0 {
                ClusterType::Normal
            } else {
                ClusterType::Unallocated
            }
        } else {
            ClusterType::Normal
        }
    }

    /// The type of subcluster `sc` of an entry with `bitmap` (without
    /// extended L2 entries, the cluster's type).
    pub fn subcluster_type(&self, entry: u64, bitmap: u64, sc: u32) -> SubType {
        use ClusterType as C;
        let ext = self.extended_l2;
        let alloc = bitmap & (1u64 << sc) != 0;
        let zero = bitmap & (1u64 << (sc + 32)) != 0;
        match self.cluster_type(entry) {
            // Zero clusters exist without extended L2 entries only.
            C::ZeroPlain => SubType::ZeroPlain,
            C::ZeroAlloc => SubType::ZeroAlloc,
            C::Compressed if !ext || bitmap == 0 => SubType::Compressed,
            C::Normal if !ext => SubType::Normal,
            C::Unallocated if !ext => SubType::UnallocPlain,
            C::Compressed => SubType::Invalid,
            C::Normal if bitmap & (bitmap >> 32) != 0 => SubType::Invalid,
            C::Normal if alloc => SubType::Normal,
            C::Normal if zero => SubType::ZeroAlloc,
            C::Normal => SubType::UnallocAlloc,
            C::Unallocated if bitmap & BITMAP_ALL_ALLOC != 0 => SubType::Invalid,
            C::Unallocated if zero => SubType::ZeroPlain,
            C::Unallocated => SubType::UnallocPlain,
        }
    }

    /// Decodes a compressed entry into (host offset, byte count to read).
    pub fn compressed_range(&self, entry: u64) -> (u64, u64) {
        let off = entry & self.coffset_mask();
        let nb = ((entry >> self.csize_shift()) & self.csize_mask()) + 1;
        (off, nb * 512 - (off & 511))
    }

    /// Encodes a compressed entry for `len` bytes at host `off`.
    pub fn compressed_entry(&self, off: u64, len: u64) -> u64 {
        let nb = ((off + len - 1) >> 9) - (off >> 9);
        OFLAG_COMPRESSED | (nb << self.csize_shift()) | off
    }

    /// Host clusters (start offsets) a compressed entry occupies, as
    /// refcounts count them.
    pub fn compressed_clusters(&self, entry: u64) -> (u64, u64) {
        let off = entry & self.coffset_mask();
        let nb = ((entry >> self.csize_shift()) & self.csize_mask()) + 1;
        let start = off & !511;
        let first = self.cluster_start(start);
        let last = self.cluster_start(start + nb * 512 - 1);
        (first, (last - first) / self.cs() + 1)
    }
}
