//! The qemu-io commands: argument checks, messages and reports as qemu-io 10
//! prints them. Every command returns 0 or a negative errno.

use super::getopt::{getopt, GetoptError, Parsed};
use super::Ctx;
use crate::human::{cvtstr, strerror, strtosz, timestr, timestr_fixed};
use block_core::{BlockError, ErrorKind, ExtentFlags, Preallocation, ReqFlags, ZeroFlags};
use std::io::{IoSlice, IoSliceMut};
use std::time::{Duration, Instant};

/// QEMU's largest request (`BDRV_REQUEST_MAX_BYTES`).
const REQUEST_MAX_BYTES: u64 = 2147483136;
const EINVAL: i32 = libc::EINVAL;

type CmdFn = fn(&mut Ctx<'_>, &[String]) -> i32;

/// One command of the table.
struct CmdInfo {
    name: &'static str,
    alt: Option<&'static str>,
    argmin: i32,
    argmax: i32,
    args: &'static str,
    oneline: &'static str,
    write: bool,
    f: CmdFn,
}

const CMDS: &[CmdInfo] = &[
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

fn find(name: &str) -> Option<&'static CmdInfo> {
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

fn usage(ct: &str) -> i32 {
    if let Some(c) = find(ct) {
        println!("{} {} -- {}", c.name, c.args, c.oneline);
    }
    -EINVAL
}

/// Runs getopt, printing glibc's message and the usage on errors.
fn opts(argv: &[String], spec: &str) -> Result<Parsed, i32> {
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
fn num(arg: &str) -> Result<u64, i32> {
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

fn parse_pattern(arg: &str) -> Result<u8, i32> {
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
fn errno_of(ctx: &Ctx<'_>, e: &BlockError) -> i32 {
    log::debug!("request failed: {e}");
    match e.kind {
        ErrorKind::OutOfRange => libc::EIO,
        ErrorKind::ReadOnly if ctx.img.is_inactive() => libc::EPERM,
        k => k.errno(),
    }
}

fn print_report(op: &str, t: Duration, offset: u64, count: u64, total: u64, cnt: u64, cflag: bool) {
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

fn dump_buffer(buf: &[u8], offset: u64) {
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

fn sector_aligned(offset: u64, count: u64) -> bool {
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

fn read_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "bCl:pP:qrs:v") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (mut bflag, mut cflag, mut qflag, mut vflag) = (false, false, false, false);
    let mut pattern: Option<u8> = None;
    let mut pattern_offset: u64 = 0;
    let mut pattern_count: Option<u64> = None;
    let mut sflag = false;
    for (c, arg) in &p.opts {
        let arg = arg.as_deref().unwrap_or("");
        match c {
            'b' => bflag = true,
            'C' => cflag = true,
            'l' => match num(arg) {
                Ok(v) => pattern_count = Some(v),
                Err(e) => return e,
            },
            'P' => match parse_pattern(arg) {
                Ok(v) => pattern = Some(v),
                Err(e) => return e,
            },
            'q' => qflag = true,
            's' => match num(arg) {
                Ok(v) => {
                    pattern_offset = v;
                    sflag = true;
                }
                Err(e) => return e,
            },
            'v' => vflag = true,
            _ => {}
        }
    }
    if p.operands.len() != 2 {
        return usage(&argv[0]);
    }
    let offset = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let count = match num(&p.operands[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if count > REQUEST_MAX_BYTES {
        println!(
            "length cannot exceed {REQUEST_MAX_BYTES}, given {}",
            p.operands[1]
        );
        return -EINVAL;
    }
    if pattern.is_none() && (pattern_count.is_some() || sflag) {
        return usage(&argv[0]);
    }
    let pcount = pattern_count
        .map(|v| v as i128)
        .unwrap_or(count as i128 - pattern_offset as i128);
    if pcount < 0 || pcount + pattern_offset as i128 > count as i128 {
        println!("pattern verification range exceeds end of read data");
        return -EINVAL;
    }
    if bflag && !sector_aligned(offset, count) {
        return -EINVAL;
    }
    let mut buf = vec![0xabu8; count as usize];
    let t1 = Instant::now();
    let r = if bflag {
        Err(libc::ENOTSUP)
    } else {
        ctx.img
            .read(offset, &mut buf)
            .map_err(|e| errno_of(ctx, &e))
    };
    let t = t1.elapsed();
    if let Err(e) = r {
        println!("read failed: {}", strerror(e));
        return -e;
    }
    let mut ret = 0;
    if let Some(pat) = pattern {
        let s = pattern_offset as usize;
        let region = &buf[s..s + pcount as usize];
        if region.iter().any(|&b| b != pat) {
            println!(
                "Pattern verification failed at offset {}, {} bytes",
                offset + pattern_offset,
                pcount
            );
            ret = -EINVAL;
        }
    }
    if qflag {
        return ret;
    }
    if vflag {
        dump_buffer(&buf, offset);
    }
    print_report("read", t, offset, count, count, 1, cflag);
    ret
}

/// Parses `len [len..]` of the vectored commands.
fn iov_lengths(args: &[String]) -> Result<Vec<usize>, i32> {
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

fn readv_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "CiP:qrv") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (mut cflag, mut qflag, mut vflag) = (false, false, false);
    let mut pattern = None;
    for (c, arg) in &p.opts {
        match c {
            'C' => cflag = true,
            'P' => match parse_pattern(arg.as_deref().unwrap_or("")) {
                Ok(v) => pattern = Some(v),
                Err(e) => return e,
            },
            'q' => qflag = true,
            'v' => vflag = true,
            'i' => {
                println!("injecting invalid read request");
                return 0;
            }
            _ => {}
        }
    }
    if p.operands.len() < 2 {
        return usage(&argv[0]);
    }
    let offset = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let lens = match iov_lengths(&p.operands[1..]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let total: usize = lens.iter().sum();
    let mut buf = vec![0xabu8; total];
    let t1 = Instant::now();
    let r = {
        let mut slices: Vec<IoSliceMut<'_>> = Vec::new();
        let mut rest: &mut [u8] = &mut buf;
        for l in &lens {
            let (a, b) = rest.split_at_mut(*l);
            slices.push(IoSliceMut::new(a));
            rest = b;
        }
        ctx.img.read_vectored(offset, &mut slices)
    };
    let t = t1.elapsed();
    if let Err(e) = r {
        let e = errno_of(ctx, &e);
        println!("readv failed: {}", strerror(e));
        return -e;
    }
    let mut ret = 0;
    if let Some(pat) = pattern {
        if buf.iter().any(|&b| b != pat) {
            println!("Pattern verification failed at offset {offset}, {total} bytes");
            ret = -EINVAL;
        }
    }
    if qflag {
        return ret;
    }
    if vflag {
        dump_buffer(&buf, offset);
    }
    print_report("read", t, offset, total as u64, total as u64, 1, cflag);
    ret
}

/// Fills a buffer from a file, repeating its content (`qemu_io_alloc_from_file`).
fn alloc_from_file(len: usize, name: &str) -> Option<Vec<u8>> {
    let data = match std::fs::read(name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "{name}: {}",
                strerror(e.raw_os_error().unwrap_or(libc::EIO))
            );
            return None;
        }
    };
    let pat = &data[..data.len().min(len)];
    if pat.is_empty() {
        eprintln!("{name}: file is empty");
        return None;
    }
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let n = (len - buf.len()).min(pat.len());
        buf.extend_from_slice(&pat[..n]);
    }
    Some(buf)
}

fn write_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "bcCfnpP:qrs:uz") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (mut bflag, mut compressed, mut cflag, mut fua, mut no_fallback) =
        (false, false, false, false, false);
    let (mut qflag, mut unmap, mut zflag) = (false, false, false);
    let mut pattern: Option<u8> = None;
    let mut source: Option<String> = None;
    for (c, arg) in &p.opts {
        match c {
            'b' => bflag = true,
            'c' => compressed = true,
            'C' => cflag = true,
            'f' => fua = true,
            'n' => no_fallback = true,
            'P' => match parse_pattern(arg.as_deref().unwrap_or("")) {
                Ok(v) => pattern = Some(v),
                Err(e) => return e,
            },
            'q' => qflag = true,
            's' => source = arg.clone(),
            'u' => unmap = true,
            'z' => zflag = true,
            _ => {}
        }
    }
    if p.operands.len() != 2 {
        return usage(&argv[0]);
    }
    if bflag && zflag {
        println!("-b and -z cannot be specified at the same time");
        return -EINVAL;
    }
    if fua && (bflag || compressed) {
        println!("-f and -b or -c cannot be specified at the same time");
        return -EINVAL;
    }
    if no_fallback && !zflag {
        println!("-n requires -z to be specified");
        return -EINVAL;
    }
    if unmap && !zflag {
        println!("-u requires -z to be specified");
        return -EINVAL;
    }
    if zflag as u8 + pattern.is_some() as u8 + source.is_some() as u8 > 1 {
        println!("Only one of -z, -P, and -s can be specified at the same time");
        return -EINVAL;
    }
    let offset = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let count = match num(&p.operands[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if count > REQUEST_MAX_BYTES && !no_fallback {
        println!(
            "length cannot exceed {REQUEST_MAX_BYTES} without -n, given {}",
            p.operands[1]
        );
        return -EINVAL;
    }
    if (bflag || compressed) && !sector_aligned(offset, count) {
        return -EINVAL;
    }
    let buf = if zflag {
        Vec::new()
    } else if let Some(src) = &source {
        match alloc_from_file(count as usize, src) {
            Some(b) => b,
            None => return -EINVAL,
        }
    } else {
        vec![pattern.unwrap_or(0xcd); count as usize]
    };
    let t1 = Instant::now();
    let r = if bflag {
        Err(libc::ENOTSUP)
    } else if zflag {
        let mut fl = ZeroFlags::NONE;
        if unmap {
            fl = fl.with(ZeroFlags::MAY_UNMAP);
        }
        if no_fallback {
            fl = fl.with(ZeroFlags::NO_FALLBACK);
        }
        if fua {
            fl = fl.with(ZeroFlags::FUA);
        }
        ctx.img
            .write_zeroes(offset, count, fl)
            .map_err(|e| errno_of(ctx, &e))
    } else {
        let mut fl = ReqFlags::NONE;
        if fua {
            fl = fl.with(ReqFlags::FUA);
        }
        if compressed {
            fl = fl.with(ReqFlags::COMPRESSED);
        }
        ctx.img
            .write_vectored(offset, &[IoSlice::new(&buf)], fl)
            .map_err(|e| errno_of(ctx, &e))
    };
    let t = t1.elapsed();
    if let Err(e) = r {
        println!("write failed: {}", strerror(e));
        return -e;
    }
    if qflag {
        return 0;
    }
    print_report("wrote", t, offset, count, count, 1, cflag);
    0
}

fn writev_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "CfiqP:ruz") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let (mut cflag, mut fua, mut qflag, mut zflag, mut unmap) = (false, false, false, false, false);
    let mut pattern = 0xcdu8;
    for (c, arg) in &p.opts {
        match c {
            'C' => cflag = true,
            'f' => fua = true,
            'q' => qflag = true,
            'P' => match parse_pattern(arg.as_deref().unwrap_or("")) {
                Ok(v) => pattern = v,
                Err(e) => return e,
            },
            'u' => unmap = true,
            'z' => zflag = true,
            'i' => {
                println!("injecting invalid write request");
                return 0;
            }
            _ => {}
        }
    }
    if p.operands.len() < 2 {
        return usage(&argv[0]);
    }
    if unmap && !zflag {
        println!("-u requires -z to be specified");
        return -EINVAL;
    }
    let offset = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let lens = match iov_lengths(&p.operands[1..]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let total: usize = lens.iter().sum();
    let t1 = Instant::now();
    let r = if zflag {
        let fl = if unmap {
            ZeroFlags::MAY_UNMAP
        } else {
            ZeroFlags::NONE
        };
        ctx.img.write_zeroes(offset, total as u64, fl)
    } else {
        let buf = vec![pattern; total];
        let mut slices = Vec::new();
        let mut rest: &[u8] = &buf;
        for l in &lens {
            let (a, b) = rest.split_at(*l);
            slices.push(IoSlice::new(a));
            rest = b;
        }
        let fl = if fua { ReqFlags::FUA } else { ReqFlags::NONE };
        ctx.img.write_vectored(offset, &slices, fl)
    };
    let t = t1.elapsed();
    if let Err(e) = r {
        let e = errno_of(ctx, &e);
        println!("writev failed: {}", strerror(e));
        return -e;
    }
    if qflag {
        return 0;
    }
    print_report("wrote", t, offset, total as u64, total as u64, 1, cflag);
    0
}

fn discard_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "Cq") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let cflag = p.opts.iter().any(|(c, _)| *c == 'C');
    let qflag = p.opts.iter().any(|(c, _)| *c == 'q');
    if p.operands.len() != 2 {
        return usage(&argv[0]);
    }
    let offset = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let bytes = match num(&p.operands[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    if bytes > REQUEST_MAX_BYTES {
        println!(
            "length cannot exceed {REQUEST_MAX_BYTES}, given {}",
            p.operands[1]
        );
        return -EINVAL;
    }
    let t1 = Instant::now();
    let r = ctx.img.discard(offset, bytes);
    let t = t1.elapsed();
    if let Err(e) = r {
        let e = errno_of(ctx, &e);
        println!("discard failed: {}", strerror(e));
        return -e;
    }
    if !qflag {
        print_report("discard", t, offset, bytes, bytes, 1, cflag);
    }
    0
}

fn flush_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.flush() {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("flush failed: {e}");
            -errno_of(ctx, &e)
        }
    }
}

fn aio_flush_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let _ = ctx.img.flush();
    let _ = argv;
    0
}

fn length_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.length() {
        Ok(l) => {
            println!("{}", cvtstr(l as f64));
            0
        }
        Err(e) => {
            let e = errno_of(ctx, &e);
            println!("getlength: {}", strerror(e));
            -e
        }
    }
}

