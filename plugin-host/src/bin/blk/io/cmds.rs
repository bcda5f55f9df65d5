//! The qemu-io commands: argument checks, messages and reports as qemu-io 10
//! prints them. Every command returns 0 or a negative errno.

use super::control::{
    activate_f, aio_flush_f, alloc_f, flush_f, help_f, inactivate_f, info_f, invalidate_f,
    length_f, map_f, quit_f, sleep_f, truncate_f,
};
use super::getopt::{getopt, GetoptError, Parsed};
use super::read::{read_f, readv_f};
use super::write::{discard_f, write_f, writev_f};
use super::Ctx;
use crate::human::{cvtstr, strtosz, timestr, timestr_fixed};
use block_core::{BlockError, ErrorKind};
use std::time::Duration;

/// QEMU's largest request (`BDRV_REQUEST_MAX_BYTES`).
pub(super) const REQUEST_MAX_BYTES: u64 = 2147483136;
pub(super) const EINVAL: i32 = libc::EINVAL;

pub(super) type CmdFn = fn(&mut Ctx<'_>, &[String]) -> i32;

/// One command of the table.
pub(super) struct CmdInfo {
    pub(super) name: &'static str,
    pub(super) alt: Option<&'static str>,
    pub(super) argmin: i32,
    pub(super) argmax: i32,
    pub(super) args: &'static str,
    pub(super) oneline: &'static str,
    pub(super) write: bool,
    pub(super) f: CmdFn,
}

pub(super) const CMDS: &[CmdInfo] = &[
    CmdInfo {
        name: "activate",
        alt: None,
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "activates the image after an inactive open or inactivate",
        write: false,
        f: activate_f,
    },
    CmdInfo {
        name: "aio_flush",
        alt: None,
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "completes all outstanding aio requests",
        write: false,
        f: aio_flush_f,
    },
    CmdInfo {
        name: "aio_read",
        alt: None,
        argmin: 2,
        argmax: -1,
        args: "[-Ciqrv] [-P pattern] off len [len..]",
        oneline: "asynchronously reads a number of bytes",
        write: false,
        f: readv_f,
    },
    CmdInfo {
        name: "aio_write",
        alt: None,
        argmin: 2,
        argmax: -1,
        args: "[-Cfiqruz] [-P pattern] off len [len..]",
        oneline: "asynchronously writes a number of bytes",
        write: true,
        f: writev_f,
    },
    CmdInfo {
        name: "alloc",
        alt: Some("a"),
        argmin: 1,
        argmax: 2,
        args: "offset [count]",
        oneline: "checks if offset is allocated in the file",
        write: false,
        f: alloc_f,
    },
    CmdInfo {
        name: "close",
        alt: Some("c"),
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "close the current open file",
        write: false,
        f: session_only_f,
    },
    CmdInfo {
        name: "discard",
        alt: Some("d"),
        argmin: 2,
        argmax: -1,
        args: "[-Cq] off len",
        oneline: "discards a number of bytes at a specified offset",
        write: true,
        f: discard_f,
    },
    CmdInfo {
        name: "flush",
        alt: Some("f"),
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "flush all in-core file state to disk",
        write: false,
        f: flush_f,
    },
    CmdInfo {
        name: "help",
        alt: Some("?"),
        argmin: 0,
        argmax: 1,
        args: "[command]",
        oneline: "help for one or all commands",
        write: false,
        f: help_f,
    },
    CmdInfo {
        name: "inactivate",
        alt: None,
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "inactivates the image (migration handoff)",
        write: false,
        f: inactivate_f,
    },
    CmdInfo {
        name: "info",
        alt: Some("i"),
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "prints information about the current file",
        write: false,
        f: info_f,
    },
    CmdInfo {
        name: "invalidate",
        alt: None,
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "re-reads the cached metadata of the image",
        write: false,
        f: invalidate_f,
    },
    CmdInfo {
        name: "length",
        alt: Some("l"),
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "gets the length of the current file",
        write: false,
        f: length_f,
    },
    CmdInfo {
        name: "map",
        alt: None,
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "prints the allocated areas of a file",
        write: false,
        f: map_f,
    },
    CmdInfo {
        name: "open",
        alt: Some("o"),
        argmin: 1,
        argmax: -1,
        args: "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
        oneline: "open the file specified by path",
        write: false,
        f: session_only_f,
    },
    CmdInfo {
        name: "quit",
        alt: Some("q"),
        argmin: 0,
        argmax: 0,
        args: "",
        oneline: "exit the program",
        write: false,
        f: quit_f,
    },
    CmdInfo {
        name: "read",
        alt: Some("r"),
        argmin: 2,
        argmax: -1,
        args: "[-abCqrv] [-P pattern [-s off] [-l len]] off len",
        oneline: "reads a number of bytes at a specified offset",
        write: false,
        f: read_f,
    },
    CmdInfo {
        name: "readv",
        alt: None,
        argmin: 2,
        argmax: -1,
        args: "[-Cqrv] [-P pattern] off len [len..]",
        oneline: "reads a number of bytes at a specified offset",
        write: false,
        f: readv_f,
    },
    CmdInfo {
        name: "sleep",
        alt: None,
        argmin: 1,
        argmax: 1,
        args: "",
        oneline: "waits for the given value in milliseconds",
        write: false,
        f: sleep_f,
    },
    CmdInfo {
        name: "truncate",
        alt: Some("t"),
        argmin: 1,
        argmax: 3,
        args: "[-m prealloc_mode] off",
        oneline: "truncates the current file at the given offset",
        write: true,
        f: truncate_f,
    },
    CmdInfo {
        name: "write",
        alt: Some("w"),
        argmin: 2,
        argmax: -1,
        args: "[-bcCfnqruz] [-P pattern | -s source_file] off len",
        oneline: "writes a number of bytes at a specified offset",
        write: true,
        f: write_f,
    },
    CmdInfo {
        name: "writev",
        alt: None,
        argmin: 2,
        argmax: -1,
        args: "[-Cfqr] [-P pattern] off len [len..]",
        oneline: "writes a number of bytes at a specified offset",
        write: true,
        f: writev_f,
    },
];

/// `open` and `close` act on the session, which runs them itself
/// (`Session::dispatch`); reaching the table's entry is a usage error.
fn session_only_f(_ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    usage(&argv[0])
}

pub(super) fn find(name: &str) -> Option<&'static CmdInfo> {
    CMDS.iter().find(|c| c.name == name || c.alt == Some(name))
}

