//! The other qemu-io commands: flush, length, info, alloc, map, truncate,
//! sleep, quit, help, and blk's activate, inactivate and invalidate.

use super::cmds::*;
use super::Ctx;
use crate::human::{cvtstr, strerror};
use block_core::{ExtentFlags, Preallocation};
use std::time::Duration;

/// qemu-io's `flush` command.
pub(super) fn flush_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.flush() {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("flush failed: {e}");
            -errno_of(ctx, &e)
        }
    }
}

/// qemu-io's `aio_flush` command.
pub(super) fn aio_flush_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let _ = ctx.img.flush();
    let _ = argv;
    0
}

/// qemu-io's `length` command.
pub(super) fn length_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
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

/// qemu-io's `info` command.
pub(super) fn info_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
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
pub(super) fn is_allocated(
    ctx: &Ctx<'_>,
    offset: u64,
    bytes: u64,
) -> Result<Option<(bool, u64)>, i32> {
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

/// qemu-io's `alloc` command.
pub(super) fn alloc_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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

/// qemu-io's `map` command.
pub(super) fn map_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
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

/// qemu-io's `truncate` command.
pub(super) fn truncate_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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

/// qemu-io's `sleep` command.
pub(super) fn sleep_f(_ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    sleep_ms(&argv[1])
}

fn sleep_ms(a: &str) -> i32 {
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

/// qemu-io's `quit` command.
pub(super) fn quit_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    ctx.quit = true;
    0
}

/// qemu-io's `help` command.
pub(super) fn help_f(_ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    help(argv)
}

/// The commands that run without an open image (`help`, `quit`): `quit`
/// only returns, the session stops.
pub(super) fn global_command(argv: &[String]) -> i32 {
    if matches!(argv[0].as_str(), "help" | "?") {
        if argv.len() > 2 {
            eprintln!(
                "bad argument count {} to help, expected between 0 and 1 arguments",
                argv.len() - 1
            );
            return -EINVAL;
        }
        return help(argv);
    }
    if argv[0] == "sleep" {
        if argv.len() != 2 {
            eprintln!(
                "bad argument count {} to sleep, expected 1 arguments",
                argv.len() - 1
            );
            return -EINVAL;
        }
        return sleep_ms(&argv[1]);
    }
    0
}

fn help(argv: &[String]) -> i32 {
    if argv.len() == 2 {
        match find(&argv[1]) {
            Some(c) => {
                // Under the name asked for (an alias such as `r` too).
                let line = help_line(c);
                let line = line.strip_prefix(c.name).unwrap_or(&line);
                println!("{}{line}", argv[1]);
                if let Some(text) = extended_help(c.name) {
                    print!("{text}");
                }
            }
            None => {
                println!("command {} not found", argv[1]);
                return -EINVAL;
            }
        }
        return 0;
    }
    for c in CMDS {
        println!("{}", help_line(c));
    }
    println!("\nUse 'help commandname' for extended help.");
    0
}

/// The longer help `help NAME` prints after the one-line summary.
fn extended_help(name: &str) -> Option<&'static str> {
    match name {
        "open" => Some(
            "\n opens a new file in the requested mode\n\n Example:\n \
             'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached\n\n \
             Opens a file for subsequent use by all of the other blk io commands.\n \
             -r, -- open file read-only\n -s, -- use snapshot file\n \
             -C, -- use copy-on-read\n -n, -- disable host cache, short for -t none\n \
             -U, -- force shared permissions\n \
             -k, -- use kernel AIO implementation (Linux only, prefer use of -i)\n \
             -i, -- use AIO mode (threads, native or io_uring)\n \
             -t, -- use the given cache mode for the image\n \
             -d, -- use the given discard mode for the image\n \
             -o, -- options to be given to the block driver\n",
        ),
        "aio_read" => Some(
            r#"
 asynchronously reads a range of bytes from the given offset

 Example:
 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 The read is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -C, -- report statistics in a machine parsable format
 -i, -- treat request as invalid, for exercising stats
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer
 -v, -- dump buffer to standard output

"#,
        ),
        "aio_write" => Some(
            r#"
 asynchronously writes a range of bytes from the given offset source
 from multiple buffers

 Example:
 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 The write is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -i, -- treat request as invalid, for exercising stats
 -P, -- use different pattern to fill file
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_aio_pwrite_zeroes

"#,
        ),
        "discard" => Some(
            r#"
 discards a range of bytes from the given offset

 Example:
 'discard 512 1k' - discards 1 kilobyte from 512 bytes into the file

 Discards a segment of the currently open file.
 -C, -- report statistics in a machine parsable format
 -q, -- quiet mode, do not show I/O statistics

"#,
        ),
        "read" => Some(
            r#"
 reads a range of bytes from the given offset

 Example:
 'read -v 512 1k' - dumps 1 kilobyte read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 -b, -- read from the VM state rather than the virtual disk
 -C, -- report statistics in a machine parsable format
 -l, -- length for pattern verification (only with -P)
 -p, -- ignored for backwards compatibility
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer
 -s, -- start offset for pattern verification (only with -P)
 -v, -- dump buffer to standard output

"#,
        ),
        "readv" => Some(
            r#"
 reads a range of bytes from the given offset into multiple buffers

 Example:
 'readv -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 Uses multiple iovec buffers if more than one byte range is specified.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer
 -v, -- dump buffer to standard output

"#,
        ),
        "write" => Some(
            r#"
 writes a range of bytes from the given offset

 Example:
 'write 512 1k' - writes 1 kilobyte at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -b, -- write to the VM state rather than the virtual disk
 -c, -- write compressed data with blk_write_compressed
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -n, -- with -z, don't allow slow fallback
 -p, -- ignored for backwards compatibility
 -P, -- use different pattern to fill file
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer
 -s, -- use a pattern file to fill the write buffer
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_pwrite_zeroes

"#,
        ),
        "writev" => Some(
            r#"
 writes a range of bytes from the given offset source from multiple buffers

 Example:
 'writev 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -P, -- use different pattern to fill file
 -q, -- quiet mode, do not show I/O statistics
 -r, -- register I/O buffer

"#,
        ),
        _ => None,
    }
}

/// One command's help line, `NAME [ARGS ]-- ONELINE`. qemu-io leaves the
/// arguments out when a command has none, except for `map`, whose argument
/// text is empty rather than absent (hence its double space).
pub(super) fn help_line(c: &CmdInfo) -> String {
    if c.args.is_empty() && c.name != "map" {
        format!("{} -- {}", c.name, c.oneline)
    } else {
        format!("{} {} -- {}", c.name, c.args, c.oneline)
    }
}

/// qemu-io's `activate` command.
pub(super) fn activate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.activate() {
        Ok(()) => 0,
        Err(e) => {
            println!("activate failed: {e}");
            -e.errno()
        }
    }
}

/// qemu-io's `inactivate` command.
pub(super) fn inactivate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.inactivate() {
        Ok(()) => 0,
        Err(e) => {
            println!("inactivate failed: {e}");
            -e.errno()
        }
    }
}

/// qemu-io's `invalidate` command.
pub(super) fn invalidate_f(ctx: &mut Ctx<'_>, _argv: &[String]) -> i32 {
    match ctx.img.invalidate_cache() {
        Ok(()) => 0,
        Err(e) => {
            println!("invalidate failed: {e}");
            -e.errno()
        }
    }
}