fn info_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    println!("format name: {}", ctx.img.format());
    let info = match ctx.img.info() {
        Ok(i) => i,
        Err(e) => return -errno_of(ctx, &e),
    };
    let cs = info.node.cluster_size.unwrap_or(0);
    // qcow2 stores the VM state after the last L1 entry that covers the disk.
    let vm_state = match (info.node.format.as_str(), info.node.cluster_size) {
        ("qcow2", Some(cs)) if cs >= 512 => {
            let extended = info
                .node
                .format_specific
                .as_ref()
                .and_then(|v| v.pointer("/data/extended-l2"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            let l2_entries = cs / if extended { 16 } else { 8 };
            let per_l1 = cs * l2_entries;
            info.node.virtual_size.div_ceil(per_l1) * per_l1
        }
        _ => 0,
    };
    println!("cluster size: {}", cvtstr(cs as f64));
    println!("vm state offset: {}", cvtstr(vm_state as f64));
    if let Some(fs) = &info.node.format_specific {
        if let Some(data) = fs.get("data") {
            if data.as_object().is_some_and(|m| !m.is_empty()) {
                println!("Format specific information:");
                let mut out = String::new();
                crate::qjson::dump_human(&crate::qjson::QObj::from_value(data), 1, &mut out);
                print!("{out}");
            }
        }
    }
    0
}

/// The allocation status of the top layer over `[offset, offset+bytes)`
/// clamped to the image; `None` past the end.
fn is_allocated(ctx: &Ctx<'_>, offset: u64, bytes: u64) -> Result<Option<(bool, u64)>, i32> {
    let len = ctx.img.length().map_err(|e| errno_of(ctx, &e))?;
    if offset >= len || bytes == 0 {
        return Ok(None);
    }
    let q = bytes.min(len - offset);
    let e = ctx
        .img
        .block_status(offset, q)
        .map_err(|e| errno_of(ctx, &e))?;
    let n = e.length.clamp(1, q);
    Ok(Some((e.flags.contains(ExtentFlags::ALLOCATED), n)))
}

fn alloc_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let start = match num(&argv[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut count = if argv.len() == 3 {
        match num(&argv[2]) {
            Ok(v) => v,
            Err(e) => return e,
        }
    } else {
        512
    };
    if count > i32::MAX as u64 * 512 {
        println!(
            "length argument cannot exceed {}, given {}",
            i32::MAX as u64 * 512,
            argv[2]
        );
        return -EINVAL;
    }
    let mut offset = start;
    let mut remaining = count;
    let mut sum_alloc = 0u64;
    while remaining > 0 {
        match is_allocated(ctx, offset, remaining) {
            Err(e) => {
                println!("is_allocated failed: {}", strerror(-e));
                return e;
            }
            Ok(None) => {
                count -= remaining;
                remaining = 0;
            }
            Ok(Some((alloc, n))) => {
                offset += n;
                remaining -= n;
                if alloc {
                    sum_alloc += n;
                }
            }
        }
    }
    println!(
        "{sum_alloc}/{count} bytes allocated at offset {}",
        cvtstr(start as f64)
    );
    0
}

fn map_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    let mut bytes = match ctx.img.length() {
        Ok(l) => l,
        Err(e) => {
            let e = errno_of(ctx, &e);
            eprintln!("blk: Failed to query image length: {}", strerror(e));
            return -e;
        }
    };
    let mut offset = 0u64;
    while bytes > 0 {
        // map_is_allocated: merge following ranges of the same status.
        let first = match is_allocated(ctx, offset, bytes) {
            Ok(Some(v)) => v,
            Ok(None) => {
                eprintln!("blk: Unexpected end of image");
                return -libc::EIO;
            }
            Err(e) => {
                eprintln!("blk: Failed to get allocation status: {}", strerror(-e));
                return e;
            }
        };
        let mut num = first.1;
        loop {
            if num >= bytes {
                break;
            }
            match is_allocated(ctx, offset + num, bytes - num) {
                Ok(Some((a, n))) if a == first.0 => num += n,
                _ => break,
            }
        }
        let retstr = if first.0 {
            "    allocated"
        } else {
            "not allocated"
        };
        println!(
            "{} ({num:#x}) bytes {retstr} at offset {} ({offset:#x})",
            cvtstr(num as f64),
            cvtstr(offset as f64)
        );
        offset += num;
        bytes -= num;
    }
    0
}

fn truncate_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "m:") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut prealloc = Preallocation::Off;
    for (c, arg) in &p.opts {
        if *c == 'm' {
            let a = arg.as_deref().unwrap_or("");
            match Preallocation::parse(a) {
                Some(m) => prealloc = m,
                None => {
                    eprintln!("blk: Invalid preallocation mode '{a}'");
                    return -EINVAL;
                }
            }
        }
    }
    if p.operands.len() != 1 {
        return usage(&argv[0]);
    }
    let size = match num(&p.operands[0]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    match ctx.img.truncate(size, prealloc) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("blk: {e}");
            -errno_of(ctx, &e)
        }
    }
}

