//! qcow2 live-migration handoffs with QEMU on the other side, repeated
//! handoffs against a shadow copy, and the control that shows a destination
//! skipping invalidation reads stale data (so these tests can fail).

use blk_tests::{qemu_img_ok, qemu_io_ok, s};
use plugin_host::{Host, Image, OpenOptions};
use rand::Rng;
use std::path::Path;
use std::process::Command;

fn host() -> Host {
    Host::builder().env_plugin_path(false).build().unwrap()
}

fn qcow2(inactive: bool) -> OpenOptions {
    OpenOptions {
        format: Some("qcow2".into()),
        inactive,
        ..Default::default()
    }
}

fn read_all(i: &Image) -> Vec<u8> {
    let mut b = vec![0u8; i.length().unwrap() as usize];
    i.read(0, &mut b).unwrap();
    b
}

/// Creates a 16 MiB qcow2 image (64 KiB clusters, so an L2 table covers 512 MiB;
/// with 4 KiB clusters one covers 2 MiB, and new writes far away need new L2 tables).
fn make_image(dir: &Path, cluster: &str) -> std::path::PathBuf {
    let img = dir.join("m.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        &format!("cluster_size={cluster}"),
        s(&img),
        "16M",
    ]);
    qemu_io_ok(&["-f", "qcow2", "-c", "write -P 0x11 0 1M", s(&img)]);
    img
}

/// Source QEMU writes new allocations and exits; destination blk, inactive
/// with warm caches, activates and reads exactly QEMU's data.
#[test]
fn qemu_source_blk_destination() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "4k");
    let h = host();
    let dst = h.open(s(&img), &qcow2(true)).unwrap();
    let before = read_all(&dst);
    assert!(before[..1 << 20].iter().all(|&b| b == 0x11));
    // The source writes in the window (new L2 tables and refcount updates).
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0xab 0 512k",
        "-c",
        "write -P 0xcd 6M 1M",
        "-c",
        "write -P 0xef 12M 64k",
        "-c",
        "flush",
        s(&img),
    ]);
    dst.activate().unwrap();
    let after = read_all(&dst);
    let mut want = before.clone();
    want[..512 << 10].fill(0xab);
    want[6 << 20..7 << 20].fill(0xcd);
    want[12 << 20..(12 << 20) + 65536].fill(0xef);
    assert!(
        after == want,
        "destination does not read the source's data after activation"
    );
    // The destination owns the image now and writes consistently.
    dst.write(8 << 20, &[0x42; 65536]).unwrap();
    dst.flush().unwrap();
    drop(dst);
    let out = qemu_img_ok(&["check", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "read -P 0x42 8M 64k",
        "-c",
        "read -P 0xcd 6M 1M",
        s(&img),
    ]);
}

/// The control: a destination that skips invalidation reads stale data.
#[test]
fn control_without_invalidation_reads_stale_data() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "4k");
    let h = host();
    let dst = h.open(s(&img), &qcow2(true)).unwrap();
    let before = read_all(&dst);
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0xcd 6M 1M",
        "-c",
        "flush",
        s(&img),
    ]);
    // No activate / invalidate: the cached L1/L2 tables say "unallocated".
    let stale = read_all(&dst);
    assert_eq!(
        stale, before,
        "without invalidation the destination still sees the old image"
    );
    assert!(
        stale[6 << 20..7 << 20].iter().all(|&b| b == 0),
        "stale view reads zeros"
    );
    // And the real handoff sees the new data.
    dst.activate().unwrap();
    let fresh = read_all(&dst);
    assert!(fresh[6 << 20..7 << 20].iter().all(|&b| b == 0xcd));
}

/// Source blk writes, flushes and inactivates (caches written back, dirty bit
/// cleared, locks released); QEMU then opens the image and reads blk's data.
#[test]
fn blk_source_qemu_destination() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("s.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on,cluster_size=4k",
        s(&img),
        "16M",
    ]);
    let h = host();
    let src = h.open(s(&img), &qcow2(false)).unwrap();
    src.write(0, &vec![0x5a; 3 << 20]).unwrap();
    src.write(10 << 20, &vec![0x6b; 65536]).unwrap();
    // While active, QEMU is locked out.
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "read 0 4k", s(&img)])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "QEMU opened an image blk holds active"
    );
    src.inactivate().unwrap();
    let info = qemu_img_ok(&["info", "--output=json", s(&img)]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        v["dirty-flag"], false,
        "inactivate clears the dirty bit: {info}"
    );
    let out = qemu_img_ok(&["check", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "read -P 0x5a 0 3M",
        "-c",
        "read -P 0x6b 10M 64k",
        "-c",
        "write -P 0x7c 12M 128k",
        s(&img),
    ]);
    // Back to blk: it activates and sees QEMU's write.
    src.activate().unwrap();
    let all = read_all(&src);
    assert!(all[12 << 20..(12 << 20) + 131072]
        .iter()
        .all(|&b| b == 0x7c));
    assert!(all[..3 << 20].iter().all(|&b| b == 0x5a));
}

