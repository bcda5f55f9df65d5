//! Opening a format's backing file: the child request every format with
//! a backing file (qcow2, qed, vmdk, vpc's differencing disks) makes the
//! same way.

use crate::host::{ChildRequest, ChildRole};
use crate::types::OpenFlags;

/// The request for the backing file `name` of the image `image` opened
/// with `flags`, of format `format` (`None` probes): `name` resolved
/// against the image's directory, opened read-only with the image's
/// inactive, no-lock, force-share and no-probe flags.
pub fn backing_request(
    image: &str,
    name: &str,
    format: Option<String>,
    flags: OpenFlags,
) -> ChildRequest {
    let inherited = OpenFlags::INACTIVE.0
        | OpenFlags::NO_LOCK.0
        | OpenFlags::FORCE_SHARE.0
        | OpenFlags::NO_PROBE.0;
    let mut r = ChildRequest::new(ChildRole::Backing, name);
    r.relative_to = Some(image.to_string());
    r.format = format;
    r.flags = OpenFlags::READ_ONLY.with(OpenFlags(flags.0 & inherited));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backing_files_open_read_only_with_the_inherited_flags() {
        let flags = OpenFlags::INACTIVE
            .with(OpenFlags::NO_PROBE)
            .with(OpenFlags::CHECK)
            .with(OpenFlags::NO_BACKING);
        let r = backing_request("dir/top.qcow2", "base.qcow2", Some("qcow2".into()), flags);
        assert_eq!(r.role, ChildRole::Backing);
        assert_eq!(r.filename, "base.qcow2");
        assert_eq!(r.relative_to.as_deref(), Some("dir/top.qcow2"));
        assert_eq!(r.format.as_deref(), Some("qcow2"));
        let want = OpenFlags::READ_ONLY
            .with(OpenFlags::INACTIVE)
            .with(OpenFlags::NO_PROBE);
        assert_eq!(r.flags, want);
        let r = backing_request("top", "base", None, OpenFlags::NONE);
        assert_eq!((r.flags, r.format), (OpenFlags::READ_ONLY, None));
    }
}
