//! `blk-fuzz [ITERATIONS] [SEED] [FORMAT...]`: mutation-fuzzes format
//! drivers through the host (see `blk_tests::fuzz`), every format the
//! fuzzer covers unless some are named. Exit status 1 when anything
//! panicked, 3 when an iteration hung, 2 on a usage error.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let names: Vec<String> = args.collect();
    let mut targets = Vec::new();
    for n in &names {
        match blk_tests::fuzz::target(n) {
            Some(t) => targets.push(t),
            None => {
                let known: Vec<_> = blk_tests::fuzz::TARGETS.iter().map(|t| t.format).collect();
                eprintln!("blk-fuzz: no target {n:?} (known: {})", known.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if targets.is_empty() {
        targets = blk_tests::fuzz::TARGETS.iter().collect();
    }
    // Panics the fuzzer catches are collected and reported, not printed.
    blk_tests::fuzz::quiet_caught_panics();
    let mut failed = false;
    for t in targets {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("blk-fuzz: {e}");
                return ExitCode::from(2);
            }
        };
        let start = std::time::Instant::now();
        let rep = blk_tests::fuzz::run_target(t, dir.path(), seed, iterations);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "blk-fuzz: {}: {} iterations (seed {seed}) in {secs:.1}s ({:.0}/s): {} opens accepted, {} clean errors, {} panics",
            rep.format,
            rep.iterations,
            rep.iterations as f64 / secs.max(1e-9),
            rep.opened,
            rep.errors,
            rep.panics.len()
        );
        for p in &rep.panics {
            println!("PANIC {p}");
        }
        failed |= !rep.panics.is_empty();
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
