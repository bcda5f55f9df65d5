//! Image locking compatible with QEMU's, both ways, and the inactive state.

use blk_tests::{qemu_img_ok, qemu_io_ok, s, QemuHolder};
use block_core::{ErrorKind, Preallocation, ZeroFlags};
use plugin_host::{Host, OpenOptions};
use std::process::Command;

fn host() -> Host {
    Host::builder().env_plugin_path(false).build().unwrap()
}

fn raw_opts() -> OpenOptions {
    OpenOptions {
        format: Some("raw".into()),
        ..Default::default()
    }
}

#[test]
fn blk_writer_excludes_qemu_writer_and_reader() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let h = host();
    let i = h.open(s(&img), &raw_opts()).unwrap();
    i.write(0, &[1; 512]).unwrap();
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write 0 512", s(&img)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "qemu-io wrote to an image blk holds");
    assert!(err.contains("Failed to get \"write\" lock"), "{err}");
    assert!(err.contains("Is another process using the image"), "{err}");
    // With -U (force share) QEMU may always look.
    qemu_img_ok(&["info", "-U", s(&img)]);
    drop(i);
    qemu_io_ok(&["-f", "raw", "-c", "write 0 512", s(&img)]);
}

#[test]
fn qemu_writer_excludes_blk_writer() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("b.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&img), "1M"]);
    let holder = QemuHolder::spawn(&["-f", "qcow2"], &img, true);
    let h = host();
    let e = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("file".into()),
                ..Default::default()
            },
        )
        .err()
        .expect("second writer refused");
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("Failed to get \"write\" lock"), "{msg}");
    assert!(
        msg.contains(&format!(
            "Is another process using the image [{}]?",
            s(&img)
        )),
        "{msg}"
    );
    // Read-only without -U wants the write permission unshared: refused too.
    let e = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("file".into()),
                read_only: true,
                ..Default::default()
            },
        )
        .err()
        .expect("consistent reader refused");
    assert!(
        e.to_string()
            .contains("Failed to get shared \"write\" lock"),
        "{e}"
    );
    // -U (force share) opens read-only without locks.
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("file".into()),
                force_share: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut b = [0u8; 4];
    i.read(0, &mut b).unwrap();
    assert_eq!(&b, b"QFI\xfb");
    assert_eq!(i.write(0, &b).unwrap_err().kind, ErrorKind::ReadOnly);
    holder.stop();
    h.open(
        s(&img),
        &OpenOptions {
            format: Some("file".into()),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn two_blk_writers_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("c.raw");
    let h = host();
    h.create("raw", s(&img), "", Some(1 << 20), None).unwrap();
    let _a = h.open(s(&img), &raw_opts()).unwrap();
    let e = h
        .open(s(&img), &raw_opts())
        .err()
        .expect("second blk writer refused");
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
}

#[test]
fn inactive_open_holds_no_locks_and_activation_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    let holder = QemuHolder::spawn(&["-f", "raw"], &img, true);
    let h = host();
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                inactive: true,
                ..Default::default()
            },
        )
        .expect("inactive open ignores the other side's locks");
    let mut b = [0u8; 512];
    i.read(0, &mut b).unwrap();
    let e = i.activate().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy, "{e}");
    assert!(
        i.is_inactive(),
        "a failed activation leaves the image inactive"
    );
    holder.stop();
    i.activate().unwrap();
    assert!(!i.is_inactive());
    i.write(0, &[9; 512]).unwrap();
    assert!(blk_tests::is_locked(&img), "an active writer holds locks");
    i.inactivate().unwrap();
    assert!(
        !blk_tests::is_locked(&img),
        "an inactive node holds no locks"
    );
    // Once inactive, the other side may open and write.
    qemu_io_ok(&[
        "-f",
        "raw",
        "-c",
        "read -P 9 0 512",
        "-c",
        "write -P 7 0 512",
        s(&img),
    ]);
    i.activate().unwrap();
    i.read(0, &mut b).unwrap();
    assert_eq!(b, [7u8; 512]);
}

#[test]
fn inactive_image_refuses_every_change_and_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("e.raw");
    qemu_img_ok(&["create", "-f", "raw", s(&img), "1M"]);
    qemu_io_ok(&["-f", "raw", "-c", "write -P 0x3c 0 64k", s(&img)]);
    let before = std::fs::read(&img).unwrap();
    let h = host();
    let i = h
        .open(
            s(&img),
            &OpenOptions {
                format: Some("raw".into()),
                inactive: true,
                ..Default::default()
            },
        )
        .unwrap();
    let checks = [
        i.write(0, &[1; 512]).unwrap_err(),
        i.write_zeroes(0, 4096, ZeroFlags::MAY_UNMAP).unwrap_err(),
        i.discard(0, 4096).unwrap_err(),
        i.truncate(2 << 20, Preallocation::Off).unwrap_err(),
    ];
    for e in checks {
        assert_eq!(e.kind, ErrorKind::ReadOnly, "{e}");
        assert!(e.to_string().contains("image is inactive"), "{e}");
    }
    i.flush().unwrap();
    let mut b = vec![0u8; 65536];
    i.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x3c));
    drop(i);
    assert_eq!(
        before,
        std::fs::read(&img).unwrap(),
        "file changed while inactive"
    );
}
