//! The internal snapshot table: parsing with bounds, serialization, and the
//! conversion to [`SnapshotInfo`].

use crate::layout::header::{get_u32, get_u64, put_u32, put_u64, MAX_SNAPSHOTS_BYTES};
use block_core::engine::codec::{get_be16, put_be16, Endian, FieldReader};
use block_core::{BlockError, OpenRequest, Result, SnapshotInfo};

/// Largest extra-data area of one snapshot entry.
pub const MAX_EXTRA: u32 = 1024;
/// The extra-data size QEMU writes (vm_state_size_large, disk_size, icount).
pub const EXTRA_LEN: u32 = 24;

/// One snapshot table entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Offset of the snapshot's L1 table.
    pub l1_offset: u64,
    /// Entries of the snapshot's L1 table.
    pub l1_size: u32,
    /// Unique ID string.
    pub id: String,
    /// Name.
    pub name: String,
    /// Creation time, seconds.
    pub date_sec: u32,
    /// Creation time, nanoseconds.
    pub date_nsec: u32,
    /// Guest clock in nanoseconds.
    pub vm_clock_nsec: u64,
    /// VM state size.
    pub vm_state_size: u64,
    /// Virtual disk size at snapshot time.
    pub disk_size: Option<u64>,
    /// Instruction count (record/replay), `None` when absent or -1.
    pub icount: Option<u64>,
    /// Extra data beyond the fields known here (preserved verbatim).
    pub extra_tail: Vec<u8>,
}

block_core::fixed_fields! {
    /// The fields of a snapshot table entry kept as they are on disk (the
    /// lengths, the 32-bit VM state size and the extra data aside).
    EntryFields for Snapshot {
        l1_offset @ 0,
        l1_size @ 8,
        date_sec @ 16,
        date_nsec @ 20,
        vm_clock_nsec @ 24,
    }
}

impl Snapshot {
    /// Serializes the entry: the fixed part, the extra data QEMU writes
    /// (full VM state size, disk size, icount), the preserved extra tail,
    /// ID and name, padded to 8 bytes.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let mut h = [0u8; 40 + EXTRA_LEN as usize];
        EntryFields::encode(self, &mut h, Endian::Big);
        put_be16(&mut h, 12, self.id.len() as u16);
        put_be16(&mut h, 14, self.name.len() as u16);
        let vm_state_32 = self.vm_state_size.min(u64::from(u32::MAX)) as u32;
        put_u32(&mut h, 32, vm_state_32);
        put_u32(&mut h, 36, EXTRA_LEN + self.extra_tail.len() as u32);
        put_u64(&mut h, 40, self.vm_state_size);
        put_u64(&mut h, 48, self.disk_size.unwrap_or(0));
        put_u64(&mut h, 56, self.icount.unwrap_or(u64::MAX));
        out.extend_from_slice(&h);
        out.extend_from_slice(&self.extra_tail);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.resize(start + (out.len() - start).div_ceil(8) * 8, 0);
    }

    /// The public description.
    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            vm_state_size: self.vm_state_size,
            date_sec: u64::from(self.date_sec),
            date_nsec: u64::from(self.date_nsec),
            vm_clock_sec: self.vm_clock_nsec / 1_000_000_000,
            vm_clock_nsec: self.vm_clock_nsec % 1_000_000_000,
            icount: self.icount,
        }
    }
}

/// Parses `nb` entries from a reader of the table. `read(off, len)` returns
/// bytes relative to the table start. Every length is bounded before use.
pub fn parse_table(
    nb: u32,
    mut read: impl FnMut(u64, usize) -> Result<Vec<u8>>,
) -> Result<(Vec<Snapshot>, u64)> {
    let bad = |m: String| BlockError::corrupt("read snapshot table", m);
    let mut out = Vec::with_capacity(nb.min(1024) as usize);
    let mut off = 0u64;
    for i in 0..nb {
        if off + 40 > MAX_SNAPSHOTS_BYTES {
            return Err(bad("Snapshot table too large".into()));
        }
        let h = read(off, 40)?;
        let extra_size = get_u32(&h, 36);
        if extra_size > MAX_EXTRA {
            return Err(bad(format!(
                "Too much extra metadata in snapshot table entry {i}\nYou can force-remove this extra metadata with qemu-img check -r all"
            )));
        }
        let id_len = get_be16(&h, 12) as usize;
        let name_len = get_be16(&h, 14) as usize;
        let rest = extra_size as usize + id_len + name_len;
        let len = (40 + rest as u64).div_ceil(8) * 8;
        if off + len > MAX_SNAPSHOTS_BYTES {
            return Err(bad("Snapshot table too large".into()));
        }
        let mut sn = Snapshot {
            vm_state_size: u64::from(get_u32(&h, 32)),
            ..Snapshot::default()
        };
        let fields = FieldReader::new(&h, Endian::Big, "read snapshot table");
        EntryFields::decode(&mut sn, &fields)?;
        let r = read(off + 40, rest)?;
        let (extra, names) = r.split_at(extra_size as usize);
        let (id, name) = names.split_at(id_len);
        sn.id = String::from_utf8_lossy(id).into_owned();
        sn.name = String::from_utf8_lossy(name).into_owned();
        // The extra data's fields, each present when the area holds it.
        // Version 3 requires disk_size; an entry without it is incomplete
        // (QEMU opens it and `check` reports it), `disk_size` stays None.
        let field = |i: usize| (extra.len() >= 8 * (i + 1)).then(|| get_u64(extra, 8 * i));
        sn.vm_state_size = field(0).unwrap_or(sn.vm_state_size);
        sn.disk_size = field(1);
        sn.icount = field(2).filter(|&ic| ic != u64::MAX);
        sn.extra_tail = extra.get(24..).unwrap_or_default().to_vec();
        out.push(sn);
        off += len;
    }
    Ok((out, off))
}

/// Serializes a whole table.
pub fn serialize_table(sns: &[Snapshot]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sns {
        s.serialize(&mut out);
    }
    out
}

/// Which snapshot a view shows: by ID, by name, or both (both must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotSel {
    /// `snapshot.id`.
    pub id: Option<String>,
    /// `snapshot.name`.
    pub name: Option<String>,
}

impl SnapshotSel {
    /// The selection the open options ask for, if any.
    pub fn from_request(req: &OpenRequest) -> Option<SnapshotSel> {
        let sel = SnapshotSel {
            id: req.option("snapshot.id").map(str::to_string),
            name: req.option("snapshot.name").map(str::to_string),
        };
        (sel.id.is_some() || sel.name.is_some()).then_some(sel)
    }

    /// The index of the snapshot matching every given field (QEMU's
    /// `find_snapshot_by_id_and_name`).
    pub fn find(&self, snaps: &[Snapshot]) -> Option<usize> {
        snaps.iter().position(|s| {
            self.id.as_deref().is_none_or(|i| s.id == i)
                && self.name.as_deref().is_none_or(|n| s.name == n)
        })
    }
}
