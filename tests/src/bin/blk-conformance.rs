//! Runs the driver conformance suite on a plugin library or on linked-in
//! drivers.
//!
//! `blk-conformance --plugin LIB [--driver NAME]...` tests every driver the
//! library provides (or the named ones); `blk-conformance --static` tests the
//! linked-in drivers. Exit status 0 when every case passed or was skipped.

use plugin_host::Host;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut plugin = None;
    let mut use_static = false;
    let mut only: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--plugin" => plugin = args.next(),
            "--driver" => only.extend(args.next()),
            "--static" => use_static = true,
            "-h" | "--help" => {
                println!("usage: blk-conformance (--plugin LIB | --static) [--driver NAME]...");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("blk-conformance: unknown argument '{other}'");
                return ExitCode::from(2);
            }
        }
    }
    let host = match &plugin {
        Some(lib) => Host::builder()
            .env_plugin_path(false)
            .plugins_first(true)
            .plugin_file(lib)
            .build(),
        None if use_static => Host::builder().env_plugin_path(false).build(),
        None => {
            eprintln!("blk-conformance: give --plugin LIB or --static");
            return ExitCode::from(2);
        }
    };
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            eprintln!("blk-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let names: Vec<String> = if !only.is_empty() {
        only
    } else if plugin.is_some() {
        host.plugins()
            .iter()
            .flat_map(|p| p.drivers.iter().map(|d| d.name().to_string()))
            .collect()
    } else {
        host.registry()
            .iter()
            .map(|d| d.driver.name().to_string())
            .collect()
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("blk-conformance: cannot make a temporary directory: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for name in &names {
        let results = blk_tests::conformance::run_suite(&host, name, dir.path());
        print!("{}", blk_tests::conformance::report(name, &results));
        for r in &results {
            match r.outcome {
                blk_tests::conformance::Outcome::Pass => passed += 1,
                blk_tests::conformance::Outcome::Skip(_) => skipped += 1,
                blk_tests::conformance::Outcome::Fail(_) => failed += 1,
            }
        }
    }
    println!("conformance: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
