//! Command-line parse errors worded as getopt words them in qemu-img and
//! qemu-io (`blk convert: invalid option -- 's'`, `unrecognized option
//! '--x'`, followed by the `Try ... --help` hint), instead of clap's text.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The qemu-style text of a clap error about an unknown option, or `None`
/// when the error is of another kind (clap's own text is kept then).
/// `argv` is the whole command line (program name first).
pub fn qemu_style(e: &clap::Error, argv: &[String]) -> Option<String> {
    if e.kind() == ErrorKind::MissingRequiredArgument {
        return operand_count_error(argv, true);
    }
    if e.kind() == ErrorKind::InvalidSubcommand {
        let word = subcommand_of(argv)?;
        return Some(format!(
            "blk: Command not found: {word}\nTry 'blk --help' for more info"
        ));
    }
    if e.kind() == ErrorKind::InvalidValue {
        return missing_value_error(argv);
    }
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let arg = match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    if !arg.starts_with('-') {
        // An operand too many.
        return operand_count_error(argv, false);
    }
    // An option before the subcommand word is the tool's own.
    let at = argv
        .iter()
        .position(|a| a == &arg || a.starts_with(&format!("{arg}=")));
    let sub = match (subcommand_index(argv), at) {
        (Some(s), Some(p)) if p < s => None,
        _ => subcommand_of(argv),
    };
    let prog = match &sub {
        Some(s) => format!("blk {s}"),
        None => "blk".to_string(),
    };
    let what = if let Some(long) = arg.strip_prefix("--") {
        // getopt names the word as given, with its "=VALUE".
        let word = at.map(|p| argv[p].as_str()).unwrap_or(&arg);
        let long = word.strip_prefix("--").unwrap_or(long);
        format!("unrecognized option '--{long}'")
    } else {
        let c = arg.trim_start_matches('-').chars().next()?;
        format!("invalid option -- '{c}'")
    };
    // qemu-io follows the message with its usage text instead of a hint.
    let hint = match &sub {
        Some(s) if s == "io" => String::new(),
        _ => format!("\nTry '{prog} --help' for more info"),
    };
    Some(format!("{prog}: {what}{hint}"))
}

/// getopt's message for an option given last without its value (an
/// option anywhere else takes the next word as its value).
fn missing_value_error(argv: &[String]) -> Option<String> {
    let last = argv.last()?;
    let sub = subcommand_of(argv)
        .filter(|s| s != "io" && subcommand_index(argv) < Some(argv.len() - 1))?;
    let what = if let Some(long) = last.strip_prefix("--") {
        format!("option '--{long}' requires an argument")
    } else {
        let c = last.strip_prefix('-')?.chars().last()?;
        format!("option requires an argument -- '{c}'")
    };
    Some(format!(
        "blk {sub}: {what}\nTry 'blk {sub} --help' for more info"
    ))
}

/// qemu-img's message for too few (`missing`) or too many operands of the
/// subcommands that check their count themselves, with the help hint.
fn operand_count_error(argv: &[String], missing: bool) -> Option<String> {
    let sub = subcommand_of(argv)?;
    let what = match sub.as_str() {
        "info" | "check" | "map" | "snapshot" | "rebase" | "commit" | "bench" => {
            "Expecting one image file name"
        }
        "compare" => "Expecting two image file names",
        "resize" if missing => "Expecting image file name and size",
        "resize" => "Extra argument(s) in command line",
        _ => return None,
    };
    Some(format!("blk: {what}\nTry 'blk {sub} --help' for more info"))
}

/// The subcommand word of a command line: the first argument that is not
/// an option or the value of a global option.
fn subcommand_of(argv: &[String]) -> Option<String> {
    subcommand_index(argv).map(|i| argv[i].clone())
}

/// The index in `argv` of the subcommand word.
pub fn subcommand_index(argv: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        if a == "--plugin-dir" || a == "-T" || a == "--trace" || a == "--object" {
            i += 1;
        } else if !a.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The first of the subcommand options `--object` and `--image-opts` given
/// before the subcommand, which qemu-img does not take there.
pub fn misplaced_subcommand_option(argv: &[String]) -> Option<String> {
    let end = subcommand_index(argv).unwrap_or(argv.len());
    argv[1..end]
        .iter()
        .find(|a| {
            a.as_str() == "--image-opts" || a.as_str() == "--object" || a.starts_with("--object=")
        })
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
}
