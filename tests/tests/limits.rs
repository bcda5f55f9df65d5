//! Request limits and capabilities every driver reports (issue 9): the
//! values follow from the file, the window, the cluster size and the open
//! mode, and are the same through the plugin libraries (ABI minor 5's
//! `limits` and `capabilities` slots) as linked in.

use block_core::{IoLimits, NodeCapabilities, ThreadModel};
use plugin_host::{Host, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn linked() -> Host {
    Host::builder().env_plugin_path(false).build().unwrap()
}

fn plugins() -> Host {
    Host::builder()
        .env_plugin_path(false)
        .static_drivers(false)
        .plugin_dir(blk_tests::plugin_dir())
        .build()
        .unwrap()
}

/// The limits and capabilities of `name` opened with `format`.
fn answers(
    host: &Host,
    name: &Path,
    format: &str,
    read_only: bool,
) -> (IoLimits, NodeCapabilities) {
    let o = OpenOptions {
        format: Some(format.to_string()),
        read_only,
        ..OpenOptions::default()
    };
    let img = host.open(name.to_str().unwrap(), &o).unwrap();
    let n = img.node();
    (n.limits(), n.capabilities())
}

fn writer(multi_conn_safe: bool, fast_zero: bool) -> NodeCapabilities {
    NodeCapabilities {
        can_zero: true,
        can_fast_zero: fast_zero,
        can_fua: true,
        can_discard: true,
        multi_conn_safe,
        thread_model: ThreadModel::Parallel,
    }
}

#[test]
fn every_driver_reports_its_limits_and_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host = linked();
    let raw = d.join("a.raw");
    host.create("raw", raw.to_str().unwrap(), "", Some(1 << 20), None)
        .unwrap();
    let blksize = std::fs::metadata(&raw).unwrap().blksize();
    let file_limits = IoLimits {
        request_alignment: 1,
        optimal_transfer: blksize,
        ..IoLimits::default()
    };
    let mut cases = vec![
        ("file", raw.clone(), false, file_limits, writer(true, true)),
        ("raw", raw.clone(), false, file_limits, writer(true, true)),
        (
            "file",
            raw.clone(),
            true,
            file_limits,
            NodeCapabilities {
                multi_conn_safe: true,
                ..NodeCapabilities::default()
            },
        ),
    ];
    for cs in [512u64, 65536, 1 << 20] {
        let q = d.join(format!("c{cs}.qcow2"));
        let opts = format!("cluster_size={cs}");
        host.create("qcow2", q.to_str().unwrap(), &opts, Some(4 << 20), None)
            .unwrap();
        let lim = IoLimits {
            request_alignment: 1,
            optimal_transfer: cs.max(blksize),
            ..IoLimits::default()
        };
        cases.push(("qcow2", q.clone(), false, lim, writer(false, true)));
        cases.push(("qcow2", q, true, lim, NodeCapabilities::default()));
    }
    let null_caps = writer(true, true);
    for (h, origin) in [(linked(), "linked in"), (plugins(), "plugin")] {
        for (fmt, name, ro, lim, caps) in &cases {
            let got = answers(&h, name, fmt, *ro);
            assert_eq!(got, (*lim, *caps), "{origin} {fmt} {name:?} read-only {ro}");
        }
        let o = OpenOptions::default();
        let img = h.open("null-co://", &o).unwrap();
        assert_eq!(
            (img.node().limits(), img.node().capabilities()),
            (IoLimits::default(), null_caps),
            "{origin} null-co"
        );
    }
}

#[test]
fn raw_window_reports_its_childs_limits() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("w.raw");
    let host = linked();
    host.create("raw", raw.to_str().unwrap(), "", Some(1 << 20), None)
        .unwrap();
    let o = OpenOptions {
        format: Some("raw".into()),
        options: vec![
            ("offset".into(), "4096".into()),
            ("size".into(), "64k".into()),
        ],
        ..OpenOptions::default()
    };
    let img = host.open(raw.to_str().unwrap(), &o).unwrap();
    assert_eq!(img.length().unwrap(), 65536);
    let file = img.graph().children()[0].1.node.clone();
    assert_eq!(img.node().limits(), file.limits());
    assert_eq!(img.node().capabilities(), file.capabilities());
}
