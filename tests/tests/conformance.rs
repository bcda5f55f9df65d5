//! The conformance suite against every driver, in both forms: linked in and
//! loaded from its plugin library. Both forms must pass and agree case by case.

use blk_tests::conformance::{all_passed, report, run_suite, CaseResult, Outcome};
use plugin_host::Host;

/// Drivers shipped in this workspace.
const DRIVERS: &[(&str, &str)] = &[
    ("file", "libblk_file.so"),
    ("raw", "libblk_raw.so"),
    ("null-co", "libblk_null.so"),
    ("qcow2", "libblk_qcow2.so"),
    ("parallels", "libblk_parallels.so"),
    ("vdi", "libblk_vdi.so"),
    ("vmdk", "libblk_vmdk.so"),
    ("qed", "libblk_qed.so"),
    ("vpc", "libblk_vpc.so"),
    ("vhdx", "libblk_vhdx.so"),
    ("qcow", "libblk_qcow.so"),
];

fn static_results(driver: &str) -> Vec<CaseResult> {
    let host = Host::builder()
        .env_plugin_path(false)
        .build()
        .expect("host");
    let dir = tempfile::tempdir().expect("tempdir");
    run_suite(&host, driver, dir.path())
}

fn plugin_results(driver: &str, lib: &str) -> Vec<CaseResult> {
    let path = blk_tests::plugin_dir().join(lib);
    let host = Host::builder()
        .env_plugin_path(false)
        .plugins_first(true)
        .plugin_file(&path)
        .build()
        .expect("host with plugin");
    let d = host.registry().get(driver).expect("driver registered");
    assert!(
        matches!(d.origin, block_core::DriverOrigin::Plugin { .. }),
        "{driver} must come from the plugin library"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    run_suite(&host, driver, dir.path())
}

fn outcome_kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Skip(_) => "skip",
        Outcome::Fail(_) => "fail",
    }
}

fn check_both_forms(driver: &str, lib: &str) {
    let a = static_results(driver);
    let b = plugin_results(driver, lib);
    let ra = report(driver, &a);
    let rb = report(driver, &b);
    println!("linked in:\n{ra}plugin:\n{rb}");
    assert!(
        all_passed(&a),
        "linked-in {driver} failed conformance:\n{ra}"
    );
    assert!(all_passed(&b), "plugin {driver} failed conformance:\n{rb}");
    let ka: Vec<_> = a
        .iter()
        .map(|r| (r.name, outcome_kind(&r.outcome)))
        .collect();
    let kb: Vec<_> = b
        .iter()
        .map(|r| (r.name, outcome_kind(&r.outcome)))
        .collect();
    assert_eq!(ka, kb, "both forms must give the same results");
    assert!(a.iter().filter(|r| r.outcome == Outcome::Pass).count() >= 4);
}

#[test]
fn file_driver_both_forms() {
    check_both_forms(DRIVERS[0].0, DRIVERS[0].1);
}

#[test]
fn raw_driver_both_forms() {
    check_both_forms(DRIVERS[1].0, DRIVERS[1].1);
}

#[test]
fn null_driver_both_forms() {
    check_both_forms(DRIVERS[2].0, DRIVERS[2].1);
}

#[test]
fn qcow2_driver_both_forms() {
    check_both_forms(DRIVERS[3].0, DRIVERS[3].1);
}

#[test]
fn parallels_driver_both_forms() {
    check_both_forms("parallels", "libblk_parallels.so");
}

#[test]
fn vmdk_driver_both_forms() {
    check_both_forms("vmdk", "libblk_vmdk.so");
}

#[test]
fn vdi_driver_both_forms() {
    check_both_forms("vdi", "libblk_vdi.so");
}

#[test]
fn vhdx_driver_both_forms() {
    check_both_forms("vhdx", "libblk_vhdx.so");
}

#[test]
fn qed_driver_both_forms() {
    check_both_forms("qed", "libblk_qed.so");
}

