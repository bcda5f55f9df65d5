//! `cargo xtask`: the workspace's task runner.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod abort_fixture;
mod new_plugin;

/// Driver crates built as plugin libraries.
const DRIVERS: &[&str] = &[
    "blk-file",
    "blk-raw",
    "blk-null",
    "blk-qcow2",
    "blk-parallels",
    "blk-vdi",
    "blk-vmdk",
    "blk-qed",
    "blk-vpc",
    "blk-vhdx",
    "blk-qcow",
    "blk-bochs",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result<(), String> {
    eprintln!("xtask: running {c:?}");
    let st = c.status().map_err(|e| format!("cannot run {c:?}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{c:?} failed with {st}"))
    }
}

fn lib_name(krate: &str) -> String {
    format!("lib{}.so", krate.replace('-', "_"))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    // Replace rather than overwrite in place: a running process may have the
    // old library mapped.
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

/// Builds the driver plugin libraries and the test fixtures.
fn plugins(release: bool) -> Result<PathBuf, String> {
    let profile = if release { "release" } else { "debug" };
    let out = target().join(profile);
    let plugdir = target().join("plugins");
    let fixdir = target().join("fixtures");
    std::fs::create_dir_all(&plugdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&fixdir).map_err(|e| e.to_string())?;
    for d in DRIVERS {
        let mut c = cargo();
        c.args(["build", "--lib", "-p", d, "--features", "plugin"]);
        if release {
            c.arg("--release");
        }
        run(c)?;
        copy(&out.join(lib_name(d)), &plugdir.join(lib_name(d)))?;
    }
    let fixtures: &[(&str, Option<&str>, &str)] = &[
        ("old-abi-plugin", None, "libold_abi.so"),
        ("old-abi-plugin", Some("future-major"), "libfuture_abi.so"),
        ("misbehaving-plugin", None, "libmisbehaving.so"),
        (
            "misbehaving-plugin",
            Some("probe-panic"),
            "libmisbehaving_probe_panic.so",
        ),
        (
            "misbehaving-plugin",
            Some("probe-error"),
            "libmisbehaving_probe_error.so",
        ),
        (
            "misbehaving-plugin",
            Some("close-panic"),
            "libmisbehaving_close_panic.so",
        ),
        (
            "misbehaving-plugin",
            Some("name-panic"),
            "libmisbehaving_name_panic.so",
        ),
        (
            "misbehaving-plugin",
            Some("kind-panic"),
            "libmisbehaving_kind_panic.so",
        ),
        (
            "misbehaving-plugin",
            Some("entry-panic"),
            "libmisbehaving_entry_panic.so",
        ),
        (
            "misbehaving-plugin",
            Some("payload-drop-panic"),
            "libmisbehaving_payload_drop.so",
        ),
        ("buggy-plugin", None, "libbuggy_none.so"),
        (
            "buggy-plugin",
            Some("probe-claims-all"),
            "libbuggy_probe_claims_all.so",
        ),
        (
            "buggy-plugin",
            Some("dirty-create"),
            "libbuggy_dirty_create.so",
        ),
        ("buggy-plugin", Some("noop-flush"), "libbuggy_noop_flush.so"),
        ("buggy-plugin", Some("panics"), "libbuggy_panics.so"),
        (
            "buggy-plugin",
            Some("query-panics"),
            "libbuggy_query_panics.so",
        ),
        (
            "buggy-plugin",
            Some("write-past-end"),
            "libbuggy_write_past_end.so",
        ),
        (
            "buggy-plugin",
            Some("racy-cursor"),
            "libbuggy_racy_cursor.so",
        ),
        (
            "buggy-plugin",
            Some("stale-cache"),
            "libbuggy_stale_cache.so",
        ),
        (
            "buggy-plugin",
            Some("ignore-inactive"),
            "libbuggy_ignore_inactive.so",
        ),
    ];
    for (krate, feature, name) in fixtures {
        let mut c = cargo();
        c.args(["build", "--lib", "-p", krate]);
        if let Some(f) = feature {
            c.args(["--features", f]);
        }
        if release {
            c.arg("--release");
        }
        run(c)?;
        copy(&out.join(lib_name(krate)), &fixdir.join(name))?;
    }
    abort_fixture::build(release, &out, &fixdir)?;
    eprintln!("xtask: plugin libraries in {}", plugdir.display());
    Ok(plugdir)
}

fn test_env(c: &mut Command) {
    c.env("BLK_PLUGIN_DIR", target().join("plugins"))
        .env("BLK_FIXTURE_DIR", target().join("fixtures"))
        .env("BLK_BIN", target().join("debug").join("blk"));
}

fn test(extra: &[String]) -> Result<(), String> {
    plugins(false)?;
    let mut c = cargo();
    c.args(["build", "-p", "plugin-host", "--bins"]);
    run(c)?;
    let mut c = cargo();
    c.args([
        "test",
        "--no-fail-fast",
        "--workspace",
        "--exclude",
        "old-abi-plugin",
        "--exclude",
        "misbehaving-plugin",
    ]);
    c.args(extra);
    test_env(&mut c);
    let (passed, failed, ok) = run_counting(c)?;
    // Style is part of the suite: formatting and clippy must be clean.
    let lint_result = lint();
    println!("xtask: {passed} passed, {failed} failed");
    if !ok {
        return Err(format!("{failed} test(s) failed"));
    }
    lint_result
}

/// Runs `cargo test`, echoing its output, and adds up its "test result"
/// lines: (passed, failed, exit status success).
fn run_counting(mut c: Command) -> Result<(u64, u64, bool), String> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: running {c:?}");
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {c:?}: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| e.to_string())?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |word: &str| -> u64 {
                    rest.split(';')
                        .find_map(|part| part.trim().strip_suffix(word))
                        .and_then(|n| n.trim().rsplit(' ').next().and_then(|x| x.parse().ok()))
                        .unwrap_or(0)
                };
                passed += num(" passed");
                failed += num(" failed");
            }
        }
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    Ok((passed, failed, st.success()))
}

