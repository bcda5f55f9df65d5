//! Thin safe wrappers over the Linux calls the file driver needs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// `fallocate(2)`; returns the OS error on failure.
pub fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall on a valid descriptor.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                mode,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True when an error means "this filesystem cannot do that".
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
    )
}

/// `lseek(2)` with SEEK_DATA or SEEK_HOLE. `Ok(None)` means ENXIO (no more data).
pub fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall on a valid descriptor.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// `fdatasync(2)`.
pub fn fdatasync(file: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    let r = unsafe { libc::fdatasync(file.as_raw_fd()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The bytes an unprivileged writer may still allocate on the filesystem
/// of `file` (`fstatvfs(2)`: available blocks times the fragment size).
pub fn available_bytes(file: &File) -> io::Result<u64> {
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on a valid descriptor and a valid out pointer.
    let r = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) };
    if r == 0 {
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The alignment O_DIRECT requests on `file` need, or 1 when the
/// descriptor is not open with O_DIRECT (buffered I/O takes any offset and
/// length). A block device answers with its logical block size
/// (`BLKSSZGET`); a regular file gets 4096, the largest logical block
/// size of the devices a file system may sit on.
pub fn direct_io_alignment(file: &File) -> u32 {
    // SAFETY: plain syscall on a valid descriptor.
    let fl = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 || fl & libc::O_DIRECT == 0 {
        return 1;
    }
    /// `BLKSSZGET` from <linux/fs.h>: `_IO(0x12, 104)`.
    const BLKSSZGET: libc::c_ulong = 0x1268;
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through a valid pointer; other
    // file types fail it with ENOTTY.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size) };
    if r == 0 && size > 0 && (size as u32).is_power_of_two() {
        size as u32
    } else {
        4096
    }
}
