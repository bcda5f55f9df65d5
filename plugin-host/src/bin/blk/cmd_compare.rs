//! `blk compare`: qemu-img compare (exit 0 identical, 1 different, 2 error).

use crate::common::{CliError, CliResult, Globals};
use block_core::ExtentFlags;
use clap::Args;
use plugin_host::{Image, OpenOptions};

/// The largest chunk read at once (qemu-img's IO_BUF_SIZE).
const IO_BUF_SIZE: u64 = 2 << 20;

/// Arguments of `blk compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Format of the first image.
    #[arg(short = 'f')]
    format1: Option<String>,
    /// Format of the second image.
    #[arg(short = 'F')]
    format2: Option<String>,
    /// Strict: sizes and allocation must match too.
    #[arg(short = 's')]
    strict: bool,
    /// Show progress.
    #[arg(short = 'p')]
    progress: bool,
    /// Quiet.
    #[arg(short = 'q')]
    quiet: bool,
    /// Force shared permissions.
    #[arg(short = 'U', long = "force-share")]
    force_share: bool,
    /// Cache mode (accepted, no effect).
    #[arg(short = 'T')]
    cache: Option<String>,
    /// The first image.
    filename1: String,
    /// The second image.
    filename2: String,
}

fn err2(msg: String) -> CliError {
    CliError::with_code(2, msg)
}

fn read(img: &Image, name: &str, off: u64, buf: &mut [u8]) -> CliResult {
    img.read(off, buf).map_err(|e| {
        err2(format!(
            "Error while reading offset {off} of {name}: {}",
            crate::human::strerror(e.errno())
        ))
    })
}

/// The first 512-byte sector (as a byte offset from the buffer start) where
/// the buffers differ.
fn first_diff_sector(a: &[u8], b: &[u8]) -> Option<u64> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .map(|p| (p as u64 / 512) * 512)
}

/// Runs `blk compare`.
pub fn run(g: &Globals, a: CompareArgs) -> CliResult {
    let mut progress = crate::progress::Progress::new(a.progress && !a.quiet, 2.0);
    let host = g.host().map_err(|e| CliError { code: 2, ..e })?;
    let open = |f: &str, fmt: &Option<String>| -> CliResult<Image> {
        let opts = OpenOptions {
            format: fmt.clone(),
            read_only: true,
            force_share: a.force_share,
            ..OpenOptions::default()
        };
        crate::common::open_image_data(&host, f, &opts).map_err(|e| CliError { code: 2, ..e })
    };
    let img1 = open(&a.filename1, &a.format1)?;
    let img2 = open(&a.filename2, &a.format2)?;
    let q = a.quiet;
    let say = |s: &str| {
        if !q {
            println!("{s}");
        }
    };
    let len1 = img1.length().map_err(|e| err2(e.to_string()))?;
    let len2 = img2.length().map_err(|e| err2(e.to_string()))?;
    let total = len1.min(len2);
    // qemu-img's shares are of the larger image, in single precision.
    let base = len1.max(len2) as f32;
    progress.print(0.0, 100);
    if len1 != len2 && a.strict {
        say("Strict mode: Image size mismatch!");
        return Err(CliError::silent(1));
    }
    let bits = ExtentFlags::ALLOCATED
        .with(ExtentFlags::ZERO)
        .with(ExtentFlags::DATA);
    let mut buf1 = Vec::new();
    let mut buf2 = Vec::new();
    let mut offset = 0u64;
    let st = |img: &Image, off: u64, n: u64| {
        img.block_status_above(off, n).map(|(e, _)| e).map_err(|e| {
            err2(format!(
                "Block status error: {}",
                crate::human::strerror(e.errno())
            ))
        })
    };
    while offset < total {
        let e1 = st(&img1, offset, len1 - offset)?;
        let e2 = st(&img2, offset, len2 - offset)?;
        let s1 = ExtentFlags(e1.flags.0 & bits.0);
        let s2 = ExtentFlags(e2.flags.0 & bits.0);
        let mut chunk = e1.length.min(e2.length).min(total - offset).max(1);
        if a.strict && s1 != s2 {
            say(&format!(
                "Strict mode: Offset {offset} block status mismatch!"
            ));
            return Err(CliError::silent(1));
        }
        let z1 = s1.contains(ExtentFlags::ZERO);
        let z2 = s2.contains(ExtentFlags::ZERO);
        if !(z1 && z2) {
            chunk = chunk.min(IO_BUF_SIZE);
            buf1.resize(chunk as usize, 0);
            buf2.resize(chunk as usize, 0);
            read(&img1, &a.filename1, offset, &mut buf1)?;
            read(&img2, &a.filename2, offset, &mut buf2)?;
            if let Some(d) = first_diff_sector(&buf1, &buf2) {
                say(&format!("Content mismatch at offset {}!", offset + d));
                return Err(CliError::silent(1));
            }
        }
        offset += chunk;
        progress.print(chunk as f32 / base * 100.0, 100);
    }
    if len1 != len2 {
        say("Warning: Image size mismatch!");
        let (over, name, over_len) = if len1 > len2 {
            (&img1, &a.filename1, len1)
        } else {
            (&img2, &a.filename2, len2)
        };
        let mut off = total;
        while off < over_len {
            let e = st(over, off, over_len - off)?;
            let mut chunk = e.length.clamp(1, over_len - off);
            if e.flags.contains(ExtentFlags::ALLOCATED) {
                chunk = chunk.min(IO_BUF_SIZE);
            }
            if !e.flags.contains(ExtentFlags::ZERO) {
                buf1.resize(chunk as usize, 0);
                read(over, name, off, &mut buf1)?;
                let zeros = vec![0u8; chunk as usize];
                if let Some(d) = first_diff_sector(&buf1, &zeros) {
                    say(&format!("Content mismatch at offset {}!", off + d));
                    return Err(CliError::silent(1));
                }
            }
            off += chunk;
            progress.print(chunk as f32 / base * 100.0, 100);
        }
    }
    say("Images are identical.");
    Ok(())
}
