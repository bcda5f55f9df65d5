//! `blk`: the command line of the blk block layer, a drop-in for `qemu-img`
//! and `qemu-io` (subcommands, flags, exit codes, output lines and JSON names
//! as QEMU 10's).

mod args;
mod cache_mode;
mod cmd_amend;
mod cmd_bench;
mod cmd_bitmap;
mod cmd_check;
mod cmd_commit;
mod cmd_compare;
mod cmd_convert;
mod cmd_create;
mod cmd_dd;
mod cmd_info;
mod cmd_map;
mod cmd_measure;
mod cmd_plugins;
mod cmd_rebase;
mod cmd_resize;
mod cmd_snapshot;
mod commit_base;
mod common;
mod convert_bitmaps;
mod convert_progress;
mod convert_rate;
mod human;
mod io;
mod objects;
mod opts_check;
mod progress;
mod qemu_opts;
mod qjson;
mod rebase_compress;
mod snapshot_src;
mod snapshots;
mod target_check;
mod trace_opts;
mod usage_error;

use clap::{Parser, Subcommand};
use common::{CliResult, Globals};
use std::io::Write;

/// The blk block layer tool (qemu-img and qemu-io compatible).
#[derive(Parser, Debug)]
#[command(name = "blk", version, about, disable_help_subcommand = true)]
struct Cli {
    /// Load every plugin library in DIR (repeatable).
    #[arg(long = "plugin-dir", value_name = "DIR", global = false)]
    plugin_dir: Vec<String>,
    /// More log output (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Define a QEMU user-creatable object (`secret,id=ID,data=...`).
    #[arg(long = "object", value_name = "OBJDEF", global = true)]
    object: Vec<String>,
    /// The image arguments are option strings (`driver=qcow2,file.filename=...`).
    #[arg(long = "image-opts", global = true)]
    image_opts: bool,
    /// Tracing options `[[enable=]PATTERN][,events=FILE][,file=FILE]`
    /// (blk has no trace events; accepted as qemu-img accepts them).
    #[arg(short = 'T', long = "trace", value_name = "TRACE")]
    trace: Vec<String>,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the registered drivers and where they come from.
    Plugins(cmd_plugins::PluginsArgs),
    /// Show information about an image (qemu-img info).
    Info(cmd_info::InfoArgs),
    /// Create an image (qemu-img create).
    Create(cmd_create::CreateArgs),
    /// Convert or copy images (qemu-img convert).
    Convert(cmd_convert::ConvertArgs),
    /// Run qemu-io commands against an image (qemu-io).
    Io(io::IoArgs),
    /// Check an image for consistency (qemu-img check).
    Check(cmd_check::CheckArgs),
    /// Dump the allocation map of an image (qemu-img map).
    Map(cmd_map::MapArgs),
    /// Compare the contents of two images (qemu-img compare).
    Compare(cmd_compare::CompareArgs),
    /// List, create, apply or delete internal snapshots (qemu-img snapshot).
    Snapshot(cmd_snapshot::SnapshotArgs),
    /// Change the virtual size of an image (qemu-img resize).
    Resize(cmd_resize::ResizeArgs),
    /// Change the backing file of an image (qemu-img rebase).
    Rebase(cmd_rebase::RebaseArgs),
    /// Commit an image's changes into its backing file (qemu-img commit).
    Commit(cmd_commit::CommitArgs),
    /// Run a simple I/O benchmark (qemu-img bench).
    Bench(cmd_bench::BenchArgs),
    /// Copy an image with dd-style operands (qemu-img dd).
    Dd(cmd_dd::DdArgs),
    /// Change format options of an image (qemu-img amend).
    Amend(cmd_amend::AmendArgs),
    /// Calculate the file size needed for a new image (qemu-img measure).
    Measure(cmd_measure::MeasureArgs),
    /// Modify persistent dirty bitmaps (qemu-img bitmap).
    Bitmap(cmd_bitmap::BitmapArgs),
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s.to_string()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_string()
        };
        let _ = std::io::stdout().flush();
        eprintln!("blk: internal error: {msg}");
        std::process::exit(1);
    }));
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(default);
    let _ = env_logger::Builder::from_env(env)
        .format(|buf, rec| {
            let msg = rec.args().to_string();
            if let Some(m) = check_message(rec.level(), &msg) {
                return writeln!(buf, "{m}");
            }
            if rec.level() == log::Level::Warn {
                // As QEMU's warn_report; a hint (block_core::hint!)
                // continues the previous warning bare and, as QEMU's
                // error_printf hints do, without a newline.
                if block_core::diag::is_hint_target(rec.target()) {
                    return write!(buf, "{msg}");
                }
                return writeln!(buf, "blk: warning: {msg}");
            }
            writeln!(buf, "[{:<5} {}] {msg}", rec.level(), rec.target())
        })
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// A check finding logged as "FMT check: MESSAGE" by a plugin driver built
/// before findings travelled in the `CheckReport` (`blk check` prints
/// those from the report), as qemu-img prints it on stderr: bare, errors
/// starting with "ERROR".
fn check_message(level: log::Level, msg: &str) -> Option<String> {
    let (fmt, rest) = msg.split_once(" check: ")?;
    if fmt.is_empty() || fmt.contains(' ') {
        return None;
    }
    if level == log::Level::Error && !rest.starts_with("ERROR") {
        Some(format!("ERROR {rest}"))
    } else {
        Some(rest.to_string())
    }
}

