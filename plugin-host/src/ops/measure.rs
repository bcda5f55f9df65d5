//! Measure (qemu-img measure): how many bytes an image of a format needs,
//! empty or holding the data of a source image (its data ranges through
//! the backing chain, as block status reports them, and its persistent
//! bitmaps). The source is image 0 in [`OpError::At`].

use super::progress::Reporter;
use super::{CancelToken, OpError, ProgressFn, Stage};
use crate::{Host, Image};
use block_core::{ExtentFlags, MeasureBitmap, MeasureRequest, MeasureResult};

/// The image to measure for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeasureQuery {
    /// The format of the image to be created.
    pub format: String,
    /// Its create options (`key=value`, the format's own; not `size`).
    pub options: Vec<(String, String)>,
    /// Its virtual size when there is no source (ignored with one: the
    /// source's length is used).
    pub size: u64,
}

/// The data ranges of `img` through its backing chain: what qemu's measure
/// counts as data (neither reading as zeros nor a hole), merged.
fn data_extents(
    img: &Image,
    reporter: &Reporter<'_>,
    cancel: &CancelToken,
) -> Result<Vec<(u64, u64)>, OpError> {
    let len = img.length()?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    while off < len {
        cancel.check()?;
        let (e, _) = img
            .block_status_above(off, len - off)
            .map_err(|e| OpError::at(Stage::BlockStatus, 0, off, e))?;
        let n = e.length.clamp(1, len - off);
        let data = e.flags.contains(ExtentFlags::DATA) && !e.flags.contains(ExtentFlags::ZERO);
        if data {
            match out.last_mut() {
                Some((s, l)) if *s + *l == off => *l += n,
                _ => out.push((off, n)),
            }
        }
        off += n;
        reporter.report(off);
    }
    Ok(out)
}

/// The persistent bitmaps of `img` (`None` when its format has none).
fn source_bitmaps(img: &Image) -> Option<Vec<MeasureBitmap>> {
    let list = img.bitmap(r#"{"op":"list"}"#).ok()?;
    let v: serde_json::Value = serde_json::from_str(&list).ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|b| MeasureBitmap {
                name: b["name"].as_str().unwrap_or("").to_string(),
                granularity: b["granularity"].as_u64().unwrap_or(65536),
            })
            .collect(),
    )
}

/// Measures an image of `query.format` for `source` (or, without one, an
/// empty image of `query.size` bytes). Progress counts the source's bytes
/// whose block status was read. A format that cannot measure fails with
/// an [`OpError::Block`] of kind `Unsupported`.
pub fn measure(
    host: &Host,
    source: Option<&Image>,
    query: &MeasureQuery,
    progress: ProgressFn<'_>,
    cancel: &CancelToken,
) -> Result<MeasureResult, OpError> {
    let mut req = MeasureRequest {
        options: query.options.clone(),
        virtual_size: query.size,
        data_extents: None,
        source_bitmaps: None,
    };
    if let Some(img) = source {
        req.virtual_size = img.length()?;
        let reporter = Reporter::new(progress, req.virtual_size, Stage::BlockStatus);
        reporter.report(0);
        req.data_extents = Some(data_extents(img, &reporter, cancel)?);
        req.source_bitmaps = source_bitmaps(img);
        reporter.report(req.virtual_size);
    }
    Ok(host.measure(&query.format, &req)?)
}
