//! The six ABI requirements, each proven here (requirement 1, both forms, is
//! in conformance.rs).

use block_core::{BlockNodeExt, ErrorKind, ZeroFlags};
use plugin_host::{load_plugin, Host, OpenOptions};
use std::sync::{Arc, Mutex};

fn host_with(lib: &std::path::Path) -> block_core::Result<Host> {
    Host::builder()
        .env_plugin_path(false)
        .plugins_first(true)
        .plugin_file(lib)
        .build()
}

/// Requirement 2: an incompatible plugin is refused before any call, with an
/// error naming the file and both versions.
#[test]
fn incompatible_major_is_refused() {
    let lib = blk_tests::fixture("future_abi");
    let err = match host_with(&lib) {
        Ok(_) => panic!("a plugin with ABI major 2 was accepted"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(err.kind, ErrorKind::AbiMismatch, "{msg}");
    assert!(msg.contains("libfuture_abi.so"), "names the file: {msg}");
    assert!(
        msg.contains("expected 1.x"),
        "names the expected version: {msg}"
    );
    assert!(msg.contains("found 2.0"), "names the found version: {msg}");
}

#[test]
fn non_plugin_libraries_and_garbage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("libgarbage.so");
    std::fs::write(&garbage, b"this is not an ELF file").unwrap();
    let e = host_with(&garbage).err().expect("garbage refused");
    assert_eq!(e.kind, ErrorKind::AbiMismatch);
    assert!(e.to_string().contains("libgarbage.so"), "{e}");

    // A real shared library without the stamp: the test fixture with no
    // stamp is any system library; libc is always there.
    let libc = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists());
    if let Some(p) = libc {
        let e = host_with(&p).err().expect("non-plugin refused");
        assert!(e.to_string().contains("not a blk plugin"), "{e}");
    }
}

/// Requirement 3: a plugin built against ABI 1.0 (base interface only, no
/// block-core) loads and works; the host emulates or refuses what it lacks.
#[test]
fn old_minor_plugin_keeps_working() {
    let lib = blk_tests::fixture("old_abi");
    let host = host_with(&lib).expect("ABI 1.0 plugin loads in a 1.1 host");
    let d = host.registry().get("oldmem").expect("driver registered");
    assert!(matches!(
        d.origin,
        block_core::DriverOrigin::Plugin { abi: (1, 0), .. }
    ));
    let img = host
        .open(
            "oldmem:disk-a",
            &OpenOptions {
                format: Some("oldmem".into()),
                ..Default::default()
            },
        )
        .expect("open");
    assert_eq!(img.length().unwrap(), 8 << 20);
    img.write(4096, &[0x42; 8192]).unwrap();
    let mut b = vec![0u8; 8192];
    img.read(4096, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0x42));
    // write_zeroes is not in ABI 1.0: the host emulates it with writes.
    img.write_zeroes(4096, 4096, ZeroFlags::MAY_UNMAP).unwrap();
    img.read(4096, &mut b).unwrap();
    assert!(b[..4096].iter().all(|&x| x == 0) && b[4096..].iter().all(|&x| x == 0x42));
    // discard is advisory: accepted, data unchanged.
    img.discard(8192, 4096).unwrap();
    // check is not in ABI 1.0: a clean "unsupported" error.
    let e = img.check(block_core::CheckMode::REPORT).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    // Nor is the bitmap control call (ABI 1.3).
    let e = img.bitmap(r#"{"op":"list"}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(img.info().unwrap().node.format, "oldmem");
    // And the conformance suite passes on it.
    let dir = tempfile::tempdir().unwrap();
    let results = blk_tests::conformance::run_suite(&host, "oldmem", dir.path());
    let rep = blk_tests::conformance::report("oldmem", &results);
    assert!(blk_tests::conformance::all_passed(&results), "{rep}");
}

/// Requirement 4: a panic inside a plugin becomes an I/O error for that call.
#[test]
fn plugin_panic_becomes_an_error() {
    let lib = blk_tests::fixture("misbehaving");
    let host = host_with(&lib).expect("load");
    let img = host
        .open(
            "panicky:p1",
            &OpenOptions {
                format: Some("panicky".into()),
                ..Default::default()
            },
        )
        .expect("open");
    img.write(0, &[7; 4096]).unwrap();
    let mut b = vec![0u8; 4096];
    let e = img.read(1 << 20, &mut b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("driver panicked"), "{e}");
    assert!(e.to_string().contains("planted bug"), "{e}");
    let e = img.flush().unwrap_err();
    assert!(e.to_string().contains("driver panicked"), "{e}");
    // The host and the node survive and keep working.
    img.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 7));
}

