//! The qcow2 header: parsing with every hostile-image bound, header
//! extensions, and serialization of cluster 0.
//!
//! All fields are big-endian. Nothing here allocates a buffer sized by an
//! untrusted field before that field has been checked against a limit.

use crate::layout::features::{self, FeatureName};
use crate::layout::mapping::Geometry;
use block_core::{BlockError, Result};

/// The magic bytes `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;
/// Size of a version-2 header.
pub const V2_HEADER_LEN: u32 = 72;
/// Size of the version-3 header QEMU writes (with compression type + padding).
pub const V3_HEADER_LEN: u32 = 112;
/// Smallest cluster_bits accepted.
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster_bits accepted.
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Largest active L1 table in bytes.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table in bytes.
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Most snapshots an image may have.
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Largest snapshot table in bytes.
pub const MAX_SNAPSHOTS_BYTES: u64 = 64 << 20;
/// Host offsets must be below this.
pub const MAX_HOST_OFFSET: u64 = 1 << 56;
/// Legacy AES-CBC encryption (`crypt_method` 1).
pub const CRYPT_AES: u32 = 1;
/// LUKS encryption (`crypt_method` 2).
pub const CRYPT_LUKS: u32 = 2;
/// Longest backing file name.
pub const MAX_BACKING_NAME: u32 = 1023;

/// Header extension: end of the list.
pub const EXT_END: u32 = 0;
/// Header extension: backing file format name.
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: feature name table.
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
/// Header extension: persistent bitmaps (preserved, not interpreted).
pub const EXT_BITMAPS: u32 = 0x2385_2875;
/// Header extension: full disk encryption header.
pub const EXT_CRYPTO: u32 = 0x0537_be77;
/// Header extension: external data file name.
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// A parsed and validated qcow2 header with its extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Offset of the backing file name in cluster 0 (0: none).
    pub backing_file_offset: u64,
    /// Length of the backing file name.
    pub backing_file_size: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    /// Encryption method: 0 none, 1 AES, 2 LUKS (described, not decrypted).
    pub crypt_method: u32,
    /// Entries of the active L1 table.
    pub l1_size: u32,
    /// Offset of the active L1 table.
    pub l1_table_offset: u64,
    /// Offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Number of internal snapshots.
    pub nb_snapshots: u32,
    /// Offset of the snapshot table.
    pub snapshots_offset: u64,
    /// Incompatible feature bits.
    pub incompatible_features: u64,
    /// Compatible feature bits.
    pub compatible_features: u64,
    /// Autoclear feature bits.
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits.
    pub refcount_order: u32,
    /// Length of the header proper (v3).
    pub header_length: u32,
    /// 0 deflate, 1 zstd.
    pub compression_type: u8,
    /// Backing file name.
    pub backing_file: Option<String>,
    /// Backing format from the extension.
    pub backing_format: Option<String>,
    /// External data file name from the extension.
    pub data_file: Option<String>,
    /// The feature-name table as stored.
    pub feature_names: Vec<FeatureName>,
    /// Extensions we do not interpret (bitmaps, unknown), preserved verbatim.
    pub other_extensions: Vec<(u32, Vec<u8>)>,
}

// The field accessors are the engine codec's (big-endian): qcow2's
// tables and header are read and written with them.
use block_core::engine::codec::get_be32 as be32;
pub use block_core::engine::codec::{
    get_be32 as get_u32, get_be64 as get_u64, put_be32 as put_u32, put_be64 as put_u64,
};
use block_core::engine::codec::{Endian, FieldReader, TableRules};
use block_core::engine::extensions::ExtensionLayout;

/// The header extensions after the header in cluster 0: big-endian type
/// and length, data padded to 8 bytes, ended by type 0 ([`EXT_END`]).
const EXTENSIONS: ExtensionLayout = ExtensionLayout {
    endian: Endian::Big,
    type_bytes: 4,
    len_at: 4,
    header_bytes: 8,
    align: 8,
    area_name: "cluster 0",
};

block_core::fixed_fields! {
    /// The fields of a version-2 header (the magic aside), at their offsets.
    V2Fields for Header {
        version @ 4,
        backing_file_offset @ 8,
        backing_file_size @ 16,
        cluster_bits @ 20,
        size @ 24,
        crypt_method @ 32,
        l1_size @ 36,
        l1_table_offset @ 40,
        refcount_table_offset @ 48,
        refcount_table_clusters @ 56,
        nb_snapshots @ 60,
        snapshots_offset @ 64,
    }
}

