//! `blk-fuzz [ITERATIONS] [SEED]`: mutation-fuzzes the qcow2 driver through
//! the host (see `blk_tests::fuzz`). Exit status 1 when anything panicked.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("blk-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    // Keep the default panic message quiet: panics are collected and reported.
    std::panic::set_hook(Box::new(|_| {}));
    let start = std::time::Instant::now();
    let rep = blk_tests::fuzz::run(dir.path(), seed, iterations);
    println!(
        "blk-fuzz: {} iterations (seed {seed}) in {:.1}s: {} opens accepted, {} clean errors, {} panics",
        rep.iterations,
        start.elapsed().as_secs_f64(),
        rep.opened,
        rep.errors,
        rep.panics.len()
    );
    for p in &rep.panics {
        println!("PANIC {p}");
    }
    if rep.panics.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
