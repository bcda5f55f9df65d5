//! Crash consistency: a blk process allocating clusters is killed at seeded
//! random moments; the image must never be corrupt afterwards (leaked
//! clusters are allowed), must repair to clean, and every flushed write must
//! be readable. QEMU's `qemu-img check` is the judge.

use blk_tests::{qemu_img, qemu_img_ok, s};
use rand::Rng;
use std::process::{Command, Stdio};
use std::time::Duration;

fn check_json(img: &std::path::Path) -> serde_json::Value {
    let out = qemu_img(&["check", "--output=json", s(img)]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "qemu-img check gave no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A counter of `qemu-img check --output=json` (absent means 0).
fn count(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64()).unwrap_or(0)
}

fn crash_rounds(opts: &str, lazy: bool) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("crash.qcow2");
    let mut r = blk_tests::rng(if lazy { 99 } else { 7 });
    qemu_img_ok(&["create", "-q", "-f", "qcow2", "-o", opts, s(&img), "512M"]);
    let mut killed_mid_run = 0;
    // Rounds 0-5 kill after a random delay. Rounds 6-11 kill just after
    // the file grew past the next 8 MiB boundary (the range of one
    // refcount block with 4 KiB clusters): a new refcount block, and a
    // writeback whose L2 tables reference the new range, are then in
    // flight (a kill between its L2 and refcount table writes once made
    // the lazy repair place the missing block on guest data).
    for round in 0..12u32 {
        let targeted = round >= 6;
        // A flushed, known write first: it must survive the crash. The
        // bench writes from 8 MiB on.
        let pat = 0x40 + round as u8;
        let pat_off = if targeted {
            u64::from(round - 6) * (1 << 20) + (512 << 10)
        } else {
            u64::from(round) * (1 << 20)
        };
        blk_tests::blk_ok(&[
            "io",
            "-f",
            "qcow2",
            "-c",
            &format!("write -P {pat} {pat_off} 64k"),
            "-c",
            "flush",
            s(&img),
        ]);
        // Then many allocating writes with a stride, killed mid-flight.
        let mut child = Command::new(blk_tests::blk_bin())
            .args([
                "bench",
                "-w",
                "-f",
                "qcow2",
                "-c",
                "25000",
                "-d",
                "8",
                "-s",
                "4k",
                "-S",
                "20k",
                "-o",
                &format!("{}", 8 << 20),
                "--pattern",
                "170",
                "--flush-interval",
                "64",
                s(&img),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if targeted {
            let len = || std::fs::metadata(&img).unwrap().len();
            let boundary = (len() / (8 << 20) + 1) * (8 << 20) + 4096;
            let t0 = std::time::Instant::now();
            while len() <= boundary
                && t0.elapsed() < Duration::from_secs(10)
                && child.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_micros(r.gen_range(0..30_000)));
        } else {
            std::thread::sleep(Duration::from_millis(r.gen_range(20..250)));
            if child.try_wait().unwrap().is_none() {
                killed_mid_run += 1;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let v = check_json(&img);
        if !lazy {
            assert_eq!(
                count(&v, "corruptions"),
                0,
                "round {round}: corrupt after a crash: {v}"
            );
        }
        // The flushed pattern is intact (reads do not need a repair).
        blk_tests::blk_ok(&[
            "io",
            "-r",
            "-f",
            "qcow2",
            "-c",
            &format!("read -P {pat} {pat_off} 64k"),
            s(&img),
        ]);
        if lazy {
            // A writable open repairs the dirty image.
            blk_tests::blk_ok(&["io", "-f", "qcow2", "-c", "flush", s(&img)]);
        } else {
            let fix = qemu_img(&["check", "-r", "leaks", s(&img)]);
            assert!(
                fix.status.success() || fix.status.code() == Some(3),
                "repair failed"
            );
        }
        let v = check_json(&img);
        assert_eq!(count(&v, "corruptions"), 0, "round {round}: {v}");
        assert_eq!(count(&v, "leaks"), 0, "round {round}: {v}");
    }
    assert!(
        killed_mid_run >= 3,
        "only {killed_mid_run} of 6 rounds crashed mid-run"
    );
}

#[test]
fn killed_writer_leaves_no_corruption() {
    crash_rounds("cluster_size=4k", false);
}

#[test]
fn killed_lazy_refcount_writer_is_repaired_on_open() {
    crash_rounds("cluster_size=4k,lazy_refcounts=on", true);
}
