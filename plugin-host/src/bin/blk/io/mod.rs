//! `blk io`: qemu-io's command language over an open image. Commands come
//! from `-c` (in order) or, without `-c`, one per line from stdin. A failed
//! command makes the exit status 1, as qemu-io 10.

mod cmds;
mod control;
mod cor;
mod getopt;
mod open_cmd;
mod read;
mod session;
mod write;

use crate::common::{CliError, CliResult, Globals};
use clap::Args;
use plugin_host::{Image, OpenOptions};
use std::io::{BufRead, Write};

/// Arguments of `blk io`.
#[derive(Args, Debug)]
pub struct IoArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Open read-only.
    #[arg(short = 'r', long = "read-only")]
    read_only: bool,
    /// Writes go to a temporary overlay, discarded at exit.
    #[arg(short = 's', long = "snapshot")]
    snapshot: bool,
    /// Copy-on-read: reads copy backing data into the image.
    #[arg(short = 'C', long = "copy-on-read")]
    copy_on_read: bool,
    /// Force shared permissions (needs -r).
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Disable the host cache (accepted, no effect).
    #[arg(short = 'n', long = "nocache")]
    nocache: bool,
    /// Cache mode (checked, no effect).
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
    /// Tracing options (as the global `-T`).
    #[arg(short = 'T', long = "trace", value_name = "TRACE")]
    trace: Vec<String>,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Open inactive (incoming migration): no writes until `activate`.
    #[arg(long = "inactive")]
    inactive: bool,
    /// Driver option `k=v,...` for the image (repeatable).
    #[arg(short = 'o', long = "option")]
    options: Vec<String>,
    /// A command to run (repeatable, in order).
    #[arg(short = 'c', long = "cmd", allow_hyphen_values = true)]
    cmds: Vec<String>,
    /// The image (none: open one with the `open` command).
    filename: Option<String>,
}

/// The state the commands work on.
pub struct Ctx<'a> {
    /// The open image.
    pub img: &'a Image,
    /// Opened read-only (writes refused before they reach the image).
    pub read_only: bool,
    /// Set by `quit`.
    pub quit: bool,
    /// Reads copy backing data into the top image (`-C`).
    pub copy_on_read: bool,
}

/// Splits a command line on spaces as qemu-io's `breakline` does.
pub fn breakline(line: &str) -> Vec<String> {
    line.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// QEMU's warning for an image whose format was probed as raw.
pub fn probe_warning(filename: &str) {
    eprintln!(
        "WARNING: Image format was not specified for '{filename}' and probing guessed raw.\n         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n         Specify the 'raw' format explicitly to remove the restrictions."
    );
}

/// Runs `blk io`.
pub fn run(g: &Globals, a: IoArgs) -> CliResult {
    if a.version {
        println!("blk io version {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    for t in &a.trace {
        if let crate::trace_opts::TraceAction::ExitOk = crate::trace_opts::apply(t)? {
            return Ok(());
        }
    }
    crate::cache_mode::check(a.cache.as_deref())?;
    if let Some(d) = a.discard.as_deref() {
        if !matches!(d, "ignore" | "off" | "unmap" | "on") {
            return Err(CliError::new(format!("Invalid discard option: {d}")));
        }
    }
    if let Some(i) = a.aio.as_deref() {
        if !matches!(i, "threads" | "native" | "io_uring") {
            return Err(CliError::new(format!("Invalid aio option: {i}")));
        }
    }
    let image_opts = crate::common::image_opts();
    if image_opts && a.format.is_some() {
        return Err(CliError::new("--image-opts and -f are mutually exclusive"));
    }
    let host = g.host()?;
    let mut session = Session {
        host: &host,
        image: None,
        quit: false,
    };
    if let Some(filename) = &a.filename {
        let direct = a.nocache || matches!(a.cache.as_deref(), Some("none" | "directsync"));
        if (a.native_aio || a.aio.as_deref() == Some("native")) && !direct {
            return Err(CliError::new(format!(
                "can't open device {filename}: aio=native was specified, but it requires cache.direct=on, which was not specified."
            )));
        }
        if a.force_share && !a.read_only {
            return Err(CliError::new(format!(
                "can't open device {filename}: force-share=on can only be used with read-only images"
            )));
        }
        let mut options = Vec::new();
        for o in &a.options {
            options.extend(crate::common::split_options(o)?);
        }
        let spec = session::OpenSpec {
            filename: filename.clone(),
            image_opts,
            opts: OpenOptions {
                format: a.format.clone(),
                read_only: a.read_only,
                force_share: a.force_share,
                inactive: a.inactive,
                options,
                ..OpenOptions::default()
            },
            snapshot: a.snapshot,
            copy_on_read: a.copy_on_read,
            // qemu-io opens an --image-opts spec without a device name.
            display_name: image_opts.then(String::new),
        };
        session.open(&spec)?;
    }
    let mut failed = false;
    if !a.cmds.is_empty() {
        for c in &a.cmds {
            if !session.run_line(c) {
                failed = true;
            }
            if session.quit {
                break;
            }
        }
    } else {
        // qemu-io prompts before every line, whether stdin is a terminal
        // or not, and once more before it sees the end of input.
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            print!("blk io> ");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            match lock.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if !session.run_line(&line) {
                        failed = true;
                    }
                    if session.quit {
                        break;
                    }
                }
                Err(e) => return Err(CliError::new(format!("reading commands: {e}"))),
            }
        }
    }
    let _ = std::io::stdout().flush();
    session.close()?;
    if failed {
        Err(CliError::silent(1))
    } else {
        Ok(())
    }
}

