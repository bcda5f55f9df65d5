//! `blk io`: qemu-io's command language over an open image. Commands come
//! from `-c` (in order) or, without `-c`, one per line from stdin. A failed
//! command makes the exit status 1, as qemu-io 10.

mod cmds;
mod control;
mod getopt;
mod read;
mod write;

use crate::common::{open_detail, CliError, CliResult, Globals};
use clap::Args;
use plugin_host::{Image, OpenOptions};
use std::io::{BufRead, IsTerminal, Write};

/// Arguments of `blk io`.
#[derive(Args, Debug)]
pub struct IoArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Open read-only.
    #[arg(short = 'r', long = "read-only")]
    read_only: bool,
    /// Force shared permissions (needs -r).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Disable the host cache (accepted, no effect).
    #[arg(short = 'n', long = "nocache")]
    nocache: bool,
    /// Cache mode (accepted, no effect).
    #[arg(short = 't', long = "cache")]
    cache: Option<String>,
    /// Discard mode (accepted, no effect).
    #[arg(short = 'd', long = "discard")]
    discard: Option<String>,
    /// AIO mode (accepted, no effect).
    #[arg(short = 'i', long = "aio")]
    aio: Option<String>,
    /// Native AIO (accepted, no effect).
    #[arg(short = 'k', long = "native-aio")]
    native_aio: bool,
    /// Misalign buffers (accepted, no effect).
    #[arg(short = 'm', long = "misalign")]
    misalign: bool,
    /// Open inactive (incoming migration): no writes until `activate`.
    #[arg(long = "inactive")]
    inactive: bool,
    /// Driver option `k=v,...` for the image (repeatable).
    #[arg(short = 'o', long = "option")]
    options: Vec<String>,
    /// A command to run (repeatable, in order).
    #[arg(short = 'c', long = "cmd", allow_hyphen_values = true)]
    cmds: Vec<String>,
    /// The image.
    filename: String,
}

/// The state the commands work on.
pub struct Ctx<'a> {
    /// The open image.
    pub img: &'a Image,
    /// Opened read-only (writes refused before they reach the image).
    pub read_only: bool,
    /// Set by `quit`.
    pub quit: bool,
}

/// Splits a command line on spaces as qemu-io's `breakline` does.
pub fn breakline(line: &str) -> Vec<String> {
    line.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs one command line; returns false when it failed.
fn run_line(ctx: &mut Ctx<'_>, line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    let argv = breakline(line);
    if argv.is_empty() {
        return true;
    }
    let ok = cmds::dispatch(ctx, &argv) >= 0;
    let _ = std::io::stdout().flush();
    ok
}

/// QEMU's warning for an image whose format was probed as raw.
pub fn probe_warning(filename: &str) {
    eprintln!(
        "WARNING: Image format was not specified for '{filename}' and probing guessed raw.\n         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         Specify the 'raw' format explicitly to remove the restrictions."
    );
}

/// Runs `blk io`.
pub fn run(g: &Globals, a: IoArgs) -> CliResult {
    crate::cache_mode::check(a.cache.as_deref())?;
    let host = g.host()?;
    if a.force_share && !a.read_only {
        return Err(CliError::new(format!(
            "can't open device {}: force-share=on can only be used with read-only images",
            a.filename
        )));
    }
    let mut options = Vec::new();
    for o in &a.options {
        options.extend(crate::common::split_options(o)?);
    }
    let opts = OpenOptions {
        format: a.format.clone(),
        read_only: a.read_only,
        force_share: a.force_share,
        inactive: a.inactive,
        options,
        ..OpenOptions::default()
    };
    let img = host.open(&a.filename, &opts).map_err(|e| {
        CliError::new(format!(
            "can't open device {}: {}",
            a.filename,
            open_detail(&e, &a.filename)
        ))
    })?;
    if a.format.is_none() && img.graph().probed_raw {
        probe_warning(&a.filename);
    }
    let mut ctx = Ctx {
        img: &img,
        read_only: a.read_only || a.force_share,
        quit: false,
    };
    let mut failed = false;
    if !a.cmds.is_empty() {
        for c in &a.cmds {
            if !run_line(&mut ctx, c) {
                failed = true;
            }
            if ctx.quit {
                break;
            }
        }
    } else {
        let stdin = std::io::stdin();
        let tty = stdin.is_terminal();
        let mut lock = stdin.lock();
        loop {
            if tty {
                print!("blk> ");
                let _ = std::io::stdout().flush();
            }
            let mut line = String::new();
            match lock.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if !run_line(&mut ctx, &line) {
                        failed = true;
                    }
                    if ctx.quit {
                        break;
                    }
                }
                Err(e) => return Err(CliError::new(format!("reading commands: {e}"))),
            }
        }
    }
    let _ = std::io::stdout().flush();
    // Closing flushes like qemu-io's blk_unref; a failure is reported.
    if !img.is_inactive() && !img.is_read_only() {
        if let Err(e) = img.flush() {
            return Err(CliError::from(e));
        }
    }
    drop(img);
    if failed {
        Err(CliError::silent(1))
    } else {
        Ok(())
    }
}
