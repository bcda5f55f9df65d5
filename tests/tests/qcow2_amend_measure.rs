//! qcow2 make_empty, amend and measure through the plugin host, against
//! qemu-img.

use blk_tests::{qemu_img_ok, qemu_io_ok, s};
use block_core::MeasureRequest;
use plugin_host::{Host, OpenOptions};

fn host() -> Host {
    Host::builder().env_plugin_path(false).build().unwrap()
}

fn kv(o: &str) -> Vec<(String, String)> {
    o.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (k, v) = x.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn open_rw(h: &Host, p: &str) -> plugin_host::Image {
    h.open(
        p,
        &OpenOptions {
            format: Some("qcow2".into()),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn host_measure_matches_qemu() {
    let h = host();
    for o in [
        "",
        "cluster_size=512,refcount_bits=2",
        "cluster_size=2M,extended_l2=on",
    ] {
        for size in [0u64, 12345, 1 << 30] {
            let ss = size.to_string();
            let mut a = vec!["measure", "--output=json", "-O", "qcow2", "--size", &ss];
            if !o.is_empty() {
                a.extend(["-o", o]);
            }
            let v: serde_json::Value = serde_json::from_str(&qemu_img_ok(&a)).unwrap();
            let r = h
                .measure(
                    "qcow2",
                    &MeasureRequest {
                        options: kv(o),
                        virtual_size: size,
                        data_extents: None,
                        source_bitmaps: None,
                    },
                )
                .unwrap();
            assert_eq!(r.required, v["required"].as_u64().unwrap(), "{o} {size}");
            assert_eq!(r.fully_allocated, v["fully-allocated"].as_u64().unwrap());
        }
    }
}

#[test]
fn host_make_empty_and_amend() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img_ok(&["create", "-q", "-f", "qcow2", s(&base), "2M"]);
    qemu_io_ok(&["-c", "write -P 1 0 2M", s(&base)]);
    qemu_img_ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        "qcow2",
        s(&top),
        "2M",
    ]);
    qemu_io_ok(&["-c", "write -P 2 4k 300k", s(&top)]);
    let h = host();
    {
        let i = open_rw(&h, s(&top));
        i.amend(&kv("refcount_bits=4,lazy_refcounts=on")).unwrap();
        i.make_empty().unwrap();
        let e = i.amend(&kv("cluster_size=4k")).unwrap_err();
        assert!(
            e.to_string().contains("only supported for image creation"),
            "{e}"
        );
    }
    let out = qemu_img_ok(&["check", s(&top)]);
    assert!(out.contains("No errors"), "{out}");
    let info = qemu_img_ok(&["info", s(&top)]);
    assert!(
        info.contains("refcount bits: 4") && info.contains("lazy refcounts: true"),
        "{info}"
    );
    qemu_img_ok(&["compare", s(&top), s(&base)]);
}
