//! The qemu-io write commands: `write`, `writev`, `discard` (and `aio_write`).

use super::cmds::*;
use super::Ctx;
use crate::human::strerror;
use block_core::{ReqFlags, ZeroFlags};
use std::io::IoSlice;
use std::time::Instant;

/// Fills a buffer from a file, repeating its content (`qemu_io_alloc_from_file`).
pub(super) fn alloc_from_file(len: usize, name: &str) -> Option<Vec<u8>> {
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

/// qemu-io's `write` command.
pub(super) fn write_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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

/// qemu-io's `writev` command.
pub(super) fn writev_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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

/// qemu-io's `discard` command.
pub(super) fn discard_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
    let p = match opts(argv, "Cq") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let cflag = p.opts.iter().any(|(c, _)| *c == 'C');
    let qflag = p.opts.iter().any(|(c, _)| *c == 'q');
    let (offset, bytes) = match offset_and_length(argv, &p.operands) {
        Ok(v) => v,
        Err(e) => return e,
    };
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