/// `--object` and `--image-opts` are options of the subcommands that
/// qemu-img gives them: elsewhere they are refused as unknown options.
fn surface_refusal(cli: &Cli) -> Option<String> {
    let (takes_object, name) = match &cli.cmd {
        Command::Plugins(_) => (false, "plugins"),
        Command::Create(_) => (true, "create"),
        _ => return None,
    };
    let bad = if !cli.object.is_empty() && !takes_object {
        "--object"
    } else if cli.image_opts {
        "--image-opts"
    } else {
        return None;
    };
    Some(format!(
        "blk {name}: unrecognized option '{bad}'\nTry 'blk {name} --help' for more info"
    ))
}

fn run(cli: Cli) -> CliResult {
    let g = Globals {
        plugin_dirs: cli.plugin_dir,
    };
    match cli.cmd {
        Command::Plugins(a) => cmd_plugins::run(&g, a),
        Command::Info(a) => cmd_info::run(&g, a),
        Command::Create(a) => cmd_create::run(&g, a),
        Command::Convert(a) => cmd_convert::run(&g, a),
        Command::Io(a) => io::run(&g, a),
        Command::Check(a) => cmd_check::run(&g, a),
        Command::Map(a) => cmd_map::run(&g, a),
        Command::Compare(a) => cmd_compare::run(&g, a),
        Command::Snapshot(a) => cmd_snapshot::run(&g, a),
        Command::Resize(a) => cmd_resize::run(&g, a),
        Command::Rebase(a) => cmd_rebase::run(&g, a),
        Command::Commit(a) => cmd_commit::run(&g, a),
        Command::Bench(a) => cmd_bench::run(&g, a),
        Command::Measure(a) => cmd_measure::run(&g, a),
        Command::Amend(a) => cmd_amend::run(&g, a),
        Command::Dd(a) => cmd_dd::run(&g, a),
        Command::Bitmap(a) => cmd_bitmap::run(&g, a),
    }
}

fn main() {
    install_panic_hook();
    // Behave like the C tools when stdout is a closed pipe.
    // SAFETY: setting a signal disposition to the default at startup.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    std::process::exit(0);
                }
                _ => {
                    match usage_error::qemu_style(&e, &argv) {
                        Some(m) => eprintln!("{m}"),
                        None => {
                            let _ = e.print();
                        }
                    }
                    std::process::exit(1);
                }
            }
        }
    };
    init_logging(cli.verbose);
    if let Some(opt) = usage_error::misplaced_subcommand_option(&argv) {
        eprintln!("blk: unrecognized option '{opt}'\nTry 'blk --help' for more info");
        std::process::exit(1);
    }
    if let Some(m) = surface_refusal(&cli) {
        eprintln!("{m}");
        std::process::exit(1);
    }
    common::set_image_opts(cli.image_opts);
    for t in &cli.trace {
        match trace_opts::apply(t) {
            Ok(trace_opts::TraceAction::Continue) => {}
            Ok(trace_opts::TraceAction::ExitOk) => std::process::exit(0),
            Err(e) => {
                if let Some(m) = &e.msg {
                    eprintln!("blk: {m}");
                }
                std::process::exit(e.code);
            }
        }
    }
    match objects::install(&cli.object) {
        Ok(objects::ObjectsOutcome::Continue) => {}
        Ok(objects::ObjectsOutcome::ExitOk) => std::process::exit(0),
        Err(e) => {
            if let Some(m) = &e.msg {
                eprintln!("blk: {m}");
            }
            std::process::exit(e.code);
        }
    }
    let code = match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let _ = std::io::stdout().flush();
            if let Some(m) = &e.msg {
                eprintln!("blk: {m}");
            }
            e.code
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
