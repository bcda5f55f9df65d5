//! `blk measure`: qemu-img measure. How many bytes an image of the output
//! format needs, for an empty image of `--size` bytes or to hold the data of
//! a source image (its data ranges through the backing chain, as the block
//! status reports them): `plugin_host::ops::measure` behind qemu-img's
//! arguments and output.

use crate::args::cvtnum_full;
use crate::common::{parse_output, CliError, CliResult, Globals, OutputFormat};
use crate::opts_check::check_options;
use crate::qjson::QObj;
use crate::snapshot_src::{open_snapshot, parse_snapshot_param};
use block_core::{DriverCaps, ErrorKind};
use clap::Args;
use plugin_host::ops::{self, CancelToken, MeasureQuery, OpError};
use plugin_host::OpenOptions;

/// Arguments of `blk measure`.
#[derive(Args, Debug)]
pub struct MeasureArgs {
    /// Source image format (probed when absent).
    #[arg(short = 'f', long = "format", value_name = "FMT")]
    format: Option<String>,
    /// Output format create options `k=v,...` (repeatable).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Output image format (default raw).
    #[arg(short = 'O', long = "target-format", value_name = "FMT")]
    out_format: Option<String>,
    /// Measure the source as of this internal snapshot.
    #[arg(short = 'l', long = "snapshot", value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Output format: human or json.
    #[arg(long = "output", value_name = "OFMT")]
    output: Option<String>,
    /// Measure an empty image of this virtual size.
    #[arg(
        short = 's',
        long = "size",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    size: Option<String>,
    /// Open the source in shared mode.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The source image.
    files: Vec<String>,
}

/// Runs `blk measure`.
pub fn run(g: &Globals, a: MeasureArgs) -> CliResult {
    crate::common::check_option_lists(&a.options)?;
    let size = a
        .size
        .as_deref()
        .map(|s| cvtnum_full("image size", s, 0, i64::MAX as u64))
        .transpose()?;
    let output = parse_output("measure", a.output.as_deref())?;
    if a.files.len() > 1 {
        return Err(CliError::new("At most one filename argument is allowed."));
    }
    let filename = a.files.first();
    if filename.is_none()
        && (crate::common::image_opts() || a.format.is_some() || a.snapshot.is_some())
    {
        return Err(CliError::new(
            "--image-opts, -f, and -l require a filename argument.",
        ));
    }
    if filename.is_some() && size.is_some() {
        return Err(CliError::new(
            "--size N cannot be used together with a filename.",
        ));
    }
    if filename.is_none() && size.is_none() {
        return Err(CliError::new(
            "Either --size N or one filename must be specified.",
        ));
    }
    let host = g.host()?;
    let mut source = None;
    if let Some(f) = filename {
        let opts = OpenOptions {
            format: a.format.clone(),
            read_only: true,
            force_share: a.force_share,
            ..OpenOptions::default()
        };
        let mut img = crate::common::open_image_data(&host, f, &opts)?;
        if let Some(l) = &a.snapshot {
            let p = parse_snapshot_param(l)?;
            img = open_snapshot(&host, img, f, &opts, &p)?;
        }
        source = Some(img);
    }
    let out_fmt = a.out_format.as_deref().unwrap_or("raw");
    let drv = host
        .registry()
        .get(out_fmt)
        .ok_or_else(|| CliError::new(format!("Unknown file format '{out_fmt}'")))?;
    if !drv.driver.caps().contains(DriverCaps::CREATE) {
        return Err(CliError::new(format!(
            "Format driver '{out_fmt}' does not support image creation"
        )));
    }
    let options = a.options.join(",");
    // The file protocol's options (nocow, ...) are accepted, as QEMU
    // appends them, and change nothing in the answer.
    let schema = crate::cmd_create::merged_create_options(&host, out_fmt, "")?;
    let own = drv.driver.create_options();
    // Enumerated values are the driver's to check, as QEMU's measure.
    let values =
        check_options(&crate::cmd_create::loosen_enums(&schema), &options).map_err(|m| {
            CliError::new(format!(
                "{m}\nblk: Invalid options for file format '{out_fmt}'"
            ))
        })?;
    let query = MeasureQuery {
        format: out_fmt.to_string(),
        options: values
            .values
            .iter()
            .filter(|(k, _)| k != "size" && own.iter().any(|o| &o.name == k))
            .cloned()
            .collect(),
        size: size.unwrap_or(0),
    };
    let res = ops::measure(
        &host,
        source.as_ref(),
        &query,
        &ops::no_progress,
        &CancelToken::new(),
    )
    .map_err(|e| match e {
        OpError::At { error, .. } => CliError::new(format!(
            "Unable to get block status: {}",
            crate::human::strerror(crate::common::errno_of(&error))
        )),
        OpError::Block(e) if e.kind == ErrorKind::Unsupported => CliError::new(format!(
            "Block driver '{out_fmt}' does not support size measurement"
        )),
        OpError::Block(e) => CliError::new(e.message.clone()),
        e => CliError::new(e.to_string()),
    })?;
    // QEMU reports the size of persistent dirty bitmaps when the source
    // supports them and the target can store them (the driver answers).
    let bitmaps = res.bitmaps;
    match output {
        OutputFormat::Human => {
            println!("required size: {}", res.required);
            println!("fully allocated size: {}", res.fully_allocated);
            if let Some(b) = bitmaps {
                println!("bitmaps size: {b}");
            }
        }
        OutputFormat::Json => {
            let mut d = QObj::dict();
            d.put("required", res.required);
            d.put("fully-allocated", res.fully_allocated);
            d.put_opt("bitmaps", bitmaps);
            println!("{}", d.to_pretty());
        }
    }
    Ok(())
}