fn conformance(args: &[String]) -> Result<(), String> {
    if !args
        .iter()
        .any(|a| a == "--plugin" || a.starts_with("--plugin=") || a == "--static")
    {
        return Err("usage: cargo xtask conformance --plugin LIB [--driver NAME]...".into());
    }
    let mut c = cargo();
    c.args([
        "run",
        "-q",
        "-p",
        "blk-tests",
        "--bin",
        "blk-conformance",
        "--",
    ]);
    c.args(absolute_plugin_args(args)?);
    run(c)
}

/// `args` with every `--plugin LIB` / `--plugin=LIB` made absolute against
/// the directory `cargo xtask` was invoked from (cargo then runs from the
/// workspace root).
fn absolute_plugin_args(args: &[String]) -> Result<Vec<String>, String> {
    let abs = |lib: &str| -> Result<String, String> {
        std::fs::canonicalize(lib)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| format!("plugin library {lib}: {e}"))
    };
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--plugin" {
            out.push(a.clone());
            let lib = it.next().ok_or("--plugin needs a library path")?;
            out.push(abs(lib)?);
        } else if let Some(lib) = a.strip_prefix("--plugin=") {
            out.push(format!("--plugin={}", abs(lib)?));
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

fn blk(bin: &Path, args: &[&str]) -> Result<String, String> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect();
    println!("$ blk {}", shown.join(" "));
    // Only the plugin libraries serve the demo: leave the linked-in drivers out.
    let out = Command::new(bin)
        .env("BLK_BUILTIN_DRIVERS", "0")
        .env_remove("BLK_PLUGIN_PATH")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run blk: {e}"))?;
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{so}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("blk {} failed with {}", args.join(" "), out.status));
    }
    Ok(so)
}

