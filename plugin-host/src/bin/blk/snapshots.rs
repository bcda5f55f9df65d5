//! The snapshot table and JSON objects as QEMU prints them.

use crate::human::size_to_str;
use crate::qjson::QObj;
use block_core::SnapshotInfo;

/// The QAPI `SnapshotInfo` object.
pub fn snapshot_qobj(s: &SnapshotInfo) -> QObj {
    let mut d = QObj::dict();
    d.put("id", s.id.as_str());
    d.put("name", s.name.as_str());
    d.put("vm-state-size", s.vm_state_size);
    d.put("date-sec", s.date_sec);
    d.put("date-nsec", s.date_nsec);
    d.put("vm-clock-sec", s.vm_clock_sec);
    d.put("vm-clock-nsec", s.vm_clock_nsec);
    d.put_opt("icount", s.icount);
    d
}

/// `YYYY-MM-DD HH:MM:SS` in local time.
fn local_date(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return "1970-01-01 00:00:00".to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The header and one line per snapshot (`bdrv_snapshot_dump`).
pub fn snapshot_table(snaps: &[SnapshotInfo]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}",
        "ID", "TAG", "VM_SIZE", "DATE", "VM_CLOCK", "ICOUNT"
    )];
    for s in snaps {
        let nsec = s.vm_clock_sec.saturating_mul(1_000_000_000) + s.vm_clock_nsec;
        let secs = nsec / 1_000_000_000;
        let clock = format!(
            "{:04}:{:02}:{:02}.{:03}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            (nsec / 1_000_000) % 1000
        );
        // bdrv_snapshot_dump prints "--" for an icount of -1 (none).
        let icount = s
            .icount
            .map(|i| i.to_string())
            .unwrap_or_else(|| "--".to_string());
        lines.push(format!(
            "{:<7} {:<16} {:>8} {:>19} {:>15} {:>10}",
            s.id,
            s.name,
            size_to_str(s.vm_state_size),
            local_date(s.date_sec),
            clock,
            icount
        ));
    }
    lines
}