/// A block-status extent crosses the ABI with the child its offset is in
/// (ABI 1.4); one naming a child that holds no offsets (backing) is
/// refused as a driver bug, like an extent of a wrong length.
#[test]
fn block_status_offsets_name_a_valid_child() {
    let lib = blk_tests::fixture("misbehaving");
    let host = host_with(&lib).expect("load");
    let img = host
        .open(
            "panicky:p3",
            &OpenOptions {
                format: Some("panicky".into()),
                ..Default::default()
            },
        )
        .expect("open");
    let e = img.block_status(4096, 8192).unwrap();
    assert_eq!(e.mapped_child, block_core::ChildRole::File);
    assert_eq!((e.mapped_offset, e.length), (4096, 8192));
    let e = img.block_status(1 << 20, 4096).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("neither file nor data-file"), "{e}");
}

/// A logger that records targets and messages.
struct Capture(Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        self.0
            .lock()
            .unwrap()
            .push((r.target().to_string(), r.args().to_string()));
    }
    fn flush(&self) {}
}

/// Requirement 5: plugin log records reach the host's logger under the
/// plugin's name. (Only this test in this binary installs a logger.)
#[test]
fn plugin_logs_reach_the_host_logger() {
    static CAPTURE: std::sync::OnceLock<&'static Capture> = std::sync::OnceLock::new();
    let cap: &'static Capture =
        CAPTURE.get_or_init(|| Box::leak(Box::new(Capture(Mutex::new(Vec::new())))));
    log::set_logger(cap).expect("first logger in this test binary");
    log::set_max_level(log::LevelFilter::Info);
    // Load a fresh copy (another path) so the plugin sees this logger's level
    // at its entry point, whatever other tests in this binary did first.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libmisbehaving_logs.so");
    std::fs::copy(blk_tests::fixture("misbehaving"), &copy).unwrap();
    let host = host_with(&copy).expect("load");
    let _img = host
        .open(
            "panicky:logged",
            &OpenOptions {
                format: Some("panicky".into()),
                ..Default::default()
            },
        )
        .expect("open");
    let records = cap.0.lock().unwrap().clone();
    let hit = records
        .iter()
        .find(|(_, m)| m.contains("panicky: opened panicky:logged"))
        .unwrap_or_else(|| panic!("plugin record not forwarded; got {records:?}"));
    assert!(
        hit.0.starts_with("plugin::misbehaving::"),
        "target {}",
        hit.0
    );
}

/// Requirement 6: plugin libraries are never unloaded, and one library is
/// loaded once however often it is asked for.
#[test]
fn plugin_libraries_are_never_unloaded() {
    let lib = blk_tests::fixture("old_abi");
    let a = load_plugin(&lib).unwrap();
    let b = load_plugin(&lib).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "loaded once");
    let node = {
        let host = host_with(&lib).unwrap();
        let d = host.registry().get("oldmem").unwrap().driver.clone();
        d.open(
            &block_core::OpenRequest::new("oldmem:survivor", block_core::OpenFlags::NONE),
            plugin_host::graph::services_for(host.registry()),
        )
        .unwrap()
        // host, registry and plugin handles dropped here
    };
    drop(a);
    drop(b);
    node.write_at(0, b"still here").unwrap();
    let mut buf = [0u8; 10];
    node.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps.contains("libold_abi.so"), "library still mapped");
}

#[test]
fn duplicate_driver_names_first_registration_wins() {
    // Linked-in raw first, then the raw plugin: the linked-in one stays.
    let host = Host::builder()
        .env_plugin_path(false)
        .plugin_file(blk_tests::plugin_dir().join("libblk_raw.so"))
        .build()
        .unwrap();
    let d = host.registry().get("raw").unwrap();
    assert_eq!(d.origin, block_core::DriverOrigin::Static);
    assert_eq!(
        host.registry()
            .iter()
            .filter(|d| d.driver.name() == "raw")
            .count(),
        1
    );
    // With plugins first, the plugin wins.
    let host = Host::builder()
        .env_plugin_path(false)
        .plugins_first(true)
        .plugin_file(blk_tests::plugin_dir().join("libblk_raw.so"))
        .build()
        .unwrap();
    assert!(matches!(
        host.registry().get("raw").unwrap().origin,
        block_core::DriverOrigin::Plugin { .. }
    ));
}

#[test]
fn plugin_dir_and_env_path_are_scanned() {
    let host = Host::builder()
        .env_plugin_path(false)
        .static_drivers(false)
        .plugin_dir(blk_tests::plugin_dir())
        .build()
        .unwrap();
    for name in ["file", "raw", "null-co"] {
        let d = host
            .registry()
            .get(name)
            .unwrap_or_else(|| panic!("{name} from plugin dir"));
        assert!(matches!(d.origin, block_core::DriverOrigin::Plugin { .. }));
    }
    // Only plugins: a raw image round trip through the plugin libraries.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.img");
    let ps = p.to_str().unwrap();
    host.create("raw", ps, "", Some(1 << 20), None).unwrap();
    let img = host.open(ps, &OpenOptions::default()).unwrap();
    img.write(512, &[3; 512]).unwrap();
    img.flush().unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(&bytes[512..1024], &[3u8; 512][..]);
}

