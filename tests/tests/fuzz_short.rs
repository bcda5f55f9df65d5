//! A short, deterministic run of the mutation fuzzer (the long one is
//! `cargo xtask fuzz`): hostile qcow2 images never panic the host.

#[test]
fn mutated_qcow2_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rep = blk_tests::fuzz::run(dir.path(), 42, 150);
    assert_eq!(rep.iterations, 150);
    assert!(rep.panics.is_empty(), "panics: {:#?}", rep.panics);
    // The fuzzer reaches the parser: some mutants open, some fail cleanly.
    assert!(rep.opened > 0 && rep.errors > 0, "{rep:?}");
}