/// Runs one parsed command line (`argv[0]` is the command).
pub fn dispatch(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let Some(ct) = find(&argv[0]) else {
        eprintln!("command \"{}\" not found", argv[0]);
        return -EINVAL;
    };
    let n = argv.len() as i32 - 1;
    if n < ct.argmin || (ct.argmax != -1 && n > ct.argmax) {
        if ct.argmax == -1 {
            eprintln!(
                "bad argument count {n} to {}, expected at least {} arguments",
                argv[0], ct.argmin
            );
        } else if ct.argmin == ct.argmax {
            eprintln!(
                "bad argument count {n} to {}, expected {} arguments",
                argv[0], ct.argmin
            );
        } else {
            eprintln!(
                "bad argument count {n} to {}, expected between {} and {} arguments",
                argv[0], ct.argmin, ct.argmax
            );
        }
        return -EINVAL;
    }
    if ct.write && ctx.read_only {
        eprintln!("blk: Block node is read-only");
        return -libc::EPERM;
    }
    (ct.f)(ctx, argv)
}

pub(super) fn usage(ct: &str) -> i32 {
    if let Some(c) = find(ct) {
        println!("{}", super::control::help_line(c));
    }
    -EINVAL
}

/// Runs getopt, printing glibc's message and the usage on errors.
pub(super) fn opts(argv: &[String], spec: &str) -> Result<Parsed, i32> {
    getopt(&argv[1..], spec).map_err(|e| {
        match e {
            GetoptError::Invalid(c) => eprintln!("{}: invalid option -- '{c}'", argv[0]),
            GetoptError::MissingArg(c) => {
                eprintln!("{}: option requires an argument -- '{c}'", argv[0])
            }
        }
        let _ = std::io::Write::flush(&mut std::io::stderr());
        usage(&argv[0])
    })
}

