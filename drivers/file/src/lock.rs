//! Image locking compatible with QEMU's file-posix scheme.
//!
//! Permission bit *i* maps to two lock bytes: `100 + i` is read-locked while
//! we hold the permission, `200 + i` while we refuse to share it. Locks are
//! OFD locks (per open file description, so two opens in one process exclude
//! each other too), falling back to POSIX locks where OFD locks are missing.
//! After taking our bytes we test the bytes of the other side: someone holding
//! `200 + i` while we want permission *i* means "Failed to get "X" lock";
//! someone holding `100 + i` while we refuse to share *i* means
//! "Failed to get shared "X" lock". As QEMU's `raw_check_lock_bytes`, every
//! wanted permission is tested before any unshared one.
//!
//! **Exclusive** use (creating, truncating or overwriting an image, see
//! docs/data-safety.md) is stricter than QEMU: after the QEMU-compatible
//! check of the node's own set and then of a writer's (so that the message
//! is QEMU's wherever QEMU refuses too), every permission is taken and none
//! is shared, and a lock of any other process on any byte of the file
//! refuses. A holder that shares write and resize
//! (`qemu-io -f raw`) therefore keeps blk from zeroing its image, which
//! `qemu-img create` does not.

use block_core::{BlockError, ErrorKind, Result};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// Consistent read permission.
pub const PERM_CONSISTENT_READ: u8 = 1 << 0;
/// Write permission.
pub const PERM_WRITE: u8 = 1 << 1;
/// Write-unchanged permission.
pub const PERM_WRITE_UNCHANGED: u8 = 1 << 2;
/// Resize permission.
pub const PERM_RESIZE: u8 = 1 << 3;

const PERM_NAMES: [&str; 4] = ["consistent read", "write", "write unchanged", "resize"];
const PERM_BASE: i64 = 100;
/// How often a conflicting lock is retried (10 ms apart) before failing.
const LOCK_RETRIES: u32 = 5;
const SHARED_BASE: i64 = 200;

/// The permissions a node takes and the ones it refuses to share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSet {
    /// Permissions held.
    pub perms: u8,
    /// Permissions not shared with others.
    pub unshared: u8,
}

impl LockSet {
    /// A writer: reads, writes and resizes, and shares neither write nor resize.
    pub const WRITER: LockSet = LockSet {
        perms: PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE,
        unshared: PERM_WRITE | PERM_RESIZE,
    };
    /// A reader that wants consistent data: refuses to share write (as qemu-img).
    pub const READER: LockSet = LockSet {
        perms: PERM_CONSISTENT_READ,
        unshared: PERM_WRITE,
    };
    /// What QEMU's file protocol takes to create a file (`raw_co_create`):
    /// write and resize, sharing everything but resize.
    pub const CREATE: LockSet = LockSet {
        perms: PERM_WRITE | PERM_RESIZE,
        unshared: PERM_RESIZE,
    };
    /// Every permission, none shared: the set of exclusive use.
    pub const ALL: LockSet = LockSet {
        perms: PERM_ALL,
        unshared: PERM_ALL,
    };
}

const PERM_ALL: u8 = PERM_CONSISTENT_READ | PERM_WRITE | PERM_WRITE_UNCHANGED | PERM_RESIZE;

#[derive(Clone, Copy)]
enum Flavor {
    Ofd,
    Posix,
}

fn fcntl_lock(
    file: &File,
    flavor: Flavor,
    cmd_get: bool,
    ltype: i16,
    byte: i64,
    len: i64,
) -> io::Result<libc::flock> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ltype;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = len;
    fl.l_pid = 0;
    let cmd = match (flavor, cmd_get) {
        (Flavor::Ofd, false) => libc::F_OFD_SETLK,
        (Flavor::Ofd, true) => libc::F_OFD_GETLK,
        (Flavor::Posix, false) => libc::F_SETLK,
        (Flavor::Posix, true) => libc::F_GETLK,
    };
    // SAFETY: fcntl with a valid fd and a properly initialised flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(fl)
    }
}

fn flavor_for(file: &File) -> Flavor {
    // Probe OFD support with a harmless query on a byte nobody uses.
    match fcntl_lock(file, Flavor::Ofd, true, libc::F_WRLCK as i16, 399, 1) {
        Ok(_) => Flavor::Ofd,
        Err(_) => Flavor::Posix,
    }
}

/// The lock bytes a file currently holds.
#[derive(Debug)]
pub struct FileLock {
    held: Option<LockSet>,
}

impl FileLock {
    /// No locks held.
    pub fn none() -> FileLock {
        FileLock { held: None }
    }

    /// The set held, if any.
    pub fn held(&self) -> Option<LockSet> {
        self.held
    }

    /// Takes `set` on `file` (releasing whatever was held before) and checks
    /// for conflicts with other holders. On conflict nothing stays held.
    ///
    /// A conflict is retried a few times over ~50 ms before it is reported:
    /// OFD locks belong to the open file description, and a process that
    /// forks (to run a helper program) while another thread closes an image
    /// briefly keeps that description, and its locks, alive until the child
    /// execs. A real owner holds its locks far longer.
    pub fn acquire(&mut self, file: &File, path: &str, set: LockSet) -> Result<()> {
        self.acquire_with(file, path, set, false)
    }

