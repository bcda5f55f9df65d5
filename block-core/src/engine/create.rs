//! The steps of image creation that every format with a header and a
//! backing file shares: reading the backing options, deciding the virtual
//! size (given, or the backing file's), and writing the initial metadata
//! into a new, empty file.

use super::{Format, FormatNode};
use crate::driver::OpenRequest;
use crate::error::{BlockError, Result, ResultExt};
use crate::host::{ChildRequest, ChildRole, HostServices};
use crate::node::{BlockNode, BlockNodeExt};
use crate::options::OptionValues;
use crate::types::OpenFlags;
use std::sync::Arc;

fn refuse(filename: &str, msg: &str) -> BlockError {
    BlockError::invalid("create", msg).in_file(filename)
}

/// The `backing_file` and `backing_fmt` create options (an empty value
/// counts as absent), refusing one without the other in QEMU's words.
pub fn backing_options(
    filename: &str,
    o: &OptionValues,
) -> Result<(Option<String>, Option<String>)> {
    let file = o.get_str("backing_file").filter(|s| !s.is_empty());
    let format = o.get_str("backing_fmt").filter(|s| !s.is_empty());
    match (&file, &format) {
        (Some(_), None) => Err(refuse(
            filename,
            "Backing file specified without backing format",
        )),
        (None, Some(_)) => Err(refuse(
            filename,
            "Backing format cannot be used without backing file",
        )),
        _ => Ok((file, format)),
    }
}

/// The virtual size of a new image `filename`: the `size` option, else
/// the length of its backing file `backing` (opened read-only, relative to
/// `filename`, as format `backing_fmt`), else QEMU's refusal.
pub fn virtual_size(
    filename: &str,
    o: &OptionValues,
    backing: Option<&str>,
    backing_fmt: Option<&str>,
    host: &dyn HostServices,
) -> Result<u64> {
    if let Some(size) = o.get_size("size").in_file(filename)? {
        return Ok(size);
    }
    let Some(b) = backing else {
        return Err(refuse(filename, "Image creation needs a size parameter"));
    };
    let mut r = ChildRequest::new(ChildRole::Backing, b);
    r.relative_to = Some(filename.to_string());
    r.format = backing_fmt.map(str::to_string);
    r.flags = OpenFlags::READ_ONLY;
    host.open_child(&r)?.length()
}

/// Creates `filename` empty and writes `initial` at its start through a
/// writable file child, then flushes it; a failed write reads
/// "Could not write {format} header: ..." as QEMU's.
pub fn write_new_image(
    host: &dyn HostServices,
    filename: &str,
    initial: &[u8],
    format: &str,
) -> Result<()> {
    host.create_file(filename, 0, crate::types::Preallocation::Off)?;
    let mut r = ChildRequest::new(ChildRole::File, filename);
    r.flags = OpenFlags::NONE;
    let file: Arc<dyn BlockNode> = host.open_child(&r)?;
    file.write_at(0, initial).map_err(|e| {
        BlockError::new(e.kind, "", e.message)
            .context(format_args!("Could not write {format} header"))
            .in_file(filename)
    })?;
    file.flush()
}

/// The last step of a create: opens the new image `filename` (without
/// its backing file) with `open`, runs `size` on the format (the initial
/// resize, which allocates and preallocates), flushes and closes it.
/// Errors name the file.
pub fn open_and_size<F: Format>(
    filename: &str,
    host: Arc<dyn HostServices>,
    open: impl FnOnce(&OpenRequest, Arc<dyn HostServices>) -> Result<F>,
    size: impl FnOnce(&F) -> Result<()>,
) -> Result<()> {
    let req = OpenRequest::new(filename, OpenFlags::NO_BACKING);
    let node = FormatNode::new(open(&req, host)?, false, false);
    let r = size(node.format()).and_then(|_| node.flush());
    drop(node);
    r.in_file(filename)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::options::{declare, split_option_string, OptType};
    use crate::testutil::{ChildOp, InjectedError, MemFile, TestHost};

    fn values(text: &str) -> OptionValues {
        let schema = declare(&[
            ("size", OptType::Size, None, "size"),
            ("backing_file", OptType::Text, None, "backing"),
            ("backing_fmt", OptType::Text, None, "backing format"),
        ]);
        OptionValues::parse(&schema, &split_option_string(text).unwrap()).unwrap()
    }

    #[test]
    fn backing_needs_both_names() {
        let o = values("backing_file=b.img,backing_fmt=raw");
        let got = backing_options("a.img", &o).unwrap();
        assert_eq!(got, (Some("b.img".into()), Some("raw".into())));
        assert_eq!(
            backing_options("a.img", &values("backing_file=")).unwrap(),
            (None, None)
        );
        let e = backing_options("a.img", &values("backing_file=b.img")).unwrap_err();
        assert_eq!(e.message, "Backing file specified without backing format");
        assert_eq!(e.file.as_deref(), Some("a.img"));
        let e = backing_options("a.img", &values("backing_fmt=raw")).unwrap_err();
        assert_eq!(
            e.message,
            "Backing format cannot be used without backing file"
        );
    }

    #[test]
    fn size_given_or_the_backing_files() {
        let host = TestHost::new();
        host.add_file(ChildRole::Backing, "b.img", MemFile::new(12345));
        let o = values("size=1M");
        assert_eq!(
            virtual_size("a.img", &o, None, None, &host).unwrap(),
            1 << 20
        );
        let o = values("");
        let got = virtual_size("dir/a.img", &o, Some("b.img"), Some("raw"), &host).unwrap();
        assert_eq!(got, 12345);
        let req = host.opened().pop().unwrap();
        assert_eq!(req.relative_to.as_deref(), Some("dir/a.img"));
        assert_eq!(req.format.as_deref(), Some("raw"));
        assert!(req.flags.contains(OpenFlags::READ_ONLY));
        let e = virtual_size("a.img", &o, None, None, &host).unwrap_err();
        assert_eq!(e.message, "Image creation needs a size parameter");
    }

    #[test]
    fn initial_metadata_written_or_refused_in_qemus_words() {
        let host = TestHost::new();
        write_new_image(&host, "a.img", b"head", "toy").unwrap();
        assert_eq!(host.created_file("a.img").unwrap().contents(), b"head");
        // A file that refuses writes: the error names the header.
        let bad = MemFile::new(0);
        bad.inject_error(InjectedError {
            offset: 0,
            op: Some(ChildOp::Write),
            kind: ErrorKind::NoSpace,
        });
        host.add_file(ChildRole::File, "b.img", bad);
        let e = write_new_image(&host, "b.img", b"head", "toy").unwrap_err();
        assert!(e.message.starts_with("Could not write toy header: "), "{e}");
        assert_eq!(e.file.as_deref(), Some("b.img"));
    }
}
