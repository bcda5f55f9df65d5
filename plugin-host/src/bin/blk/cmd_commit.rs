//! `blk commit`: qemu-img commit of an image into its backing file.

use crate::common::{open_image, CliError, CliResult, Globals};
use block_core::ExtentFlags;
use clap::Args;
use plugin_host::OpenOptions;

/// Arguments of `blk commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// The base to commit into (any image of the backing chain); implies -d.
    #[arg(short = 'b', long = "base")]
    base: Option<String>,
    /// Do not empty the image after committing.
    #[arg(short = 'd', long = "drop")]
    keep: bool,
    /// Show progress.
    #[arg(short = 'p', long = "progress")]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Cache mode (accepted, no effect).
    #[arg(short = 't')]
    cache: Option<String>,
    /// Rate limit in bytes per second (k/M/G suffixes).
    #[arg(short = 'r', allow_hyphen_values = true)]
    rate: Option<String>,
    /// The image.
    filename: String,
}

/// Runs `blk commit`.
pub fn run(g: &Globals, a: CommitArgs) -> CliResult {
    crate::cache_mode::check(a.cache.as_deref())?;
    let rate = crate::convert_rate::parse(a.rate.as_deref())?;
    let host = g.host()?;
    let top = open_image(
        &host,
        &a.filename,
        &OpenOptions {
            format: a.format.clone(),
            no_backing: true,
            ..OpenOptions::default()
        },
    )?;
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet, 1.0);
    progress.print(0.0, 100);
    let info = top.info()?;
    let Some(base_name) = info.full_backing_filename.clone() else {
        return Err(CliError::new("Image does not have a backing file"));
    };
    if let Some(b) = &a.base {
        let canon = |p: &str| std::fs::canonicalize(p).ok();
        if canon(b) != canon(&base_name) {
            // A base further down: commit through the intermediates (the
            // top stays open, and locked, meanwhile).
            crate::commit_base::commit_to(&host, &a.filename, a.format.clone(), b, rate.as_ref())?;
            drop(top);
            if !a.quiet {
                println!("Image committed.");
            }
            return Ok(());
        }
    }
    // Exclusive: the base is overwritten (and may grow); any other holder
    // refuses before a byte of it changes (docs/data-safety.md).
    let base_opts = OpenOptions {
        format: info.node.backing_filename_format.clone(),
        no_backing: true,
        exclusive: true,
        ..OpenOptions::default()
    };
    // qemu-img meets a base that cannot be written (a lock conflict, a
    // file it may not open for writing) when its commit job reopens the
    // base read-write, and reports the reopen's own words, without
    // "Could not open 'BASE':" around them.
    let base = host
        .open(&base_name, &base_opts)
        .map_err(|e| CliError::new(crate::common::open_detail(&e, &base_name)))?;
    let len = top.length()?;
    if base.length()? < len {
        base.truncate(len, block_core::Preallocation::Off)?;
    }
    let mut off = 0u64;
    let mut buf = Vec::new();
    while off < len {
        let e = top.block_status(off, (len - off).min(1 << 30))?;
        let n = e.length.clamp(1, len - off);
        if e.flags.contains(ExtentFlags::ALLOCATED) {
            if e.flags.contains(ExtentFlags::ZERO) {
                base.write_zeroes(off, n, block_core::ZeroFlags::MAY_UNMAP)?;
                if let Some(r) = &rate {
                    r.pay_after(n);
                }
            } else {
                let mut pos = off;
                while pos < off + n {
                    let m = (off + n - pos).min(2 << 20);
                    buf.resize(m as usize, 0);
                    top.read(pos, &mut buf)?;
                    base.write(pos, &buf)?;
                    if let Some(r) = &rate {
                        r.pay_after(m);
                    }
                    pos += m;
                }
            }
        }
        off += n;
        // qemu-img reports the commit job's offset in single precision.
        progress.set(off as f32 / len as f32 * 100.0);
    }
    base.flush()?;
    drop(base);
    // As qemu-img: empty the top image unless -d (or -b, which implies it);
    // formats that cannot be emptied (raw) are left as they are.
    if !a.keep && a.base.is_none() {
        match top.make_empty() {
            Ok(()) => {}
            Err(e) if e.kind == block_core::ErrorKind::Unsupported => {
                log::info!("{}: not emptied: {e}", a.filename);
            }
            Err(e) => return Err(CliError::from(e)),
        }
    }
    top.flush()?;
    progress.set(100.0);
    progress.end();
    if !a.quiet {
        println!("Image committed.");
    }
    Ok(())
}