/// A `blk io` session: the open image, if any, and whether `quit` ran.
struct Session<'h> {
    host: &'h plugin_host::Host,
    image: Option<session::OpenImage>,
    quit: bool,
}

impl Session<'_> {
    /// Opens the session image; refused while one is open.
    fn open(&mut self, spec: &session::OpenSpec) -> CliResult {
        let oi = session::open(self.host, spec)?;
        if spec.opts.format.is_none() && !spec.image_opts && oi.img.graph().probed_raw {
            probe_warning(&spec.filename);
        }
        self.image = Some(oi);
        Ok(())
    }

    /// Closes the image: flushes it as qemu-io's `blk_unref` does.
    fn close(&mut self) -> CliResult {
        if let Some(oi) = self.image.take() {
            if !oi.img.is_inactive() && !oi.img.is_read_only() {
                oi.img.flush().map_err(CliError::from)?;
            }
        }
        Ok(())
    }

    /// Runs one command line; returns false when it failed.
    fn run_line(&mut self, line: &str) -> bool {
        let line = line.trim_end_matches(['\n', '\r']);
        let argv = breakline(line);
        if argv.is_empty() {
            return true;
        }
        let ok = self.dispatch(&argv);
        let _ = std::io::stdout().flush();
        ok
    }

    fn dispatch(&mut self, argv: &[String]) -> bool {
        match argv[0].as_str() {
            "open" | "o" => return self.open_cmd(argv),
            "close" | "c" if self.image.is_some() && argv.len() == 1 => {
                return self.close().is_ok();
            }
            _ => {}
        }
        let Some(oi) = &self.image else {
            return match cmds::find(&argv[0]) {
                None => {
                    eprintln!("command \"{}\" not found", argv[0]);
                    false
                }
                Some(c) if matches!(c.name, "help" | "quit" | "sleep") => {
                    let r = control::global_command(argv);
                    if c.name == "quit" {
                        self.quit = true;
                    }
                    r >= 0
                }
                Some(_) => {
                    eprintln!("no file open, try 'help open'");
                    false
                }
            };
        };
        let mut ctx = Ctx {
            img: &oi.img,
            read_only: oi.read_only,
            quit: false,
            copy_on_read: oi.copy_on_read,
        };
        let ok = cmds::dispatch(&mut ctx, argv) >= 0;
        if ctx.quit {
            self.quit = true;
        }
        ok
    }

    /// qemu-io's `open [-rsCnkU] [-t cache] [-d discard] [-o options] [path]`.
    fn open_cmd(&mut self, argv: &[String]) -> bool {
        if argv.len() < 2 {
            eprintln!("bad argument count 0 to open, expected at least 1 arguments");
            return false;
        }
        let spec = match open_cmd::parse(argv) {
            Ok(s) => s,
            Err(()) => return false,
        };
        if self.image.is_some() {
            eprintln!("blk: file open already, try 'help close'");
            return false;
        }
        match self.open(&spec) {
            Ok(()) => true,
            Err(e) => {
                if let Some(m) = e.msg {
                    eprintln!("blk: {m}");
                }
                false
            }
        }
    }
}