#[test]
fn vpc_driver_both_forms() {
    check_both_forms("vpc", "libblk_vpc.so");
}

#[test]
fn qcow_driver_both_forms() {
    check_both_forms("qcow", "libblk_qcow.so");
}

/// A bochs image (bximage, then seeded data) and the bytes it reads as.
fn bochs_image(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    use rand::Rng;
    let p = dir.join("ro.bochs");
    blk_tests::bochs::bximage(&p, 10);
    let mut img = std::fs::read(&p).unwrap();
    let disk = u64::from_le_bytes(img[88..96].try_into().unwrap());
    let mut guest = vec![0u8; disk as usize];
    let mut r = blk_tests::rng(90);
    for _ in 0..40 {
        let n = r.gen_range(1..=64u64);
        let sector = r.gen_range(0..disk / 512 - n);
        let data = blk_tests::random_bytes(r.gen(), n as usize * 512);
        blk_tests::bochs::write_sectors(&mut img, sector, &data);
        let at = sector as usize * 512;
        guest[at..at + data.len()].copy_from_slice(&data);
    }
    std::fs::write(&p, &img).unwrap();
    (p, guest)
}

/// bochs cannot create images: the read-only path, on an image made by
/// bximage, in both forms.
#[test]
fn bochs_driver_both_forms_read_only() {
    use blk_tests::conformance::run_read_only_suite;
    let dir = tempfile::tempdir().expect("tempdir");
    let (img, guest) = bochs_image(dir.path());
    let linked = Host::builder().env_plugin_path(false).build().unwrap();
    let a = run_read_only_suite(&linked, "bochs", &img, &guest);
    let plugin = Host::builder()
        .env_plugin_path(false)
        .plugins_first(true)
        .plugin_file(blk_tests::plugin_dir().join("libblk_bochs.so"))
        .build()
        .unwrap();
    let d = plugin.registry().get("bochs").expect("driver registered");
    assert!(matches!(d.origin, block_core::DriverOrigin::Plugin { .. }));
    let b = run_read_only_suite(&plugin, "bochs", &img, &guest);
    let (ra, rb) = (report("bochs", &a), report("bochs", &b));
    println!("linked in:\n{ra}plugin:\n{rb}");
    assert!(all_passed(&a), "linked-in bochs failed:\n{ra}");
    assert!(all_passed(&b), "plugin bochs failed:\n{rb}");
    assert!(a.iter().all(|r| r.outcome == Outcome::Pass), "{ra}");
    assert!(b.iter().all(|r| r.outcome == Outcome::Pass), "{rb}");
}

#[test]
fn conformance_binary_runs_on_a_plugin_file() {
    let lib = blk_tests::plugin_dir().join("libblk_raw.so");
    let exe = env!("CARGO_BIN_EXE_blk-conformance");
    let out = blk_tests::run(std::process::Command::new(exe).arg("--plugin").arg(&lib));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS raw/random_write_read"), "{text}");
    assert!(text.contains("0 failed"), "{text}");
}

#[test]
fn conformance_suite_can_fail() {
    // A driver that loses writes (null-co treated as a storing driver) must
    // fail the data cases: the suite is able to catch a broken driver.
    let host = Host::builder()
        .env_plugin_path(false)
        .build()
        .expect("host");
    let reg = host.registry().get("null-co").expect("null");
    let node = reg
        .driver
        .open(
            &block_core::OpenRequest::new("null-co://", block_core::OpenFlags::NONE),
            plugin_host::graph::services_for(host.registry()),
        )
        .expect("open null");
    use block_core::BlockNodeExt;
    node.write_at(0, &[1; 512]).expect("write");
    let mut b = [9u8; 512];
    node.read_at(0, &mut b).expect("read");
    assert_eq!(
        b, [0u8; 512],
        "null drops writes, so a storing-driver suite would fail on it"
    );
}
