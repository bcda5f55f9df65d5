//! `blk map`: qemu-img map's output over `plugin_host::ops::map_each`
//! (extents merged exactly as qemu-img merges them).

use crate::common::{parse_output, CliError, CliResult, Globals, OutputFormat};
use clap::Args;
use plugin_host::ops::{self, CancelToken, MapEntry, MapRequest, OpError};
use plugin_host::OpenOptions;

/// Arguments of `blk map`.
#[derive(Args, Debug)]
pub struct MapArgs {
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format")]
    format: Option<String>,
    /// Output format: human or json.
    #[arg(long = "output", value_name = "FMT")]
    output: Option<String>,
    /// Start at this offset.
    #[arg(short = 's', long = "start-offset", allow_hyphen_values = true)]
    start_offset: Option<String>,
    /// Map at most this many bytes.
    #[arg(short = 'l', long = "max-length", allow_hyphen_values = true)]
    max_length: Option<String>,
    /// Force shared permissions.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// The image.
    filename: String,
}

fn hex(v: u64) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Prints one entry (`last`: no entry follows). The library merges as the
/// human output needs (`merge_unmapped`).
fn dump(out: OutputFormat, e: &MapEntry, last: bool) -> CliResult {
    match out {
        OutputFormat::Human => {
            if e.data && e.offset.is_none() {
                return Err(CliError::new(
                    "File contains external, encrypted or compressed clusters.",
                ));
            }
            if e.data && !e.zero {
                println!(
                    "{:<16}{:<16}{:<16}{}",
                    hex(e.start),
                    hex(e.length),
                    hex(e.offset.unwrap_or(0)),
                    e.filename.as_deref().unwrap_or("")
                );
            }
        }
        OutputFormat::Json => {
            let mut s = format!(
                "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
                e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
            );
            if let Some(o) = e.offset {
                s.push_str(&format!(", \"offset\": {o}"));
            }
            s.push('}');
            if !last {
                println!("{s},");
            } else {
                print!("{s}");
            }
        }
    }
    Ok(())
}

fn size_opt(s: Option<&str>, what: &str) -> CliResult<Option<u64>> {
    s.map(|v| crate::args::cvtnum_full(what, v, 0, i64::MAX as u64))
        .transpose()
}

/// Runs `blk map`.
pub fn run(g: &Globals, a: MapArgs) -> CliResult {
    let out = parse_output("map", a.output.as_deref())?;
    let start = size_opt(a.start_offset.as_deref(), "start offset")?.unwrap_or(0);
    let max_len = size_opt(a.max_length.as_deref(), "max length")?;
    let host = g.host()?;
    let opts = OpenOptions {
        format: a.format.clone(),
        read_only: true,
        force_share: a.force_share,
        ..OpenOptions::default()
    };
    let img = crate::common::open_image_data(&host, &a.filename, &opts)?;
    match out {
        OutputFormat::Human => println!("{:<16}{:<16}{:<16}File", "Offset", "Length", "Mapped to"),
        OutputFormat::Json => print!("["),
    }
    let req = MapRequest {
        start,
        max_length: max_len,
        merge_unmapped: out == OutputFormat::Human,
    };
    let mut failure = None;
    ops::map_each(
        &img,
        &req,
        &ops::no_progress,
        &CancelToken::new(),
        &mut |e, last| match dump(out, e, last) {
            Ok(()) => true,
            Err(err) => {
                failure = Some(err);
                false
            }
        },
    )
    .map_err(|e| match e {
        OpError::At { error, .. } => CliError::new(format!(
            "Could not read file metadata: {}",
            crate::human::strerror(error.errno())
        )),
        OpError::Block(e) => CliError::from(e),
        e => CliError::new(e.to_string()),
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    if out == OutputFormat::Json {
        println!("]");
    }
    Ok(())
}
