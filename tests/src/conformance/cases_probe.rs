//! Probing: a format driver claims its own fresh image and nothing else.

use super::util::ensure;
use super::{Target, FALLBACK_FORMATS};
use block_core::{BlockDriver, DriverKind, ProbeInput, PROBE_HEAD_SIZE, PROBE_TAIL_SIZE};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The size of the sample files.
const SAMPLE_SIZE: usize = 1 << 20;

/// Asks `driver` about the file at `path` as the host would: its head,
/// tail, size and name.
fn probe_file(driver: &dyn BlockDriver, path: &Path) -> Result<u32, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let read = |off: u64, len: usize| -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        Ok(b)
    };
    let head = read(0, (size as usize).min(PROBE_HEAD_SIZE))?;
    let tail_len = (size as usize).min(PROBE_TAIL_SIZE);
    let tail = read(size - tail_len as u64, tail_len)?;
    let name = path.to_string_lossy();
    Ok(driver.probe(&ProbeInput {
        head: &head,
        tail: &tail,
        file_size: size,
        filename: &name,
    }))
}

fn qemu_img_create(fmt: &str, path: &Path) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", fmt])
        .arg(path)
        .arg("4M")
        .output()
        .map_err(|e| format!("cannot run qemu-img (the probe case needs it): {e}"))?;
    ensure(out.status.success(), || {
        format!(
            "qemu-img create -f {fmt} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Files of other kinds: raw zeros, raw seeded noise, and images of other
/// formats made by qemu-img.
fn foreign_samples(t: &Target) -> Result<Vec<(String, PathBuf)>, String> {
    let dir = &t.workdir;
    let mut out = Vec::new();
    let zeros = dir.join(format!("probe-{}-zeros.img", t.seed));
    std::fs::write(&zeros, vec![0u8; SAMPLE_SIZE]).map_err(|e| e.to_string())?;
    out.push(("a raw file of zeros".to_string(), zeros));
    let noise = dir.join(format!("probe-{}-noise.img", t.seed));
    std::fs::write(&noise, crate::random_bytes(t.seed, SAMPLE_SIZE)).map_err(|e| e.to_string())?;
    out.push(("a raw file of random data".to_string(), noise));
    for fmt in ["qcow2", "vmdk", "vdi"] {
        if fmt == t.driver {
            continue;
        }
        let p = dir.join(format!("probe-{}.{fmt}", t.seed));
        qemu_img_create(fmt, &p)?;
        out.push((format!("a {fmt} image made by qemu-img"), p));
    }
    Ok(out)
}

/// A format driver scores 0 on files that are not its format (a fallback
/// format such as raw at most 1) and claims its own fresh image with a
/// score above the fallback's, so that probing picks it.
pub(super) fn probe_claims_only_its_own(t: &Target) -> Result<(), String> {
    if t.kind != DriverKind::Format {
        return Err("SKIP: only format drivers probe".into());
    }
    let driver = t.driver()?;
    let fallback = FALLBACK_FORMATS.contains(&t.driver.as_str());
    let allowed = u32::from(fallback);
    for (what, path) in foreign_samples(t)? {
        let score = probe_file(&*driver, &path)?;
        let _ = std::fs::remove_file(&path);
        ensure(score <= allowed, || {
            format!("probe claims {what} with score {score} (must be {allowed})")
        })?;
    }
    if t.created {
        let score = probe_file(&*driver, Path::new(&t.filename))?;
        let want = if fallback { 1 } else { 2 };
        ensure(score >= want, || {
            format!("probe scores its own fresh image {score} (must be at least {want})")
        })?;
    }
    Ok(())
}
