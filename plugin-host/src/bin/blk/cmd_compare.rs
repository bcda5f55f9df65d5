//! `blk compare`: qemu-img compare (exit 0 identical, 1 different, 2 error)
//! over `plugin_host::ops::compare`.

use crate::common::{CliError, CliResult, Globals};
use clap::Args;
use plugin_host::ops::{self, CancelToken, CompareOutcome, CompareRequest, OpError, Stage};
use plugin_host::{Image, OpenOptions};
use std::sync::Mutex;

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

/// Runs `blk compare`.
pub fn run(g: &Globals, a: CompareArgs) -> CliResult {
    let progress = crate::progress::Progress::new(a.progress && !a.quiet, 2.0);
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
    // qemu-img adds each chunk's share of the larger image, in single
    // precision.
    let progress = Mutex::new((progress, 0u64, false));
    let show = |p: ops::Progress| {
        let mut st = progress.lock().unwrap_or_else(|e| e.into_inner());
        if p.stage == Stage::CompareTail && !st.2 {
            // As qemu-img: said before the rest of the longer image is read.
            st.2 = true;
            say("Warning: Image size mismatch!");
            return;
        }
        let delta = p.done - st.1;
        st.1 = p.done;
        if p.done == 0 {
            st.0.print(0.0, 100);
        } else {
            st.0.print(delta as f32 / p.total as f32 * 100.0, 100);
        }
    };
    let req = CompareRequest { strict: a.strict };
    let r = ops::compare(&img1, &img2, &req, &show, &CancelToken::new()).map_err(|e| {
        let name = |i: usize| if i == 0 { &a.filename1 } else { &a.filename2 };
        match e {
            OpError::At {
                stage: Stage::Read,
                image,
                offset,
                error,
            } => err2(format!(
                "Error while reading offset {offset} of {}: {}",
                name(image),
                crate::human::strerror(error.errno())
            )),
            OpError::At {
                stage: Stage::BlockStatus,
                error,
                ..
            } => err2(format!(
                "Block status error: {}",
                crate::human::strerror(error.errno())
            )),
            OpError::Block(e) => err2(e.to_string()),
            e => err2(e.to_string()),
        }
    })?;
    match r.outcome {
        CompareOutcome::SizeMismatch => {
            say("Strict mode: Image size mismatch!");
            Err(CliError::silent(1))
        }
        CompareOutcome::StatusMismatch(offset) => {
            say(&format!(
                "Strict mode: Offset {offset} block status mismatch!"
            ));
            Err(CliError::silent(1))
        }
        CompareOutcome::ContentMismatch(offset) => {
            say(&format!("Content mismatch at offset {offset}!"));
            Err(CliError::silent(1))
        }
        CompareOutcome::Identical => {
            say("Images are identical.");
            Ok(())
        }
    }
}
