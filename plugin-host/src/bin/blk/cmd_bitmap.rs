//! `blk bitmap`: qemu-img bitmap. Adds, removes, clears, enables,
//! disables and merges persistent dirty bitmaps, in command-line order,
//! through the driver's bitmap control call (`Image::bitmap`).

use crate::common::{open_image, CliError, CliResult, Globals};
use block_core::BlockError;
use clap::Args;
use plugin_host::{Image, OpenOptions};
use serde_json::json;

/// Arguments of `blk bitmap`.
#[derive(Args, Debug)]
pub struct BitmapArgs {
    /// Create BITMAP, recording future edits.
    #[arg(long = "add", action = clap::ArgAction::Count)]
    add: u8,
    /// Remove BITMAP.
    #[arg(long = "remove", action = clap::ArgAction::Count)]
    remove: u8,
    /// Clear BITMAP.
    #[arg(long = "clear", action = clap::ArgAction::Count)]
    clear: u8,
    /// Start recording future edits to BITMAP.
    #[arg(long = "enable", action = clap::ArgAction::Count)]
    enable: u8,
    /// Stop recording future edits to BITMAP.
    #[arg(long = "disable", action = clap::ArgAction::Count)]
    disable: u8,
    /// Merge the contents of bitmap SOURCE into BITMAP (repeatable).
    #[arg(long = "merge", value_name = "SOURCE")]
    merge: Vec<String>,
    /// Granularity for --add.
    #[arg(short = 'g', long = "granularity", value_name = "SIZE")]
    granularity: Option<String>,
    /// Image format (probed when absent).
    #[arg(short = 'f', long = "format", value_name = "FMT")]
    format: Option<String>,
    /// Source file for --merge.
    #[arg(short = 'b', long = "source-file", value_name = "SRC_FILENAME")]
    source_file: Option<String>,
    /// Format of the --merge source file.
    #[arg(short = 'F', long = "source-format", value_name = "SRC_FMT")]
    source_format: Option<String>,
    /// Image specification instead of a file name (not supported).
    #[arg(long = "image-opts")]
    image_opts: bool,
    /// QEMU user-creatable objects (secrets).
    #[arg(long = "object", value_name = "OBJDEF")]
    object: Vec<String>,
    /// FILENAME BITMAP.
    files: Vec<String>,
}

/// One action, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Add,
    Remove,
    Clear,
    Enable,
    Disable,
    Merge(String),
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Clear => "clear",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Merge(_) => "merge",
        }
    }
}

/// The actions in the order given (clap keeps no order across flags, so
/// the raw arguments after the subcommand name are scanned).
fn ordered_actions(a: &BitmapArgs) -> Vec<Action> {
    let raw: Vec<String> = std::env::args().collect();
    let start = raw.iter().position(|x| x == "bitmap").map_or(0, |p| p + 1);
    let mut out = Vec::new();
    let mut merges = a.merge.iter();
    let mut i = start;
    while i < raw.len() {
        let t = raw[i].as_str();
        match t {
            "--" => break,
            "--add" => out.push(Action::Add),
            "--remove" => out.push(Action::Remove),
            "--clear" => out.push(Action::Clear),
            "--enable" => out.push(Action::Enable),
            "--disable" => out.push(Action::Disable),
            _ if t == "--merge" || t.starts_with("--merge=") => {
                if let Some(m) = merges.next() {
                    out.push(Action::Merge(m.clone()));
                }
                if t == "--merge" {
                    i += 1;
                }
            }
            // Options with a separate value: skip the value.
            "-g" | "--granularity" | "-f" | "--format" | "-b" | "--source-file" | "-F"
            | "--source-format" | "--object" | "--plugin-dir" => i += 1,
            _ => {}
        }
        i += 1;
    }
    out
}

fn op_error(action: &Action, bitmap: &str, e: &BlockError) -> CliError {
    CliError::new(format!(
        "Operation {} on bitmap {bitmap} failed: {}",
        action.name(),
        e.message
    ))
}

fn call(img: &Image, action: &Action, bitmap: &str, req: serde_json::Value) -> CliResult<String> {
    img.bitmap(&req.to_string()).map_err(|e| {
        if e.is_unsupported() {
            let e = BlockError::unsupported("bitmap").in_file(img.filename());
            let msg = format!(
                "Can't store persistent bitmaps to {}: Operation not supported",
                img.filename()
            );
            return op_error(action, bitmap, &BlockError { message: msg, ..e });
        }
        op_error(action, bitmap, &e)
    })
}

/// Runs `blk bitmap`.
pub fn run(g: &Globals, a: BitmapArgs) -> CliResult {
    if !a.object.is_empty() {
        if let crate::objects::ObjectsOutcome::ExitOk = crate::objects::install(&a.object)? {
            return Ok(());
        }
    }
    if a.image_opts {
        // The image argument is a specification, as qemu-img's.
        crate::common::set_image_opts(true);
    }
    let actions = ordered_actions(&a);
    if actions.is_empty() {
        return Err(CliError::new(
            "Need at least one of --add, --remove, --clear, --enable, --disable, or --merge",
        ));
    }
    let granularity = match &a.granularity {
        Some(s) => Some(
            block_core::parse_size(s)
                .ok()
                .ok_or_else(|| CliError::new(format!("Invalid granularity specified: '{s}'.")))?,
        ),
        None => None,
    };
    if granularity.is_some() && a.add == 0 {
        return Err(CliError::new("granularity only supported with --add"));
    }
    if a.source_format.is_some() && a.source_file.is_none() {
        return Err(CliError::new("-F only supported with -b"));
    }
    if a.source_file.is_some() && a.merge.is_empty() {
        return Err(CliError::new(
            "Merge bitmap source file only supported with --merge",
        ));
    }
    if a.files.len() != 2 {
        return Err(CliError::new("Expecting filename and bitmap name"));
    }
    let (filename, bitmap) = (&a.files[0], &a.files[1]);
    let host = g.host()?;
    let img = open_image(
        &host,
        filename,
        &OpenOptions {
            format: a.format.clone(),
            ..OpenOptions::default()
        },
    )?;
    for act in &actions {
        let req = match act {
            Action::Add => {
                let mut r = json!({"op": "add", "name": bitmap});
                if let Some(gr) = granularity {
                    r["granularity"] = json!(gr);
                }
                r
            }
            Action::Merge(src) => match &a.source_file {
                None => json!({"op": "merge", "name": bitmap, "source": src}),
                Some(sf) => {
                    let simg = open_image(
                        &host,
                        sf,
                        &OpenOptions {
                            format: a.source_format.clone(),
                            read_only: true,
                            ..OpenOptions::default()
                        },
                    )?;
                    let got = call(&simg, act, bitmap, json!({"op": "get", "name": src}))?;
                    let v: serde_json::Value = serde_json::from_str(&got)
                        .map_err(|e| CliError::new(format!("bad bitmap answer: {e}")))?;
                    json!({"op": "merge", "name": bitmap, "ranges": v["ranges"]})
                }
            },
            other => json!({"op": other.name(), "name": bitmap}),
        };
        call(&img, act, bitmap, req)?;
    }
    // Closing stores the bitmaps; as qemu-img, a store that fails (a
    // bitmap of a zero-size image) loses them, leaves the image as it was,
    // and fails the command.
    img.inactivate().map_err(|e| {
        eprintln!("blk: {}", e.message);
        CliError::new("Error while closing the image: Invalid argument")
    })?;
    Ok(())
}
