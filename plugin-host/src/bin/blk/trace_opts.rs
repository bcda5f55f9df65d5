//! The tools' global `-T`/`--trace [enable=]PATTERN,events=FILE,file=FILE`
//! option. blk has no trace events (its diagnostics go through `log`), so it
//! behaves as a QEMU build whose event list is empty: `help` lists nothing
//! and exits, a plain event name warns that the event does not exist, a
//! pattern matches nothing, an events file is read line by line the same
//! way, and `file=` creates the (empty) trace log.

use crate::common::{CliError, CliResult};

/// What the option asked for beyond warnings.
pub enum TraceAction {
    /// Go on with the command.
    Continue,
    /// `help` was asked: the (empty) event list is printed, exit 0.
    ExitOk,
}

/// Applies one `-T` argument.
pub fn apply(arg: &str) -> CliResult<TraceAction> {
    let opts = crate::qemu_opts::parse(arg, Some("enable")).map_err(CliError::new)?;
    let (mut enable, mut events, mut file) = (None, None, None);
    for (k, v) in opts {
        match k.as_str() {
            "enable" => enable = Some(v),
            "events" => events = Some(v),
            "file" => file = Some(v),
            _ => return Err(CliError::new(format!("Invalid parameter '{k}'"))),
        }
    }
    if let Some(e) = enable {
        if is_help(&e) {
            return Ok(TraceAction::ExitOk);
        }
        enable_events(&e, None);
    }
    if let Some(f) = events {
        let text = std::fs::read(&f).map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            // error_report with the file as location and no line: "blk:FILE: ...".
            eprintln!("blk:{f}: {}", crate::human::strerror(errno));
            CliError::silent(1)
        })?;
        for (n, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            // As QEMU: lines of one byte are skipped, the last byte (the
            // newline) is dropped, comments are skipped.
            if line.len() <= 1 {
                continue;
            }
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            if line.starts_with('#') {
                continue;
            }
            if is_help(&line) {
                return Ok(TraceAction::ExitOk);
            }
            enable_events(&line, Some((&f, n + 1)));
        }
    }
    if let Some(f) = file {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&f)
            .map_err(|e| {
                CliError::new(format!(
                    "Error opening logfile {f}: {}",
                    crate::human::strerror(e.raw_os_error().unwrap_or(libc::EIO))
                ))
            })?;
    }
    Ok(TraceAction::Continue)
}

fn is_help(s: &str) -> bool {
    s == "help" || s == "?"
}

/// Enables (or, with a leading `-`, disables) the events matching `spec`:
/// there are none, so a plain name is reported as missing.
fn enable_events(spec: &str, at: Option<(&str, usize)>) {
    let name = spec.strip_prefix('-').unwrap_or(spec);
    if name.contains(['*', '?']) {
        return;
    }
    match at {
        Some((f, n)) => eprintln!("blk:{f}:{n}: warning: trace event '{name}' does not exist"),
        None => eprintln!("blk: warning: trace event '{name}' does not exist"),
    }
}