fn demo(dir: Option<&String>) -> Result<(), String> {
    let plugdir = plugins(false)?;
    let mut c = cargo();
    c.args(["build", "-p", "plugin-host", "--bins"]);
    run(c)?;
    let bin = target().join("debug").join("blk");
    let work = match dir {
        Some(d) => PathBuf::from(d),
        None => target().join("demo"),
    };
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let p = |n: &str| work.join(n).to_string_lossy().into_owned();
    let pd = plugdir.to_string_lossy().into_owned();
    println!(
        "== drivers: every one is loaded from a plugin library in {pd} (BLK_BUILTIN_DRIVERS=0)"
    );
    blk(&bin, &["--plugin-dir", &pd, "plugins"])?;
    let img = p("disk.qcow2");
    println!("\n== create a 64 MiB qcow2 image");
    blk(
        &bin,
        &["--plugin-dir", &pd, "create", "-f", "qcow2", &img, "64M"],
    )?;
    println!("\n== write patterns, zeroes and a discard, then read them back");
    blk(
        &bin,
        &[
            "--plugin-dir",
            &pd,
            "io",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0xcd 8M 64k",
            "-c",
            "write -z 512k 64k",
            "-c",
            "discard 8M 4k",
            "-c",
            "read -P 0xab 0 512k",
            "-c",
            "read -P 0 512k 64k",
            "-c",
            "flush",
            &img,
        ],
    )?;
    println!("\n== image info");
    blk(&bin, &["--plugin-dir", &pd, "info", &img])?;
    println!("\n== convert to raw (holes stay sparse)");
    let raw = p("disk.raw");
    blk(
        &bin,
        &["--plugin-dir", &pd, "convert", "-O", "raw", &img, &raw],
    )?;
    println!("\n== QEMU is the judge: qemu-img check and compare");
    let st = Command::new("qemu-img")
        .args(["check", &img])
        .status()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !st.success() {
        return Err("qemu-img check found problems in the image blk wrote".into());
    }
    let st = Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw", &img, &raw])
        .status()
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !st.success() {
        return Err("qemu-img compare: blk's qcow2 and raw images differ".into());
    }
    let raw_meta = std::fs::metadata(&raw).map_err(|e| e.to_string())?;
    use std::os::unix::fs::MetadataExt;
    println!(
        "\nraw image: {} bytes apparent, {} bytes allocated (sparse)",
        raw_meta.len(),
        raw_meta.blocks() * 512
    );
    println!("demo finished: files in {}", work.display());
    Ok(())
}

