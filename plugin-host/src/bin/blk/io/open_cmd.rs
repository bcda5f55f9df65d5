//! qemu-io's `open [-rsCnkU] [-t cache] [-d discard] [-i aio] [-o options]
//! [path]` command line, turned into a session open request.

use super::cmds::{opts, usage};
use super::session::OpenSpec;
use plugin_host::OpenOptions;

/// Parses an `open` command line; messages are printed, `Err` means the
/// command failed.
pub fn parse(argv: &[String]) -> Result<OpenSpec, ()> {
    let p = opts(argv, "snCro:ki:t:d:U").map_err(|_| ())?;
    let mut spec = OpenSpec::default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (c, arg) in &p.opts {
        let arg = arg.as_deref().unwrap_or("");
        match c {
            's' => spec.snapshot = true,
            'C' => spec.copy_on_read = true,
            'r' => spec.opts.read_only = true,
            'U' => spec.opts.force_share = true,
            'n' | 'k' => {}
            't' if !crate::cache_mode::is_valid(arg) => {
                eprintln!("blk: Invalid cache option: {arg}");
                return Err(());
            }
            'd' if !matches!(arg, "off" | "ignore" | "on" | "unmap") => {
                eprintln!("blk: Invalid discard option: {arg}");
                return Err(());
            }
            'i' if !matches!(arg, "threads" | "native" | "io_uring") => {
                eprintln!("blk: Invalid aio option: {arg}");
                return Err(());
            }
            'o' => match crate::qemu_opts::parse(arg, None) {
                Ok(v) => pairs.extend(v),
                Err(m) => {
                    eprintln!("blk: {m}");
                    return Err(());
                }
            },
            _ => {}
        }
    }
    match p.operands.len() {
        0 => {
            // The options are the whole specification.
            spec.filename = pairs_text(&pairs);
            spec.image_opts = true;
            spec.display_name = Some(String::new());
        }
        1 => {
            let name = p.operands[0].clone();
            if pairs.is_empty() || name.starts_with("json:") {
                spec.filename = name;
            } else {
                // The file name is the protocol's, the options the node's.
                pairs.push(("file.filename".to_string(), name.clone()));
                spec.filename = pairs_text(&pairs);
                spec.image_opts = true;
                spec.display_name = Some(name);
            }
        }
        _ => {
            usage(&argv[0]);
            return Err(());
        }
    }
    if spec.opts.force_share && !spec.opts.read_only {
        let name = p.operands.first().cloned().unwrap_or_default();
        eprintln!(
            "blk: can't open device {name}: force-share=on can only be used with read-only images"
        );
        return Err(());
    }
    spec.opts = OpenOptions {
        read_only: spec.opts.read_only,
        force_share: spec.opts.force_share,
        ..OpenOptions::default()
    };
    Ok(spec)
}

/// Pairs back into an option string (commas doubled).
fn pairs_text(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(',', ",,")))
        .collect::<Vec<_>>()
        .join(",")
}
