//! The create protocol and exclusive locking against holders in this
//! process (each open file description is a holder of its own).

use crate::lock::{FileLock, LockSet};
use crate::node::{CreateAttrs, FileNode};
use block_core::{ErrorKind, OpenFlags, Preallocation};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Read-locks `bytes` of `path` through a new open file description.
fn foreign_holder(path: &Path, bytes: &[i64]) -> File {
    let f = File::open(path).unwrap();
    for &b in bytes {
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_RDLCK as i16;
        fl.l_whence = libc::SEEK_SET as i16;
        fl.l_start = b;
        fl.l_len = 1;
        // SAFETY: a valid fd and an initialised flock.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
    f
}

fn file_with_data(dir: &Path) -> (String, Vec<u8>) {
    let p = dir.join("img");
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    (p.to_str().unwrap().to_string(), data)
}

#[test]
fn create_over_a_held_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = file_with_data(dir.path());
    // A writer (QEMU refuses too), a reader, a holder that shares
    // everything, and a lock that is none of QEMU's bytes.
    let holders: [(&[i64], &str); 4] = [
        (&[100, 101, 103, 201, 203], "Failed to get \"write\" lock"),
        (&[100], "Failed to get shared \"consistent read\" lock"),
        (&[100, 101], "Failed to get shared \"write\" lock"),
        (&[0], "Failed to get \"write\" lock"),
    ];
    for (bytes, msg) in holders {
        let h = foreign_holder(Path::new(&path), bytes);
        let e = FileNode::create(&path, 1 << 20, Preallocation::Off, &CreateAttrs::default())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Busy, "{bytes:?}: {e}");
        assert!(e.message.starts_with(msg), "{bytes:?}: {e}");
        assert_eq!(std::fs::read(&path).unwrap(), data, "{bytes:?}");
        drop(h);
    }
    FileNode::create(&path, 1 << 20, Preallocation::Off, &CreateAttrs::default()).unwrap();
    let now = std::fs::read(&path).unwrap();
    assert_eq!(now.len(), 1 << 20);
    assert!(now.iter().all(|&b| b == 0), "an existing file is emptied");
}

#[test]
fn create_of_a_new_file_holds_no_lock_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new");
    let p = path.to_str().unwrap();
    FileNode::create(p, 1000, Preallocation::Off, &CreateAttrs::default()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
    // Nothing is left locked: an exclusive open succeeds.
    FileNode::open(p, OpenFlags::EXCLUSIVE, true).unwrap();
}

#[test]
fn exclusive_open_refuses_a_sharing_holder_that_a_writer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file_with_data(dir.path());
    // qemu-io -r on a raw image: consistent read only, shares everything.
    let _h = foreign_holder(Path::new(&path), &[100]);
    FileNode::open(&path, OpenFlags::NONE, true).expect("QEMU semantics allow it");
    let e = FileNode::open(&path, OpenFlags::EXCLUSIVE, true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    assert!(
        e.message
            .starts_with("Failed to get shared \"consistent read\" lock"),
        "{e}"
    );
}

#[test]
fn wanted_permissions_are_checked_before_unshared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file_with_data(dir.path());
    // qemu-nbd on a raw image: holds read and write, refuses to share
    // resize. QEMU's writer reports the resize conflict first.
    let _h = foreign_holder(Path::new(&path), &[100, 101, 203]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let e = FileLock::none()
        .acquire(&f, &path, LockSet::WRITER)
        .unwrap_err();
    assert!(
        e.message.starts_with("Failed to get \"resize\" lock"),
        "{e}"
    );
}

#[test]
fn create_that_cannot_have_its_size_leaves_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = file_with_data(dir.path());
    // Past i64::MAX: no filesystem takes it.
    let huge = 1u64 << 63;
    FileNode::create(&path, huge, Preallocation::Off, &CreateAttrs::default()).unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), data, "existing file changed");
    let new = dir.path().join("new");
    let p = new.to_str().unwrap();
    FileNode::create(p, huge, Preallocation::Off, &CreateAttrs::default()).unwrap_err();
    assert!(
        !new.exists(),
        "a file the failed create made is left behind"
    );
}