/// `cargo xtask bench [--no-qemu]`: a small benchmark set with the release
/// `blk bench`, next to `qemu-img bench` on the same images.
///
/// Targets: null-co (the baseline: no storage at all), raw, qcow2 freshly
/// created and qcow2 with preallocated metadata, each 256 MiB. Workloads:
/// sequential and strided ("rand") reads and writes of 4 KiB and 64 KiB,
/// queue depth 16, writeback cache (blk has no O_DIRECT, so neither side
/// uses it). Reads run on an image filled with data; every write run starts
/// from a newly created image and writes at most the image size, so "fresh"
/// runs measure cluster allocation. qemu-img bench has no random mode: "rand"
/// steps by a large odd multiple of the request size, which visits the
/// image's slots in scattered order, the same sequence for both tools.
///
/// bench reports milliseconds, so each tool's request count is scaled from
/// a calibration run until a run lasts about 0.3 s (writes: up to the image
/// size).
fn bench(args: &[String]) -> Result<(), String> {
    use std::time::Instant;

    /// Image size of the file-backed targets.
    const SIZE: u64 = 256 << 20;
    /// Queue depth of every run.
    const DEPTH: &str = "16";
    /// Stride multiplier of the "rand" workloads (prime, so odd).
    const STRIDE: u64 = 7919;
    /// The duration a run is scaled to, in seconds.
    const RUN_SECS: f64 = 0.3;

    struct Target {
        name: &'static str,
        fmt: &'static str,
        create: Option<&'static [&'static str]>,
    }
    struct Workload {
        name: &'static str,
        write: bool,
        bs: u64,
        random: bool,
    }

    /// Runs one bench of `count` requests; returns the seconds it reported.
    fn run_bench(
        prog: &Path,
        fmt: &str,
        path: &str,
        w: &Workload,
        count: u64,
    ) -> Result<f64, String> {
        let mut c = Command::new(prog);
        let step = if w.random { w.bs * STRIDE } else { w.bs };
        c.args(["bench", "-f", fmt, "-d", DEPTH]);
        c.args(["-c", &count.to_string(), "-s", &w.bs.to_string()]);
        c.args(["-S", &step.to_string()]);
        if w.write {
            c.arg("-w");
        }
        c.arg(path);
        let out = c
            .output()
            .map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{} bench failed: {}{}",
                prog.display(),
                text,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        text.lines()
            .find_map(|l| l.strip_prefix("Run completed in "))
            .and_then(|l| l.strip_suffix(" seconds."))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("unexpected bench output: {text}"))
    }

    /// Creates the image of a target, filled with data when `fill`.
    fn prepare(t: &Target, path: &str, fill: bool) -> Result<(), String> {
        let Some(opts) = t.create else {
            return Ok(());
        };
        let _ = std::fs::remove_file(path);
        let mut c = Command::new("qemu-img");
        c.args(["create", "-q", "-f", t.fmt]).args(opts);
        c.args([path, &SIZE.to_string()]);
        let st = c
            .status()
            .map_err(|e| format!("cannot run qemu-img: {e}"))?;
        if !st.success() {
            return Err(format!("qemu-img create {} failed", t.name));
        }
        if fill {
            let count = (SIZE >> 20).to_string();
            let st = Command::new("qemu-img")
                .args(["bench", "-w", "-f", t.fmt, "-s", "1M", "-d", "4"])
                .args(["-c", &count, "--pattern", "0x5a", path])
                .stdout(std::process::Stdio::null())
                .status()
                .map_err(|e| format!("cannot run qemu-img: {e}"))?;
            if !st.success() {
                return Err(format!("filling {} failed", t.name));
            }
        }
        Ok(())
    }

    /// Runs a workload with one tool: a calibration run, then a run scaled
    /// to about RUN_SECS. Returns (requests, seconds).
    fn measure(prog: &Path, t: &Target, path: &str, w: &Workload) -> Result<(u64, f64), String> {
        let cap = if w.write && t.create.is_some() {
            SIZE / w.bs
        } else {
            i32::MAX as u64
        };
        let mut count = (8192u64).min(cap);
        loop {
            if w.write {
                prepare(t, path, false)?;
            }
            let secs = run_bench(prog, t.fmt, path, w, count)?;
            let want = ((count as f64) * RUN_SECS / secs.max(0.001)) as u64;
            let next = want.min(cap);
            if secs >= RUN_SECS / 3.0 || next <= count {
                return Ok((count, secs.max(0.001)));
            }
            count = next;
        }
    }

    let with_qemu = !args.iter().any(|a| a == "--no-qemu");
    if let Some(a) = args.iter().find(|a| *a != "--no-qemu") {
        return Err(format!(
            "bench: unknown argument '{a}' (usage: cargo xtask bench [--no-qemu])"
        ));
    }
    if Command::new("qemu-img").arg("--version").output().is_err() {
        return Err("bench needs qemu-img (it creates the images)".into());
    }
    let mut c = cargo();
    c.args(["build", "--release", "-p", "plugin-host", "--bin", "blk"]);
    run(c)?;
    let bin = target().join("release").join("blk");
    let qemu_img = PathBuf::from("qemu-img");
    let dir = target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let targets = [
        Target {
            name: "null-co",
            fmt: "null-co",
            create: None,
        },
        Target {
            name: "raw",
            fmt: "raw",
            create: Some(&[]),
        },
        Target {
            name: "qcow2",
            fmt: "qcow2",
            create: Some(&[]),
        },
        Target {
            name: "qcow2-prealloc",
            fmt: "qcow2",
            create: Some(&["-o", "preallocation=metadata"]),
        },
    ];
    let workloads = [
        Workload {
            name: "seq-read 4k",
            write: false,
            bs: 4 << 10,
            random: false,
        },
        Workload {
            name: "rand-read 4k",
            write: false,
            bs: 4 << 10,
            random: true,
        },
        Workload {
            name: "seq-read 64k",
            write: false,
            bs: 64 << 10,
            random: false,
        },
        Workload {
            name: "rand-read 64k",
            write: false,
            bs: 64 << 10,
            random: true,
        },
        Workload {
            name: "seq-write 4k",
            write: true,
            bs: 4 << 10,
            random: false,
        },
        Workload {
            name: "rand-write 4k",
            write: true,
            bs: 4 << 10,
            random: true,
        },
        Workload {
            name: "seq-write 64k",
            write: true,
            bs: 64 << 10,
            random: false,
        },
        Workload {
            name: "rand-write 64k",
            write: true,
            bs: 64 << 10,
            random: true,
        },
    ];
    let started = Instant::now();
    let rate = |w: &Workload, (count, secs): (u64, f64)| {
        let mib = (count * w.bs) as f64 / secs / (1 << 20) as f64;
        (mib, count as f64 / secs)
    };
    println!("blk bench vs qemu-img bench: depth {DEPTH}, 256 MiB images, writeback cache");
    println!(
        "{:<15} {:<15} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "target", "workload", "blk MiB/s", "blk IOPS", "qemu MiB/s", "qemu IOPS", "blk/qemu"
    );
    for t in &targets {
        let path = match t.create {
            None => "null-co://".to_string(),
            Some(_) => dir
                .join(format!("{}.img", t.name))
                .to_string_lossy()
                .into_owned(),
        };
        let mut filled = false;
        for w in &workloads {
            if !w.write && !filled {
                prepare(t, &path, true)?;
                filled = true;
            }
            let (bm, bi) = rate(w, measure(&bin, t, &path, w)?);
            let (qm, qi, ratio) = if with_qemu {
                let (qm, qi) = rate(w, measure(&qemu_img, t, &path, w)?);
                (
                    format!("{qm:.1}"),
                    format!("{qi:.0}"),
                    format!("{:.2}", bi / qi),
                )
            } else {
                ("-".into(), "-".into(), "-".into())
            };
            println!(
                "{:<15} {:<15} {:>10.1} {:>10.0} {:>10} {:>10} {:>8}",
                t.name, w.name, bm, bi, qm, qi, ratio
            );
        }
        if t.create.is_some() {
            let _ = std::fs::remove_file(&path);
        }
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// Long mutation-fuzz run of the image parsers, every format unless some
/// are named (opt-in; the test suite runs a short one). Debug build, so arithmetic overflow is caught as a panic.
fn fuzz(args: &[String]) -> Result<(), String> {
    // Numbers are the iteration count then seeds; words name formats.
    let (numbers, formats): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.parse::<u64>().is_ok());
    let iterations = numbers
        .first()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "20000".into());
    let seeds: Vec<String> = if numbers.len() > 1 {
        numbers[1..].iter().map(|s| s.to_string()).collect()
    } else {
        vec!["1".into(), "2".into(), "3".into()]
    };
    for seed in seeds {
        let mut c = cargo();
        c.args([
            "run",
            "-q",
            "-p",
            "blk-tests",
            "--bin",
            "blk-fuzz",
            "--",
            &iterations,
            &seed,
        ]);
        c.args(&formats);
        run(c)?;
    }
    Ok(())
}

fn lint() -> Result<(), String> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    run(c)?;
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(c)?;
    // Doc comments are part of the interface: links must resolve.
    let mut c = cargo();
    c.args(["doc", "--no-deps", "--workspace", "-q"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(c)?;
    new_plugin::lint_template(&root(), &target(), run)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("plugins") => plugins(args.iter().any(|a| a == "--release")).map(|_| ()),
        Some("test") => test(&args[1..]),
        Some("conformance") => conformance(&args[1..]),
        Some("demo") => demo(args.get(1)),
        Some("bench") => bench(&args[1..]),
        Some("lint") => lint(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("new-plugin") => new_plugin::new_plugin(&root(), &args[1..]),
        _ => Err(
            "usage: cargo xtask <plugins [--release] | test | conformance --plugin LIB | demo [DIR] | bench | fuzz [ITERATIONS [SEED...]] [FORMAT...] | new-plugin NAME DIR | lint>"
                .into(),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