fn sleep_f(_ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let a = &argv[1];
    let v = if let Some(h) = a.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else {
        a.parse::<i64>().ok()
    };
    match v {
        Some(ms) if ms >= 0 => {
            std::thread::sleep(Duration::from_millis(ms as u64));
            0
        }
        _ => {
            println!("{a} is not a valid number");
            -EINVAL
        }
    }
}

fn quit_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    ctx.quit = true;
    0
}

fn help_f(_ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    if argv.len() == 2 {
        match find(&argv[1]) {
            Some(c) => println!("{} {} -- {}", c.name, c.args, c.oneline),
            None => {
                println!("command {} not found", argv[1]);
                return -EINVAL;
            }
        }
        return 0;
    }
    for c in CMDS {
        println!("{} {} -- {}", c.name, c.args, c.oneline);
    }
    println!("\nUse 'help commandname' for extended help.");
    0
}

fn activate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.activate() {
        Ok(()) => 0,
        Err(e) => {
            println!("activate failed: {e}");
            -e.errno()
        }
    }
}

fn inactivate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.inactivate() {
        Ok(()) => 0,
        Err(e) => {
            println!("inactivate failed: {e}");
            -e.errno()
        }
    }
}

fn invalidate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.invalidate_cache() {
        Ok(()) => 0,
        Err(e) => {
            println!("invalidate failed: {e}");
            -e.errno()
        }
    }
}