/// Open options are discoverable for plugin drivers as for linked-in ones
/// (the `open_options_json` slot of minor 5), with the same declarations;
/// a 1.0 plugin declares none.
#[test]
fn open_options_are_listed_for_plugin_drivers() {
    let linked = Host::builder().env_plugin_path(false).build().unwrap();
    let plugins = Host::builder()
        .env_plugin_path(false)
        .static_drivers(false)
        .plugin_dir(blk_tests::plugin_dir())
        .build()
        .unwrap();
    for name in ["qcow2", "raw", "file", "null-co"] {
        let want = linked.driver_open_options(name).unwrap();
        assert!(!want.is_empty(), "{name} declares its open options");
        assert!(matches!(
            plugins.registry().get(name).unwrap().origin,
            block_core::DriverOrigin::Plugin { .. }
        ));
        assert_eq!(plugins.driver_open_options(name).unwrap(), want, "{name}");
    }
    let l2 = linked.driver_open_options("qcow2").unwrap();
    let l2 = l2.iter().find(|o| o.name == "l2-cache-size").unwrap();
    assert_eq!(l2.kind, block_core::OptKind::Size);
    let old = host_with(&blk_tests::fixture("old_abi")).unwrap();
    let old_name = old
        .registry()
        .iter()
        .find(|d| matches!(d.origin, block_core::DriverOrigin::Plugin { .. }))
        .map(|d| d.driver.name().to_string())
        .unwrap();
    assert!(old.driver_open_options(&old_name).unwrap().is_empty());
    // A plugin driver refuses what it does not declare, in QEMU's words.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.qcow2");
    let ps = p.to_str().unwrap();
    plugins
        .create("qcow2", ps, "", Some(1 << 20), None)
        .unwrap();
    let o = OpenOptions {
        options: vec![("bogus".into(), "1".into())],
        ..OpenOptions::default()
    };
    let e = plugins.open(ps, &o).err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        "Block format 'qcow2' does not support the option 'bogus'"
    );
    let o = OpenOptions {
        options: vec![("l2-cache-size".into(), "1M".into())],
        ..OpenOptions::default()
    };
    plugins.open(ps, &o).unwrap();
}

/// A check that stops reports the same findings and stop reason through a
/// qcow2 plugin library as linked in: `check -r leaks` on an image whose
/// data cluster has refcount 0 stops with "need to rebuild refcount
/// structures" and the findings up to there (`CheckStopped`).
#[test]
fn a_stopped_check_reports_the_same_through_a_plugin() {
    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }
    let dir = tempfile::tempdir().unwrap();
    let linked = Host::builder().env_plugin_path(false).build().unwrap();
    let plugins = Host::builder()
        .env_plugin_path(false)
        .static_drivers(false)
        .plugin_dir(blk_tests::plugin_dir())
        .build()
        .unwrap();
    let p = dir.path().join("c.qcow2");
    let ps = p.to_str().unwrap();
    linked.create("qcow2", ps, "", Some(1 << 20), None).unwrap();
    {
        let img = linked.open(ps, &OpenOptions::default()).unwrap();
        img.write(0, &[5u8; 65536]).unwrap();
        img.flush().unwrap();
    }
    // The data cluster's refcount (16 bits) set to 0.
    let mut b = std::fs::read(&p).unwrap();
    let mask = 0x00ff_ffff_ffff_fe00u64;
    let l2 = be64(&b, be64(&b, 40) as usize) & mask;
    let data = be64(&b, l2 as usize) & mask;
    let refblock = be64(&b, be64(&b, 48) as usize) as usize;
    let entry = refblock + (data / 65536) as usize * 2;
    b[entry..entry + 2].copy_from_slice(&[0, 0]);
    std::fs::write(&p, &b).unwrap();
    let run = |host: &Host| {
        let o = OpenOptions {
            format: Some("qcow2".into()),
            for_check: true,
            ..OpenOptions::default()
        };
        let img = host.open(ps, &o).unwrap();
        let e = img.check(block_core::CheckMode::FIX_LEAKS).unwrap_err();
        let stopped = e
            .source
            .as_ref()
            .and_then(|s| s.downcast_ref::<block_core::CheckStopped>())
            .cloned();
        (e.kind, e.message.clone(), stopped)
    };
    let want = run(&linked);
    assert_eq!(want.1, "need to rebuild refcount structures");
    let findings = &want
        .2
        .as_ref()
        .expect("findings travel with the error")
        .findings;
    assert!(findings
        .iter()
        .any(|f| f.message == "ERROR need to rebuild refcount structures"));
    assert_eq!(run(&plugins), want);
    assert_eq!(
        std::fs::read(&p).unwrap(),
        b,
        "the stopped check changed nothing"
    );
}
