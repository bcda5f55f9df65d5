//! `cargo xtask`: the workspace's task runner.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Driver crates built as plugin libraries.
const DRIVERS: &[&str] = &["blk-file", "blk-raw", "blk-null", "blk-qcow2"];

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
    run(c)
}

fn conformance(args: &[String]) -> Result<(), String> {
    if !args.iter().any(|a| a == "--plugin" || a == "--static") {
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
    c.args(args);
    run(c)
}

fn blk(bin: &Path, args: &[&str]) -> Result<String, String> {
    let shown: Vec<String> = args
        .iter()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.to_string() })
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
    println!("== drivers: every one is loaded from a plugin library in {pd} (BLK_BUILTIN_DRIVERS=0)");
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

fn bench(args: &[String]) -> Result<(), String> {
    let mut c = cargo();
    c.args(["build", "--release", "-p", "plugin-host", "--bins"]);
    run(c)?;
    let bin = target().join("release").join("blk");
    let dir = target().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _ = args;
    let img = dir.join("bench.qcow2").to_string_lossy().into_owned();
    let raw = dir.join("bench.raw").to_string_lossy().into_owned();
    for (fmt, path) in [("raw", &raw), ("qcow2", &img)] {
        let st = Command::new(&bin)
            .args(["create", "-q", "-f", fmt, path, "1G"])
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("create {fmt} failed"));
        }
        for (what, extra) in [("write", vec!["-w"]), ("read", vec![])] {
            let mut c = Command::new(&bin);
            c.args([
                "bench", "-f", fmt, "-c", "20000", "-d", "16", "-s", "64k", "-t", "none",
            ]);
            c.args(&extra);
            c.arg(path);
            println!("== {fmt} {what} 64k x 20000, depth 16");
            run(c)?;
        }
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
    run(c)
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
        _ => Err(
            "usage: cargo xtask <plugins [--release] | test | conformance --plugin LIB | demo [DIR] | bench | lint>"
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
