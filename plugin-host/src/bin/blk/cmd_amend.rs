//! `blk amend`: qemu-img amend. Changes format options of an existing image
//! (qcow2 compat, lazy_refcounts, refcount_bits, size...), checked against
//! the driver's amend schema with qemu-img's messages.

use crate::cmd_create::{has_help_option, print_opt_lines};
use crate::common::{open_image, CliError, CliResult, Globals};
use block_core::engine::amend_options::parse_amend_options;
use block_core::options::split_option_string;
use clap::Args;
use plugin_host::{Host, OpenOptions};

/// Arguments of `blk amend`.
#[derive(Args, Debug)]
pub struct AmendArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format", value_name = "FMT")]
    format: Option<String>,
    /// Options to change, `k=v,...` (repeatable; `-o help` lists them).
    #[arg(short = 'o', long = "options", value_name = "OPTIONS")]
    options: Vec<String>,
    /// Cache mode (validated, no effect).
    #[arg(short = 't', long = "cache", value_name = "CACHE")]
    cache: Option<String>,
    /// Show progress.
    #[arg(short = 'p', long = "progress")]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// Allow unsafe operations (the library's amend has no such switch yet:
    /// accepted, no effect).
    #[arg(long = "force")]
    force: bool,
    /// The image.
    files: Vec<String>,
}

/// Prints the amend options of `fmt` ("Amend options for 'FMT':").
fn print_amend_help(host: &Host, fmt: &str) -> CliResult {
    let d = host
        .registry()
        .get(fmt)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{fmt}'")))?;
    let schema = d.driver.amend_options();
    if schema.is_empty() {
        return Err(not_supported(fmt));
    }
    println!("Amend options for '{fmt}':");
    print_opt_lines(&schema);
    Ok(())
}

fn not_supported(fmt: &str) -> CliError {
    CliError::new(format!(
        "Format driver '{fmt}' does not support option amendment"
    ))
}

/// Runs `blk amend`.
pub fn run(g: &Globals, a: AmendArgs) -> CliResult {
    crate::common::check_option_lists(&a.options)?;
    if a.options.is_empty() {
        return Err(CliError::usage("amend", "Must specify options (-o)"));
    }
    let options = a.options.join(",");
    let host = g.host()?;
    if let (Some(f), true) = (&a.format, has_help_option(&options)) {
        return print_amend_help(&host, f);
    }
    if a.files.len() != 1 {
        return Err(CliError::new("Expecting one image file name"));
    }
    let filename = &a.files[0];
    if let Some(c) = &a.cache {
        if !matches!(
            c.as_str(),
            "none" | "off" | "writeback" | "writethrough" | "directsync" | "unsafe"
        ) {
            return Err(CliError::new(format!("Invalid cache option: {c}")));
        }
    }
    let img = open_image(
        &host,
        filename,
        &OpenOptions {
            format: a.format.clone(),
            ..OpenOptions::default()
        },
    )?;
    let fmt = img.format().to_string();
    if has_help_option(&options) {
        return print_amend_help(&host, &fmt);
    }
    let drv = host
        .registry()
        .get(&fmt)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{fmt}'")))?;
    let schema = drv.driver.amend_options();
    if schema.is_empty() {
        return Err(not_supported(&fmt));
    }
    // Enumerated values (compat) are the driver's to check, as QEMU's;
    // the engine adds QEMU's hint for create-only options.
    let pairs = split_option_string(&options).map_err(|e| CliError::new(e.message))?;
    let create = drv.driver.create_options();
    let values =
        parse_amend_options(&schema, &create, &pairs).map_err(|e| CliError::new(e.message))?;
    if a.force {
        log::info!("--force: the library's amend has no force switch");
    }
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet, 1.0);
    progress.print(0.0, 100);
    let r = img.amend(&values.values);
    progress.set(100.0);
    progress.end();
    r.map_err(|e| {
        // A driver without amend; a refusal of the driver's own (QEMU's
        // ENOTSUP: "Cannot downgrade ...") keeps its words.
        if e.is_unsupported_operation() {
            not_supported(&fmt)
        } else {
            CliError::new(e.message.clone())
        }
    })?;
    img.flush()?;
    Ok(())
}