/// qemu-io's `cvtnum` with `print_cvtnum_err`.
pub(super) fn num(arg: &str) -> Result<u64, i32> {
    strtosz(arg).map_err(|e| {
        if e == libc::ERANGE {
            println!("Parsing error: argument too large -- {arg}");
        } else {
            println!(
                "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {arg}"
            );
        }
        -e
    })
}

pub(super) fn parse_pattern(arg: &str) -> Result<u8, i32> {
    let v = if let Some(h) = arg.strip_prefix("0x").or_else(|| arg.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if arg.len() > 1 && arg.starts_with('0') {
        i64::from_str_radix(&arg[1..], 8).ok()
    } else {
        arg.parse::<i64>().ok()
    };
    match v {
        Some(p) if (0..=255).contains(&p) => Ok(p as u8),
        _ => {
            println!("{arg} is not a valid pattern byte");
            Err(-EINVAL)
        }
    }
}

/// The errno of a failed request as qemu-io reports it: range errors of the
/// block backend are EIO; writes to an inactive image are EPERM.
pub(super) fn errno_of(ctx: &Ctx<'_>, e: &BlockError) -> i32 {
    log::debug!("request failed: {e}");
    match e.kind {
        ErrorKind::OutOfRange => libc::EIO,
        ErrorKind::ReadOnly if ctx.img.is_inactive() => libc::EPERM,
        k => k.errno(),
    }
}

pub(super) fn print_report(
    op: &str,
    t: Duration,
    offset: u64,
    count: u64,
    total: u64,
    cnt: u64,
    cflag: bool,
) {
    let secs = t.as_secs_f64();
    let div = |v: f64| v / secs;
    if !cflag {
        println!("{op} {total}/{count} bytes at offset {offset}");
        println!(
            "{}, {cnt} ops; {} ({}/sec and {:.4} ops/sec)",
            cvtstr(total as f64),
            timestr(t),
            cvtstr(div(total as f64)),
            div(cnt as f64)
        );
    } else {
        println!(
            "{total},{cnt},{},{:.3},{:.3}",
            timestr_fixed(t),
            div(total as f64),
            div(cnt as f64)
        );
    }
}

pub(super) fn dump_buffer(buf: &[u8], offset: u64) {
    for (i, chunk) in buf.chunks(16).enumerate() {
        let mut line = format!("{:08x}:  ", offset + (i as u64) * 16);
        for b in chunk {
            line.push_str(&format!("{b:02x} "));
        }
        line.push(' ');
        for &b in chunk {
            line.push(if b.is_ascii_alphanumeric() {
                b as char
            } else {
                '.'
            });
        }
        println!("{line}");
    }
}

pub(super) fn sector_aligned(offset: u64, count: u64) -> bool {
    if offset & 511 != 0 {
        println!("{offset} is not a sector-aligned value for 'offset'");
        return false;
    }
    if count & 511 != 0 {
        println!("{count} is not a sector-aligned value for 'count'");
        return false;
    }
    true
}

/// Parses `len [len..]` of the vectored commands.
pub(super) fn iov_lengths(args: &[String]) -> Result<Vec<usize>, i32> {
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for a in args {
        let len = num(a)?;
        if len > REQUEST_MAX_BYTES {
            println!("Argument '{a}' exceeds maximum size {REQUEST_MAX_BYTES}");
            return Err(-EINVAL);
        }
        if total > REQUEST_MAX_BYTES - len {
            println!("The total number of bytes exceed the maximum size {REQUEST_MAX_BYTES}");
            return Err(-EINVAL);
        }
        total += len;
        out.push(len as usize);
    }
    Ok(out)
}

/// Parses the `OFFSET LENGTH` operands of `read` and `discard`, with
/// qemu-io's usage and "length cannot exceed" messages.
pub(super) fn offset_and_length(argv: &[String], operands: &[String]) -> Result<(u64, u64), i32> {
    if operands.len() != 2 {
        return Err(usage(&argv[0]));
    }
    let offset = num(&operands[0])?;
    let length = num(&operands[1])?;
    if length > REQUEST_MAX_BYTES {
        println!(
            "length cannot exceed {REQUEST_MAX_BYTES}, given {}",
            operands[1]
        );
        return Err(-EINVAL);
    }
    Ok((offset, length))
}
