//! `blk resize`: qemu-img resize (`[+|-]SIZE`, `--shrink`, `--preallocation`).

use crate::common::{open_image, CliError, CliResult, Globals};
use block_core::Preallocation;
use clap::Args;
use plugin_host::OpenOptions;

/// Arguments of `blk resize`.
#[derive(Args, Debug)]
pub struct ResizeArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Allow shrinking.
    #[arg(long = "shrink")]
    shrink: bool,
    /// Preallocation of the new area: off, metadata, falloc, full.
    #[arg(long = "preallocation")]
    preallocation: Option<String>,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// The image.
    filename: String,
    /// The new size, or `+SIZE` / `-SIZE` relative to the current one.
    #[arg(allow_hyphen_values = true)]
    size: String,
}

/// Runs `blk resize`.
pub fn run(g: &Globals, a: ResizeArgs) -> CliResult {
    let prealloc = match a.preallocation.as_deref() {
        None => Preallocation::Off,
        Some(p) => Preallocation::parse(p)
            .ok_or_else(|| CliError::new(format!("Invalid preallocation mode '{p}'")))?,
    };
    let (rel, text) = match a.size.as_bytes().first() {
        Some(b'+') => (1i8, &a.size[1..]),
        Some(b'-') => (-1i8, &a.size[1..]),
        _ => (0i8, a.size.as_str()),
    };
    let bad = || {
        CliError::new(
            "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.",
        )
    };
    let n = match crate::human::strtosz(text) {
        Ok(n) => n,
        // Below 2^64 but past INT64_MAX: qemu-img's int64_t size turns
        // negative.
        Err(libc::ERANGE) if below_2_64(text) => {
            return Err(CliError::new("New image size must be positive"))
        }
        Err(libc::ERANGE) => {
            return Err(CliError::new(format!(
                "Value '{text}' is out of range for parameter 'size'"
            )))
        }
        Err(_) => return Err(bad()),
    };
    let host = g.host()?;
    // Exclusive: an image any other process holds open is not truncated,
    // even by a holder that shares resizing.
    let opts = OpenOptions {
        format: a.format.clone(),
        exclusive: true,
        ..OpenOptions::default()
    };
    let img = open_image(&host, &a.filename, &opts)?;
    if a.format.is_none() && img.graph().probed_raw {
        crate::io::probe_warning(&a.filename);
    }
    let cur = img.length()?;
    let new = match rel {
        1 => cur.checked_add(n).ok_or_else(bad)?,
        -1 => cur
            .checked_sub(n)
            .ok_or_else(|| CliError::new("New image size must be positive"))?,
        _ => n,
    };
    // qemu-img computes the new size as an int64_t.
    if new == 0 || new > i64::MAX as u64 {
        return Err(CliError::new("New image size must be positive"));
    }
    if new < cur && !a.shrink {
        return Err(CliError::new(
            "Use the --shrink option to perform a shrink operation.\nblk: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.",
        ));
    }
    // A format that cannot fit its metadata to the size says so without
    // the operation, as qemu-img does.
    img.truncate(new, prealloc).map_err(|e| {
        CliError::new(crate::common::detail_without_op(
            &e,
            &a.filename,
            block_core::Operation::Resize,
        ))
    })?;
    img.flush()?;
    if !a.quiet {
        println!("Image resized.");
    }
    Ok(())
}

/// Whether a size text strtosz found out of range is below 2^64 (the limit
/// of qemu's size option parser).
fn below_2_64(text: &str) -> bool {
    let (num, shift) = match text.chars().last().map(|c| c.to_ascii_lowercase()) {
        Some('k') => (&text[..text.len() - 1], 10),
        Some('m') => (&text[..text.len() - 1], 20),
        Some('g') => (&text[..text.len() - 1], 30),
        Some('t') => (&text[..text.len() - 1], 40),
        Some('p') => (&text[..text.len() - 1], 50),
        Some('e') => (&text[..text.len() - 1], 60),
        Some('b') => (&text[..text.len() - 1], 0),
        _ => (text, 0),
    };
    num.parse::<f64>()
        .map(|v| v * 2f64.powi(shift) < 2f64.powi(64))
        .unwrap_or(false)
}
