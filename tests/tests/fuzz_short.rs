//! A short, deterministic run of the mutation fuzzer over every format it
//! covers (the long one is `cargo xtask fuzz`): hostile images never
//! panic or hang the host.

fn short_run(format: &str, iterations: u64) {
    let t = blk_tests::fuzz::target(format).expect("a fuzz target");
    let dir = tempfile::tempdir().unwrap();
    let rep = blk_tests::fuzz::run_target(t, dir.path(), 42, iterations);
    assert_eq!(rep.iterations, iterations);
    assert!(rep.panics.is_empty(), "panics: {:#?}", rep.panics);
    // The fuzzer reaches the parser: some mutants open, some fail cleanly.
    assert!(rep.opened > 0 && rep.errors > 0, "{rep:?}");
}

#[test]
fn mutated_qcow2_images_never_panic() {
    short_run("qcow2", 150);
}

#[test]
fn every_format_has_a_fuzz_target() {
    let host = plugin_host::Host::builder()
        .env_plugin_path(false)
        .build()
        .unwrap();
    // Every linked-in format driver is covered (protocols and raw have no
    // metadata to mutate).
    let formats: Vec<String> = host
        .registry()
        .iter()
        .map(|r| r.driver.clone())
        .filter(|d| d.kind() == block_core::DriverKind::Format && d.name() != "raw")
        .map(|d| d.name().to_string())
        .collect();
    for f in &formats {
        assert!(
            blk_tests::fuzz::target(f).is_some(),
            "format {f} has no fuzz target"
        );
    }
    assert!(formats.len() >= 5, "{formats:?}");
}

#[test]
fn mutated_images_of_every_other_format_never_panic() {
    for t in blk_tests::fuzz::TARGETS.iter().skip(1) {
        short_run(t.format, 60);
    }
}
