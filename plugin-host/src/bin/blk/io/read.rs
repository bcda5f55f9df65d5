//! The qemu-io read commands: `read`, `readv` (and `aio_read`).

use super::cmds::*;
use super::Ctx;
use crate::human::strerror;
use std::io::IoSliceMut;
use std::time::Instant;

/// qemu-io's `read` command.
pub(super) fn read_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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
    let (offset, count) = match offset_and_length(argv, &p.operands) {
        Ok(v) => v,
        Err(e) => return e,
    };
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
    let r = r.and_then(|()| super::cor::after_read(ctx, offset, count));
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

/// qemu-io's `readv` command.
pub(super) fn readv_f(ctx: &mut Ctx<'_>, argv: &[String]) -> i32 {
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
    let r = r.and_then(|()| {
        super::cor::after_read(ctx, offset, total as u64).map_err(|e| {
            block_core::BlockError::new(block_core::ErrorKind::from_errno(e), "copy-on-read", "")
        })
    });
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
