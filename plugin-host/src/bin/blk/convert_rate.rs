//! `-r RATE`: the limit on the bytes per second `convert` and `commit`
//! copy (the pacing is `plugin_host::ops::RateLimit`'s).

pub use plugin_host::ops::RateLimit;

/// Parses `-r` with qemu-img's messages.
pub fn parse(v: Option<&str>) -> crate::common::CliResult<Option<RateLimit>> {
    v.map(|s| crate::args::cvtnum_full("rate limit", s, 0, i64::MAX as u64).map(RateLimit::new))
        .transpose()
}
