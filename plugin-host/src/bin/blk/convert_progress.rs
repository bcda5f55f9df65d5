//! `convert -p`: the percentages qemu-img's convert prints. qemu-img counts
//! progress in the chunks its copy loop walks (`convert_iteration_sectors`:
//! block-status extents trimmed to the source cluster alignment, data chunks
//! of at most its 2 MiB buffer, whole clusters with `-c`) and prints after
//! each chunk that it reads or, with `-S 0`, zero-fills. blk's workers copy in
//! their own units, so this module replays qemu-img's walk over the same
//! block status to get the same sequence of percentages, and releases each
//! one once the copy has got that far.

use crate::progress::Progress;
use block_core::{ExtentFlags, Result};
use plugin_host::Image;

const SECTOR: u64 = 512;
/// qemu-img's IO_BUF_SIZE in sectors.
const BUF_SECTORS: u64 = (2 << 20) / SECTOR;
/// BDRV_REQUEST_MAX_SECTORS.
const REQUEST_MAX_SECTORS: u64 = (i32::MAX as u64) >> 9;

/// What qemu-img's convert walk needs to know about the job.
pub struct WalkParams<'a> {
    /// The sources, each with its byte offset in the target.
    pub sources: &'a [(Image, u64)],
    /// `-B`: unallocated source ranges are left to the target's backing file.
    pub target_has_backing: bool,
    /// The length of the target's backing file, when it has one.
    pub target_backing_len: Option<u64>,
    /// `-S` in bytes (0: zeroes are written as data).
    pub min_sparse: u64,
    /// With `-c`: the target cluster size.
    pub compress_cluster: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Data,
    Zero,
    BackingFile,
}

/// The chunks qemu-img's copy loop counts for progress: `(start byte in the
/// target, sectors)`, in order.
pub fn counted_chunks(p: &WalkParams<'_>) -> Result<Vec<(u64, u64)>> {
    let mut parts = Vec::new();
    for (img, _) in p.sources {
        let len = img.length()?;
        let align = img
            .info()
            .ok()
            .and_then(|i| i.node.cluster_size)
            .map(|c| (c / SECTOR).max(1))
            .unwrap_or(1);
        parts.push((len, len.div_ceil(SECTOR), align));
    }
    let total: u64 = parts.iter().map(|&(_, s, _)| s).sum();
    let backing_sectors = p.target_backing_len.map(|l| l.div_ceil(SECTOR));
    let cluster_sectors = p.compress_cluster.map(|c| (c / SECTOR).max(1));
    let buf_sectors = cluster_sectors.unwrap_or(BUF_SECTORS);
    let mut out = Vec::new();
    let mut status = Status::Data;
    let mut next_status = 0u64;
    let mut sector = 0u64;
    while sector < total {
        let (mut cur, mut cur_off) = (0usize, 0u64);
        while sector - cur_off >= parts[cur].1 {
            cur_off += parts[cur].1;
            cur += 1;
        }
        let mut n = (total - sector).min(REQUEST_MAX_SECTORS);
        let mut post_backing_zero = false;
        if let Some(bs) = backing_sectors {
            if sector >= bs {
                post_backing_zero = true;
            } else if sector + n > bs {
                n = bs - sector;
            }
        }
        if next_status <= sector {
            let img = &p.sources[cur].0;
            let (len, _, align) = parts[cur];
            let offset = (sector - cur_off) * SECTOR;
            let count = (n * SECTOR).min(len - offset);
            let (flags, got) = if p.target_has_backing {
                let e = img.block_status(offset, count)?;
                (e.flags, e.length)
            } else {
                let (e, _) = img.block_status_above(offset, count)?;
                (e.flags, e.length)
            };
            n = got.clamp(1, count).div_ceil(SECTOR);
            let tail = (sector - cur_off + n) % align;
            if n > tail {
                n -= tail;
            }
            status = if flags.contains(ExtentFlags::ZERO) {
                if post_backing_zero {
                    Status::BackingFile
                } else {
                    Status::Zero
                }
            } else if flags.contains(ExtentFlags::DATA) || !p.target_has_backing {
                Status::Data
            } else {
                Status::BackingFile
            };
            next_status = sector + n;
        }
        n = n.min(next_status - sector);
        if status == Status::Data {
            n = n.min(buf_sectors);
        }
        if let Some(cs) = cluster_sectors {
            if n < cs {
                n = cs.min(total - sector);
                status = Status::Data;
            } else {
                n -= n % cs;
            }
        }
        if p.min_sparse == 0 && status == Status::Zero {
            n = n.min(buf_sectors);
        }
        if status == Status::Data || (p.min_sparse == 0 && status == Status::Zero) {
            out.push((sector * SECTOR, n));
        }
        sector += n;
    }
    Ok(out)
}

/// The progress of one convert: qemu-img's percentages, released as the
/// copy advances.
pub struct ConvertProgress {
    progress: Progress,
    chunks: Vec<(u64, u64)>,
    next: usize,
    done_sectors: u64,
    total_sectors: u64,
}

impl ConvertProgress {
    /// Takes over `progress` (which has printed its 0 %) for the counted
    /// `chunks` of [`counted_chunks`].
    pub fn new(progress: Progress, chunks: Vec<(u64, u64)>) -> ConvertProgress {
        let total_sectors = chunks.iter().map(|&(_, n)| n).sum();
        ConvertProgress {
            progress,
            chunks,
            next: 0,
            done_sectors: 0,
            total_sectors,
        }
    }

    /// Prints the percentages of every chunk that starts below `copied`
    /// bytes (qemu-img prints as it starts a chunk).
    pub fn advance(&mut self, copied: u64) {
        while let Some(&(start, n)) = self.chunks.get(self.next) {
            if start >= copied {
                break;
            }
            self.next += 1;
            self.done_sectors += n;
            self.progress
                .set_fraction(self.done_sectors, self.total_sectors);
        }
    }

    /// The copy succeeded: the remaining percentages, the final 100 % and
    /// the closing newline.
    pub fn finish(mut self) {
        self.advance(u64::MAX);
        self.progress.set(100.0);
        self.progress.end();
    }
}