/// Repeated handoffs between two blk instances with seeded random writes
/// checked against a shadow copy: nothing acknowledged is lost.
#[test]
fn repeated_handoffs_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("r.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        s(&img),
        "16M",
    ]);
    let h = host();
    let a = h.open(s(&img), &qcow2(false)).unwrap();
    let b = h.open(s(&img), &qcow2(true)).unwrap();
    let mut shadow = vec![0u8; 16 << 20];
    let mut r = blk_tests::rng(2024);
    let sides = [a, b];
    for round in 0..6 {
        let (active, passive) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let _ = read_all(&sides[passive]); // warm the passive side's caches
        for _ in 0..40 {
            let len = r.gen_range(1..200_000usize);
            let off = r.gen_range(0..(16 << 20) - len);
            let data = blk_tests::random_bytes(r.gen(), len);
            sides[active].write(off as u64, &data).unwrap();
            shadow[off..off + len].copy_from_slice(&data);
        }
        if round % 3 == 1 {
            let off = r.gen_range(0..(8 << 20));
            sides[active].discard(off as u64, 1 << 20).unwrap();
            // discard leaves unspecified content: read what it left as truth
            let mut b = vec![0u8; 1 << 20];
            sides[active].read(off as u64, &mut b).unwrap();
            shadow[off..off + (1 << 20)].copy_from_slice(&b);
        }
        sides[active].flush().unwrap();
        sides[active].inactivate().unwrap();
        sides[passive].activate().unwrap();
        assert!(
            read_all(&sides[passive]) == shadow,
            "round {round}: data lost in the handoff"
        );
    }
    let [a, b] = sides;
    drop(a);
    drop(b);
    let out = qemu_img_ok(&["check", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
    let raw = dir.path().join("shadow.raw");
    std::fs::write(&raw, &shadow).unwrap();
    qemu_img_ok(&["compare", "-f", "qcow2", "-F", "raw", s(&img), s(&raw)]);
}

/// The scripted handoff with `blk io`: the destination opens inactive, waits,
/// activates and reads what qemu-io wrote in the window.
#[test]
fn scripted_handoff_with_blk_io() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), "64k");
    let dst = Command::new(blk_tests::blk_bin())
        .args([
            "io",
            "-f",
            "qcow2",
            "--inactive",
            "-c",
            "read -P 0x11 0 1M",
            "-c",
            "sleep 3000",
            "-c",
            "activate",
            "-c",
            "read -P 0xab 0 1M",
            "-c",
            "read -P 0xcd 4M 64k",
            s(&img),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0xab 0 1M",
        "-c",
        "write -P 0xcd 4M 64k",
        "-c",
        "flush",
        s(&img),
    ]);
    let out = dst.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("Pattern verification failed"), "{text}");
}

/// A chain: the destination's whole graph (overlay and backing file) is
/// inactive and holds no locks; activation goes from the children up and
/// fails cleanly, leaving everything inactive, while QEMU still holds it.
#[test]
fn chain_handoff_and_refused_activation() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_ok(&["create", "-f", "qcow2", s(&base), "8M"]);
    qemu_io_ok(&["-f", "qcow2", "-c", "write -P 0x01 0 8M", s(&base)]);
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
    ]);
    let holder = blk_tests::QemuHolder::spawn(&["-f", "qcow2"], &top, true);
    let h = host();
    let dst = h.open(s(&top), &qcow2(true)).unwrap();
    assert_eq!(
        dst.graph().backing().map(|b| b.driver.clone()).as_deref(),
        Some("qcow2")
    );
    let before = read_all(&dst);
    assert!(before.iter().all(|&b| b == 1));
    let e = dst.activate().unwrap_err();
    assert_eq!(e.kind, block_core::ErrorKind::Busy, "{e}");
    assert!(e.to_string().contains("lock"), "{e}");
    assert!(dst.is_inactive());
    assert!(
        dst.write(0, &[0; 512]).is_err(),
        "still inactive after a failed activation"
    );
    holder.stop();
    qemu_io_ok(&[
        "-f",
        "qcow2",
        "-c",
        "write -P 0x02 1M 1M",
        "-c",
        "flush",
        s(&top),
    ]);
    dst.activate().unwrap();
    let after = read_all(&dst);
    assert!(after[1 << 20..2 << 20].iter().all(|&b| b == 2));
    assert!(after[..1 << 20].iter().all(|&b| b == 1));
    // The backing file is opened read-only: activation does not lock it for writing.
    qemu_io_ok(&["-r", "-U", "-f", "qcow2", "-c", "read -P 1 0 1M", s(&base)]);
}

/// Inactivation drains writers: writes racing with `inactivate` either are
/// acknowledged and on disk when it returns, or fail as "inactive"; nothing
/// acknowledged is lost, and QEMU then reads exactly the acknowledged data.
#[test]
fn inactivate_drains_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("drain.qcow2");
    qemu_img_ok(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        s(&img),
        "8M",
    ]);
    let h = host();
    let src = h.open(s(&img), &qcow2(false)).unwrap();
    let threads = 4u64;
    let region = (8u64 << 20) / threads;
    let last: Vec<(u64, u8)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let src = &src;
                sc.spawn(move || {
                    // Each thread rewrites one 64 KiB block of its region with
                    // an increasing pattern; remember the last acknowledged one.
                    let off = t * region + 65536 * (t + 1);
                    let mut acked = 0u8;
                    let mut stopped = false;
                    for i in 0..1_000_000u32 {
                        let n = (i % 250 + 1) as u8;
                        match src.write(off, &vec![n; 65536]) {
                            Ok(()) => acked = n,
                            Err(e) => {
                                assert!(e.to_string().contains("inactive"), "{e}");
                                stopped = true;
                                break;
                            }
                        }
                    }
                    assert!(stopped, "the writer outran the inactivation");
                    (off, acked)
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(30));
        src.inactivate().unwrap();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (off, acked) in last {
        if acked == 0 {
            continue;
        }
        qemu_io_ok(&[
            "-f",
            "qcow2",
            "-r",
            "-c",
            &format!("read -P {acked} {off} 64k"),
            s(&img),
        ]);
    }
    let out = qemu_img_ok(&["check", s(&img)]);
    assert!(out.contains("No errors were found"), "{out}");
}
