//! libyal's readers, written apart from QEMU and from blk, must accept the
//! images blk writes: `qcowinfo` reads the header and tables and reports
//! the media size, and `qcowmount` (FUSE) exposes the guest data, which
//! must be the bytes blk wrote. (Debian: libqcow-utils; `.ci/run`
//! installs it.)

use blk_tests::{blk_ok, random_bytes, s};
use std::path::Path;
use std::process::Command;

/// Runs a libyal tool; missing tools fail the test (CI installs them).
fn tool(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} is needed (Debian libqcow-utils): {e}"))
}

/// The guest data a FUSE mount of `img` exposes, unmounted afterwards.
fn mounted_bytes(mount_tool: &str, img: &Path, dir: &Path) -> Vec<u8> {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(
        Path::new("/dev/fuse").exists(),
        "{mount_tool} needs /dev/fuse, which this machine lacks"
    );
    let out = tool(mount_tool, &[s(img), s(&mnt)]);
    assert!(out.status.success(), "{mount_tool}: {out:?}");
    let files: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let bytes = files.first().map(std::fs::read);
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success(), "umount {}", mnt.display());
    bytes
        .unwrap_or_else(|| panic!("{mount_tool} exposed no file: {files:?}"))
        .unwrap()
}

#[test]
fn qcowinfo_and_qcowmount_read_qcow2_images_blk_writes() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8u64 << 20;
    let mut data = vec![0u8; size as usize];
    data[..100_000].copy_from_slice(&random_bytes(31, 100_000));
    data[5 << 20..(5 << 20) + 70_001].copy_from_slice(&random_bytes(32, 70_001));
    // Compressible text, so `-c` writes compressed clusters.
    for (i, b) in data[2 << 20..(2 << 20) + 300_000].iter_mut().enumerate() {
        *b = b"blk writes, libqcow reads. "[i % 27];
    }
    let raw = dir.path().join("data.raw");
    std::fs::write(&raw, &data).unwrap();
    for (k, (opts, compress)) in [
        ("cluster_size=65536", false),
        ("cluster_size=4096", false),
        ("cluster_size=2097152", false),
        ("compat=0.10", false),
        ("cluster_size=65536", true),
    ]
    .into_iter()
    .enumerate()
    {
        let img = dir.path().join(format!("img{k}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2", "-o", opts];
        if compress {
            args.push("-c");
        }
        args.extend([s(&raw), s(&img)]);
        blk_ok(&args);
        let chk = blk_tests::qemu_img_ok(&["check", s(&img)]);
        assert_eq!(
            !chk.contains(" 0.00% compressed"),
            compress,
            "compressed clusters {opts}: {chk}"
        );
        let out = tool("qcowinfo", &[s(&img)]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "qcowinfo {opts}: {out:?}");
        assert!(
            text.contains(&format!("({size} bytes)")),
            "qcowinfo {opts} media size: {text}"
        );
        assert!(
            mounted_bytes("qcowmount", &img, dir.path()) == data,
            "qcowmount {opts} (compressed: {compress}): other bytes than blk wrote"
        );
    }
}
