//! Runs the driver conformance suite on a plugin library or on linked-in
//! drivers.
//!
//! `blk-conformance --plugin LIB [--driver NAME]...` tests every driver the
//! library provides (or the named ones); `blk-conformance --static` tests the
//! linked-in drivers. A relative LIB is taken relative to the current
//! directory. Prints one `PASS`/`SKIP`/`FAIL driver/case` line per case and
//! a summary naming the failed cases; exit status 0 when every case passed
//! or was skipped, 1 when one failed, 2 on a usage or setup error.

use blk_tests::conformance::{self, Outcome};
use plugin_host::Host;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: blk-conformance (--plugin LIB | --static) [--driver NAME]...";

/// What the command line asks for.
struct Args {
    plugin: Option<PathBuf>,
    use_static: bool,
    only: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        plugin: None,
        use_static: false,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--plugin" => a.plugin = Some(absolute(&value("--plugin")?)?),
            "--driver" => a.only.push(value("--driver")?),
            "--static" => a.use_static = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    if a.plugin.is_none() && !a.use_static {
        return Err(format!("give --plugin LIB or --static\n{USAGE}"));
    }
    Ok(Some(a))
}

/// `lib` resolved against the current directory (a bare `libx.so` would
/// otherwise send the loader searching the library path).
fn absolute(lib: &str) -> Result<PathBuf, String> {
    std::fs::canonicalize(lib).map_err(|e| format!("plugin library {lib}: {e}"))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blk-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any plugin is loaded: plugins read the log level when loaded.
    if !conformance::panic_watch::install() {
        eprintln!("blk-conformance: a logger was already set; panics only logged are not seen");
    }
    let host = match &args.plugin {
        Some(lib) => Host::builder()
            .env_plugin_path(false)
            .plugins_first(true)
            .plugin_file(lib)
            .build(),
        None => Host::builder().env_plugin_path(false).build(),
    };
    let host = match host {
        Ok(h) => h,
        Err(e) => {
            eprintln!("blk-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let names: Vec<String> = if !args.only.is_empty() {
        args.only
    } else if args.plugin.is_some() {
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
    let (mut passed, mut skipped) = (0, 0);
    let mut failed: Vec<String> = Vec::new();
    for name in &names {
        let results = conformance::run_suite(&host, name, dir.path());
        print!("{}", conformance::report(name, &results));
        for r in &results {
            match r.outcome {
                Outcome::Pass => passed += 1,
                Outcome::Skip(_) => skipped += 1,
                Outcome::Fail(_) => failed.push(format!("{name}/{}", r.name)),
            }
        }
    }
    println!(
        "conformance: {passed} passed, {} failed, {skipped} skipped",
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("conformance: failed cases: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