    /// As [`FileLock::acquire`], then exclusively: every permission is taken
    /// and none shared, and a lock of any other holder on any byte of the
    /// file is a conflict. Conflicts that `set` alone has are reported first,
    /// with QEMU's message for them.
    pub fn acquire_exclusive(&mut self, file: &File, path: &str, set: LockSet) -> Result<()> {
        self.acquire_with(file, path, set, true)
    }

    fn acquire_with(&mut self, file: &File, path: &str, set: LockSet, excl: bool) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.try_acquire(file, path, set, excl) {
                Err(e) if e.kind == ErrorKind::Busy && attempt < LOCK_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => return r,
            }
        }
    }

    fn try_acquire(&mut self, file: &File, path: &str, set: LockSet, excl: bool) -> Result<()> {
        self.release(file);
        let flavor = flavor_for(file);
        let taken = if excl { LockSet::ALL } else { set };
        let r = lock_bytes(file, flavor, path, set)
            .and_then(|()| check_conflicts(file, flavor, path, set))
            .and_then(|()| {
                if excl {
                    lock_bytes(file, flavor, path, LockSet::ALL)?;
                    check_exclusive(file, flavor, path)
                } else {
                    Ok(())
                }
            });
        match r {
            Ok(()) => {
                self.held = Some(taken);
                Ok(())
            }
            Err(e) => {
                release_all(file, flavor);
                Err(e)
            }
        }
    }

    /// Releases every lock byte.
    pub fn release(&mut self, file: &File) {
        if self.held.take().is_some() {
            release_all(file, flavor_for(file));
        }
    }
}

/// Read-locks the bytes of `set` (held permissions and unshared ones).
fn lock_bytes(file: &File, flavor: Flavor, path: &str, set: LockSet) -> Result<()> {
    let err = |e: io::Error| BlockError::from_io("lock", e).in_file(path);
    for i in 0..PERM_NAMES.len() as i64 {
        let name = PERM_NAMES[i as usize];
        if set.perms & (1 << i) != 0 {
            fcntl_lock(file, flavor, false, libc::F_RDLCK as i16, PERM_BASE + i, 1)
                .map_err(|e| conflict_or(e, path, name, false).unwrap_or_else(err))?;
        }
        if set.unshared & (1 << i) != 0 {
            fcntl_lock(
                file,
                flavor,
                false,
                libc::F_RDLCK as i16,
                SHARED_BASE + i,
                1,
            )
            .map_err(|e| conflict_or(e, path, name, true).unwrap_or_else(err))?;
        }
    }
    Ok(())
}

/// QEMU's check: every wanted permission against the others' unshared
/// bytes, then every unshared permission against the others' holdings.
fn check_conflicts(file: &File, flavor: Flavor, path: &str, set: LockSet) -> Result<()> {
    for i in 0..PERM_NAMES.len() as i64 {
        if set.perms & (1 << i) != 0 && held_by_other(file, flavor, SHARED_BASE + i, 1) {
            return Err(conflict(path, PERM_NAMES[i as usize], false));
        }
    }
    for i in 0..PERM_NAMES.len() as i64 {
        if set.unshared & (1 << i) != 0 && held_by_other(file, flavor, PERM_BASE + i, 1) {
            return Err(conflict(path, PERM_NAMES[i as usize], true));
        }
    }
    Ok(())
}

/// No other holder at all. First the conflicts of a writer (what QEMU's
/// format open after a create meets, so its message where it refuses
/// there), then QEMU's check for every permission unshared, then any lock
/// on any byte of the file (a holder that is not QEMU's kind).
fn check_exclusive(file: &File, flavor: Flavor, path: &str) -> Result<()> {
    check_conflicts(file, flavor, path, LockSet::WRITER)?;
    check_conflicts(file, flavor, path, LockSet::ALL)?;
    if held_by_other(file, flavor, 0, 0) {
        return Err(conflict(path, "write", false));
    }
    Ok(())
}

fn release_all(file: &File, flavor: Flavor) {
    for i in 0..PERM_NAMES.len() as i64 {
        let _ = fcntl_lock(file, flavor, false, libc::F_UNLCK as i16, PERM_BASE + i, 1);
        let _ = fcntl_lock(
            file,
            flavor,
            false,
            libc::F_UNLCK as i16,
            SHARED_BASE + i,
            1,
        );
    }
}

/// Whether another holder has a lock on `len` bytes from `byte` (0: to the
/// end of the file).
fn held_by_other(file: &File, flavor: Flavor, byte: i64, len: i64) -> bool {
    match fcntl_lock(file, flavor, true, libc::F_WRLCK as i16, byte, len) {
        Ok(fl) => fl.l_type != libc::F_UNLCK as i16,
        Err(_) => false,
    }
}

fn conflict(path: &str, name: &str, shared: bool) -> BlockError {
    let what = if shared { "shared " } else { "" };
    BlockError::new(
        ErrorKind::Busy,
        "",
        format!(
            "Failed to get {what}\"{name}\" lock\nIs another process using the image [{path}]?"
        ),
    )
    .in_file(path)
}

fn conflict_or(
    e: io::Error,
    path: &str,
    name: &str,
    shared: bool,
) -> std::result::Result<BlockError, io::Error> {
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(conflict(path, name, shared)),
        _ => Err(e),
    }
}
