//! `blk dd`: qemu-img dd. Copies `count` blocks of `bs` bytes of the input
//! image (after skipping `skip` blocks) into a newly created output image,
//! with qemu-img's operands, messages and size rules.

use crate::args::{cvtnum_full, parse_ulong};
use crate::common::{errno_of, error_detail, CliError, CliResult, Globals};
use crate::human::strerror;
use block_core::DriverCaps;
use clap::Args;
use plugin_host::OpenOptions;

/// Bytes moved per request (a multiple of `bs`; the copy is the same).
const CHUNK: u64 = 1 << 20;

/// Arguments of `blk dd`.
#[derive(Args, Debug)]
pub struct DdArgs {
    /// Input image format (probed when absent).
    #[arg(short = 'f', long = "format", value_name = "FMT")]
    format: Option<String>,
    /// Output image format (default raw).
    #[arg(short = 'O', long = "output-format", value_name = "OUTPUT_FMT")]
    out_format: Option<String>,
    /// Open the input in shared mode.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Operands: `if=INPUT of=OUTPUT [bs=BLOCK_SIZE] [count=BLOCKS] [skip=BLOCKS]`.
    operands: Vec<String>,
}

/// The parsed operands.
#[derive(Debug)]
struct Operands {
    input: Option<String>,
    output: Option<String>,
    bs: u64,
    count: Option<u64>,
    skip: Option<u64>,
}

fn parse_operands(ops: &[String]) -> CliResult<Operands> {
    let mut o = Operands {
        input: None,
        output: None,
        bs: 512,
        count: None,
        skip: None,
    };
    for arg in ops {
        let unrecognized = |k: &str| CliError::new(format!("unrecognized operand {k}"));
        let Some((k, v)) = arg.split_once('=') else {
            return Err(unrecognized(arg));
        };
        match k {
            "bs" => o.bs = cvtnum_full("bs", v, 1, i32::MAX as u64)?,
            "count" => o.count = Some(parse_ulong("count", v, 0, i64::MAX as u64)?),
            "skip" => o.skip = Some(parse_ulong("skip", v, 0, i64::MAX as u64)?),
            "if" => o.input = Some(v.to_string()),
            "of" => o.output = Some(v.to_string()),
            _ => return Err(unrecognized(k)),
        }
    }
    Ok(o)
}

/// Runs `blk dd`.
pub fn run(g: &Globals, a: DdArgs) -> CliResult {
    let ops = parse_operands(&a.operands)?;
    let (Some(input), Some(output)) = (&ops.input, &ops.output) else {
        return Err(CliError::new("Must specify both input and output files"));
    };
    let host = g.host()?;
    let src = crate::common::open_image_data(
        &host,
        input,
        &OpenOptions {
            format: a.format.clone(),
            read_only: true,
            force_share: a.force_share,
            ..OpenOptions::default()
        },
    )?;
    let out_fmt = a.out_format.as_deref().unwrap_or("raw");
    let drv = host
        .registry()
        .get(out_fmt)
        .ok_or_else(|| CliError::new("Unknown file format"))?;
    if !drv.driver.caps().contains(DriverCaps::CREATE) {
        return Err(CliError::new(format!(
            "Format driver '{out_fmt}' does not support image creation"
        )));
    }
    let mut size = src
        .length()
        .map_err(|_| CliError::new(format!("Failed to get size for '{input}'")))?;
    let bs = ops.bs;
    // As qemu-img: count limits the end of the copy, skip moves its start.
    if let Some(c) = ops.count {
        if let Some(n) = c.checked_mul(bs).filter(|n| *n < size) {
            size = n;
        }
    }
    let start = match ops.skip {
        None => Some(0),
        Some(s) => s.checked_mul(bs).filter(|p| *p <= size),
    };
    let out_size = start.map_or(0, |p| size - p);
    // The output is none of the files the input reads. qemu-img refuses by
    // its lock conflict, except over a raw input, whose file it shares.
    let raw_input = src.format() == "raw";
    crate::target_check::check_target(&[(input.as_str(), &src)], output, |c| {
        let raw_file = raw_input && c.relation == plugin_host::safety::FileRelation::Image;
        (!a.force_share && !raw_file).then(|| {
            format!(
                "{output}: error while creating output image: {}",
                crate::target_check::write_lock_message(output)
            )
        })
    })?;
    host.create(out_fmt, output, "", Some(out_size), None)
        .map_err(|e| {
            CliError::new(format!(
                "{output}: error while creating output image: {}",
                error_detail(&e, output)
            ))
        })?;
    let dst = crate::common::open_image_file(
        &host,
        output,
        &OpenOptions {
            format: Some(out_fmt.to_string()),
            exclusive: true,
            ..OpenOptions::default()
        },
    )?;
    let mut in_pos = match start {
        Some(p) => p,
        None => {
            // Like dd(1): a warning and an empty output, exit status 0.
            eprintln!("blk: {input}: cannot skip to specified offset");
            size
        }
    };
    let chunk = (CHUNK / bs).max(1) * bs;
    let mut buf = Vec::new();
    let mut out_pos = 0u64;
    while in_pos < size {
        let n = chunk.min(size - in_pos);
        buf.resize(n as usize, 0);
        src.read(in_pos, &mut buf).map_err(|e| {
            CliError::new(format!(
                "error while reading from input image file: {}",
                strerror(errno_of(&e))
            ))
        })?;
        dst.write(out_pos, &buf).map_err(|e| {
            CliError::new(format!(
                "error while writing to output image file: {}",
                strerror(errno_of(&e))
            ))
        })?;
        in_pos += n;
        out_pos += n;
    }
    dst.flush()?;
    Ok(())
}
