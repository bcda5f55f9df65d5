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
    for round in 0..6u32 {
        // A flushed, known write first: it must survive the crash.
        let pat = 0x40 + round as u8;
        blk_tests::blk_ok(&[
            "io",
            "-f",
            "qcow2",
            "-c",
            &format!("write -P {pat} {} 64k", round as u64 * (1 << 20)),
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
        std::thread::sleep(Duration::from_millis(r.gen_range(20..250)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
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
            &format!("read -P {pat} {} 64k", round as u64 * (1 << 20)),
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