block_core::fixed_fields! {
    /// The fields version 3 adds (the compression type is read only when
    /// the header length includes it).
    V3Fields for Header {
        incompatible_features @ 72,
        compatible_features @ 80,
        autoclear_features @ 88,
        refcount_order @ 96,
        header_length @ 100,
    }
}

/// Accessors of single feature bits, `name: field & BIT` (a bit of
/// [`features`]), each with its doc comment.
macro_rules! feature_bits {
    ($($(#[$doc:meta])* $name:ident: $field:ident & $bit:ident;)*) => {
        impl Header {
            $($(#[$doc])* pub fn $name(&self) -> bool { self.$field & features::$bit != 0 })*
        }
    };
}

feature_bits! {
    /// True when extended L2 entries (subclusters) are in use.
    extended_l2: incompatible_features & INCOMPAT_EXTL2;
    /// True when an external data file is in use.
    has_data_file: incompatible_features & INCOMPAT_DATA_FILE;
    /// True when the external data file is kept a valid raw image.
    data_file_raw: autoclear_features & AUTOCLEAR_DATA_FILE_RAW;
    /// True when lazy refcounts are enabled.
    lazy_refcounts: compatible_features & COMPAT_LAZY_REFCOUNTS;
    /// True when the dirty bit is set.
    is_dirty: incompatible_features & INCOMPAT_DIRTY;
    /// True when the corrupt bit is set.
    is_corrupt: incompatible_features & INCOMPAT_CORRUPT;
}

fn bad(msg: impl Into<String>) -> BlockError {
    BlockError::corrupt("open", msg)
}

fn unsupported(msg: impl Into<String>) -> BlockError {
    BlockError::unsupported_feature("open", msg)
}

impl Header {
    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    /// Where the refcount table is: (offset, clusters).
    pub fn reftable_place(&self) -> (u64, u64) {
        let clusters = self.refcount_table_clusters.into();
        (self.refcount_table_offset, clusters)
    }

    /// The geometry the header describes.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            cluster_bits: self.cluster_bits,
            extended_l2: self.extended_l2(),
            refcount_order: self.refcount_order,
            data_file: self.has_data_file(),
            version: self.version,
            compression_type: self.compression_type,
        }
    }

    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.geometry().l2_entries()
    }

    /// L1 entries needed to map `size` bytes.
    pub fn l1_entries_for(&self, size: u64) -> u64 {
        let per_l2 = self.l2_entries() << self.cluster_bits;
        size.div_ceil(per_l2)
    }

    /// Parses and validates the header in `buf` (the first cluster, or as
    /// much of it as the file holds). `file_len` bounds table offsets.
    pub fn parse(buf: &[u8], _file_len: u64) -> Result<Header> {
        // No magic (an empty file, /dev/null) is "not qcow2", as QEMU says,
        // before a short file is.
        if buf.len() < 4 || be32(buf, 0) != MAGIC {
            return Err(bad("Image is not in qcow2 format").with_op(""));
        }
        if buf.len() < V2_HEADER_LEN as usize {
            return Err(bad("image is too short to hold a qcow2 header"));
        }
        let mut h = Header {
            refcount_order: 4,
            header_length: V2_HEADER_LEN,
            ..Header::default()
        };
        let r = FieldReader::new(buf, Endian::Big, "open");
        V2Fields::decode(&mut h, &r)?;
        let version = h.version;
        if version != 2 && version != 3 {
            return Err(unsupported(format!("Unsupported qcow2 version {version}")));
        }
        let cluster_bits = h.cluster_bits;
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(bad(format!(
                "Unsupported cluster size: 2^{cluster_bits} (cluster_bits must be 9..=21)"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        if version == 3 {
            if buf.len() < 104 {
                return Err(bad("image is too short to hold a qcow2 v3 header"));
            }
            V3Fields::decode(&mut h, &r)?;
            let len = h.header_length;
            if len < 104 {
                return Err(bad(format!("qcow2 header too short ({len} bytes)")));
            }
            if u64::from(len) > cluster_size {
                return Err(bad("qcow2 header exceeds cluster size"));
            }
            if len % 8 != 0 {
                return Err(bad("qcow2 header length is not a multiple of 8"));
            }
            if len > 104 {
                h.compression_type = *buf.get(104).ok_or_else(|| bad("image is too short"))?;
            }
        }
        if h.refcount_order > 6 {
            let order = h.refcount_order;
            return Err(bad(format!(
                "Reference count entry width too large; may not exceed 64 bits (refcount_order {order})"
            )));
        }
        // Header extensions (read before the feature check so that unknown
        // incompatible bits can be named from the feature-name table).
        h.read_extensions(buf, cluster_size)?;

        let unknown = h.incompatible_features & !features::INCOMPAT_KNOWN;
        if unknown != 0 {
            let kind = features::KIND_INCOMPAT;
            let names = features::describe_unknown(unknown, kind, &h.feature_names);
            return Err(unsupported(format!(
                "Unsupported qcow2 feature(s): {names}"
            )));
        }
        // Encrypted images (AES, LUKS) are described but never decrypted
        // (crypto.rs); the crypto header extension is kept with the others.
        if h.crypt_method > CRYPT_LUKS {
            let msg = format!("Unsupported encryption method: {}", h.crypt_method);
            return Err(unsupported(msg));
        }
        let has_ct_bit = h.incompatible_features & features::INCOMPAT_COMPRESSION != 0;
        match (h.compression_type, has_ct_bit) {
            (0, true) => {
                return Err(bad(
                    "compression type incompatible feature bit set with zlib compression",
                ))
            }
            (1, false) => return Err(bad(
                "compression_type field is non-zero but the incompatible feature bit is not set",
            )),
            (0 | 1, _) => {}
            (t, _) => return Err(unsupported(format!("Unknown compression type {t}"))),
        }
        if h.extended_l2() && cluster_bits < 14 {
            return Err(bad(
                "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes",
            ));
        }
        // A data file without its name is allowed by QEMU (the name may
        // come from options); we require it.
        if h.has_data_file() != h.data_file.is_some() {
            return Err(bad(if h.has_data_file() {
                "missing data_file name in the image header"
            } else {
                "data file name given without the data file feature bit"
            }));
        }
        h.validate_tables()?;
        Ok(h)
    }

    fn read_extensions(&mut self, buf: &[u8], cluster_size: u64) -> Result<()> {
        let mut end = cluster_size.min(buf.len() as u64);
        if self.backing_file_offset != 0 {
            if self.backing_file_offset > cluster_size
                || self.backing_file_size > MAX_BACKING_NAME
                || self.backing_file_offset + u64::from(self.backing_file_size) > cluster_size
            {
                return Err(bad("Invalid backing file offset or name length"));
            }
            end = end.min(self.backing_file_offset);
            let o = self.backing_file_offset as usize;
            let e = o + self.backing_file_size as usize;
            if e > buf.len() {
                return Err(bad("backing file name lies past the end of the image"));
            }
            let name = String::from_utf8_lossy(&buf[o..e]).into_owned();
            self.backing_file = Some(name);
        }
        let area = &buf[..end as usize];
        for ext in EXTENSIONS.parse(area, self.header_length as usize, "open")? {
            let (ty, data) = (ext.kind as u32, ext.data);
            let name = || String::from_utf8_lossy(data).into_owned();
            match ty {
                EXT_BACKING_FORMAT if data.len() > 1023 => {
                    return Err(bad("backing format name too long"))
                }
                EXT_DATA_FILE if data.len() > 1023 => return Err(bad("data file name too long")),
                EXT_BACKING_FORMAT => self.backing_format = Some(name()),
                EXT_DATA_FILE => self.data_file = Some(name()),
                EXT_FEATURE_TABLE => self.feature_names = features::parse_table(data),
                _ => self.other_extensions.push((ty, data.to_vec())),
            }
        }
        // A missing end marker is tolerated (QEMU reads to the end of the area).
        Ok(())
    }

    /// How the header's tables must lie: cluster-aligned, below the
    /// limit on host offsets. A table past the end of the file is damage
    /// that a read-only open tolerates (it reads as zeros, open/damage.rs).
    fn table_rules(&self) -> TableRules {
        TableRules {
            op: "open",
            alignment: self.cluster_size(),
            unit: "cluster",
            max_end: MAX_HOST_OFFSET,
        }
    }

    fn validate_tables(&self) -> Result<()> {
        let rules = self.table_rules();
        if self.refcount_table_clusters == 0 || self.refcount_table_offset == 0 {
            return Err(bad("Image does not contain a reference count table"));
        }
        let rt_bytes = u64::from(self.refcount_table_clusters) * self.cluster_size();
        let rt_off = self.refcount_table_offset;
        rules.check(
            "Reference count table",
            rt_off,
            rt_bytes,
            MAX_REFTABLE_BYTES,
        )?;
        let n = self.nb_snapshots;
        if n > MAX_SNAPSHOTS {
            return Err(bad(format!("Too many snapshots ({n} > {MAX_SNAPSHOTS})")));
        }
        // Each entry is at least 40 bytes.
        let sn_bytes = u64::from(self.nb_snapshots) * 40;
        rules.check(
            "Snapshot table",
            self.snapshots_offset,
            sn_bytes,
            MAX_SNAPSHOTS_BYTES,
        )?;
        let l1_bytes = u64::from(self.l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(bad(format!("Active L1 table too large ({l1_bytes} bytes)")));
        }
        // The virtual size must be mappable by the L1 table.
        let max_size = (MAX_L1_BYTES / 8) * (self.l2_entries() << self.cluster_bits);
        if self.size > max_size || self.size > i64::MAX as u64 {
            return Err(bad(format!("Image size too large ({} bytes)", self.size)));
        }
        if self.l1_entries_for(self.size) > u64::from(self.l1_size) {
            return Err(bad("L1 table is too small for the image size"));
        }
        rules.check(
            "Active L1 table",
            self.l1_table_offset,
            l1_bytes,
            MAX_L1_BYTES,
        )
    }

    /// Serializes cluster 0: the header, the extensions QEMU writes (backing
    /// format, data file, feature-name table, preserved others), the end
    /// marker, and the backing file name. Updates `backing_file_offset` and
    /// `backing_file_size`. Fails if it does not fit in one cluster.
    pub fn serialize(&mut self) -> Result<Vec<u8>> {
        let cs = self.cluster_size() as usize;
        let mut b = vec![0u8; cs.max(V3_HEADER_LEN as usize)];
        let hlen = if self.version >= 3 {
            self.header_length.max(V3_HEADER_LEN)
        } else {
            V2_HEADER_LEN
        };
        if self.version >= 3 {
            self.header_length = hlen;
        }
        // Like QEMU, leave the feature-name table out with clusters of
        // 4 KiB and below: it would leave little room for a backing name.
        let table = (self.version >= 3 && cs > 4096).then(features::qemu_table);
        let bf = self.backing_format.as_deref().map(str::as_bytes);
        let df = self.data_file.as_deref().map(str::as_bytes);
        let named = [(EXT_BACKING_FORMAT, bf), (EXT_DATA_FILE, df)];
        let named = named
            .into_iter()
            .chain([(EXT_FEATURE_TABLE, table.as_deref())]);
        let others = self.other_extensions.iter().map(|(t, d)| (*t, &d[..]));
        let ext = named.filter_map(|(t, d)| Some((t, d?))).chain(others);
        let ext = ext.map(|(t, d)| (u64::from(t), d));
        let off = EXTENSIONS.write(&mut b[..cs], hlen as usize, ext, "write header")?;
        let name = self.backing_file.as_deref().unwrap_or_default();
        if name.len() > MAX_BACKING_NAME as usize || off + name.len() > cs {
            let msg = "backing file name too long";
            return Err(BlockError::invalid("write header", msg));
        }
        b[off..off + name.len()].copy_from_slice(name.as_bytes());
        let at = self.backing_file.as_ref().map_or(0, |_| off as u64);
        (self.backing_file_offset, self.backing_file_size) = (at, name.len() as u32);
        put_u32(&mut b, 0, MAGIC);
        V2Fields::encode(self, &mut b, Endian::Big);
        if self.version >= 3 {
            // header_length is hlen (set above).
            V3Fields::encode(self, &mut b, Endian::Big);
            b[104] = self.compression_type;
        }
        b.truncate(cs);
        Ok(b)
    }
}
