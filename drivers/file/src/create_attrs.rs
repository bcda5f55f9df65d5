//! File attributes set while creating an image file, as QEMU's file-posix
//! create does: `nocow` (the `FS_NOCOW_FL` inode flag, for btrfs; a failure
//! is ignored, the flag is an optimisation) and `extent_size_hint` (the
//! `FS_IOC_FSSETXATTR` extent size hint; a failure only warns, and only when
//! the hint was given explicitly and is not 0).

use std::fs::File;
use std::os::fd::AsRawFd;

/// `FS_NOCOW_FL` of `<linux/fs.h>`.
const FS_NOCOW_FL: libc::c_int = 0x0080_0000;
/// `FS_XFLAG_EXTSIZE` of `<linux/fs.h>`.
const FS_XFLAG_EXTSIZE: u32 = 0x0000_0800;

/// `struct fsxattr` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `_IOC(dir, 'X', nr, sizeof(struct fsxattr))` for the FS xattr ioctls.
const fn xattr_ioctl(dir: u64, nr: u64) -> u64 {
    (dir << 30) | ((std::mem::size_of::<FsXattr>() as u64) << 16) | ((b'X' as u64) << 8) | nr
}
const FS_IOC_FSGETXATTR: u64 = xattr_ioctl(2, 31);
const FS_IOC_FSSETXATTR: u64 = xattr_ioctl(1, 32);

/// Sets the no-copy-on-write flag; errors are ignored as QEMU ignores them.
pub fn set_nocow(file: &File) {
    let mut attr: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through the
    // pointer, which is valid for the duration of the calls.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS as _, &mut attr) == 0 {
            attr |= FS_NOCOW_FL;
            libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS as _, &attr);
        }
    }
}

/// Sets the extent size hint; returns the errno of a failure.
pub fn set_extent_size_hint(file: &File, hint: u32) -> Result<(), i32> {
    let mut attr = FsXattr::default();
    // SAFETY: the FS xattr ioctls read and write one `struct fsxattr`
    // through the pointer, which is valid for the duration of the calls.
    let r = unsafe {
        let mut r = libc::ioctl(file.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut attr);
        if r == 0 {
            attr.xflags |= FS_XFLAG_EXTSIZE;
            attr.extsize = hint;
            r = libc::ioctl(file.as_raw_fd(), FS_IOC_FSSETXATTR as _, &attr);
        }
        r
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ioctl_numbers_match_linux() {
        assert_eq!(std::mem::size_of::<super::FsXattr>(), 28);
        assert_eq!(super::FS_IOC_FSGETXATTR, 0x801c_581f);
        assert_eq!(super::FS_IOC_FSSETXATTR, 0x401c_5820);
    }
}
