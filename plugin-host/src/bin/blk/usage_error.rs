//! Command-line parse errors worded as getopt words them in qemu-img and
//! qemu-io (`blk convert: invalid option -- 's'`, `unrecognized option
//! '--x'`, followed by the `Try ... --help` hint), instead of clap's text.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The qemu-style text of a clap error about an unknown option, or `None`
/// when the error is of another kind (clap's own text is kept then).
/// `argv` is the whole command line (program name first).
pub fn qemu_style(e: &clap::Error, argv: &[String]) -> Option<String> {
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let arg = match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let sub = subcommand_of(argv);
    let prog = match &sub {
        Some(s) => format!("blk {s}"),
        None => "blk".to_string(),
    };
    let what = if let Some(long) = arg.strip_prefix("--") {
        format!("unrecognized option '--{long}'")
    } else {
        let c = arg.trim_start_matches('-').chars().next()?;
        format!("invalid option -- '{c}'")
    };
    // qemu-io follows the message with its usage text instead of a hint.
    let hint = match &sub {
        Some(s) if s != "io" => format!("\nTry '{prog} --help' for more info"),
        _ => String::new(),
    };
    Some(format!("{prog}: {what}{hint}"))
}

/// The subcommand word of a command line: the first argument that is not
/// an option or the value of a global option.
fn subcommand_of(argv: &[String]) -> Option<String> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--plugin-dir" || a == "-T" || a == "--trace" {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a.clone());
        }
    }
    None
}
