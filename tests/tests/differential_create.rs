//! The differential table, part 4: `create` with every format option, its
//! option help and its errors.

use blk_tests::differential::{check_table, img};

/// `create`: formats, options, sizes and their errors.
// Left out: LUKS creation with a secret (blk has no encryption; it
// refuses).
#[test]
fn differential_create() {
    let f = &["a.qcow2", "a.raw"];
    let rows = vec![
        img("create negative size", f, "create -f qcow2 x.qcow2 -5"),
        img(
            "create negative size after --",
            f,
            "create -f qcow2 x.qcow2 -- -5",
        ),
        img(
            "create extra argument",
            f,
            "create -f qcow2 x.qcow2 1M extra",
        ),
        img("create no size", f, "create -f qcow2 x.qcow2"),
        img("create raw no size", f, "create -f raw x.raw"),
        img("create bad format", f, "create -f bogus x.img 1M"),
        img("create default format", f, "create x.raw 1M"),
        img("create fractional size", f, "create -f qcow2 x.qcow2 1.5M"),
        img("create zero size", f, "create -f qcow2 x.qcow2 0"),
        img("create 1P", f, "create -f qcow2 x.qcow2 1P"),
        img("create past int64", f, "create -f qcow2 x.qcow2 100E"),
        img("create 9E", f, "create -f qcow2 x.qcow2 9E"),
        img("create v2", f, "create -f qcow2 -o compat=0.10 x.qcow2 1M"),
        img(
            "create bad compat",
            f,
            "create -f qcow2 -o compat=bogus x.qcow2 1M",
        ),
        img(
            "create extended l2",
            f,
            "create -f qcow2 -o extended_l2=on x.qcow2 1M",
        ),
        img(
            "create extended l2 4k",
            f,
            "create -f qcow2 -o extended_l2=on,cluster_size=4k x.qcow2 1M",
        ),
        img(
            "create 1M clusters",
            f,
            "create -f qcow2 -o cluster_size=1M x.qcow2 1M",
        ),
        img(
            "create bad cluster size",
            f,
            "create -f qcow2 -o cluster_size=100 x.qcow2 1M",
        ),
        img(
            "create cluster size not a size",
            f,
            "create -f qcow2 -o cluster_size=bogus x.qcow2 1M",
        ),
        img(
            "create preallocation metadata",
            f,
            "create -f qcow2 -o preallocation=metadata x.qcow2 1M",
        ),
        img(
            "create preallocation falloc",
            f,
            "create -f qcow2 -o preallocation=falloc x.qcow2 1M",
        ),
        img(
            "create preallocation full",
            f,
            "create -f qcow2 -o preallocation=full x.qcow2 1M",
        ),
        img(
            "create bad preallocation",
            f,
            "create -f qcow2 -o preallocation=bogus x.qcow2 1M",
        ),
        img(
            "create raw bad preallocation",
            f,
            "create -f raw -o preallocation=bogus x.raw 1M",
        ),
        img(
            "create raw preallocation full",
            f,
            "create -f raw -o preallocation=full x.raw 1M",
        ),
        img(
            "create raw preallocation falloc",
            f,
            "create -f raw -o preallocation=falloc x.raw 1M",
        ),
        img(
            "create bad compression type",
            f,
            "create -f qcow2 -o compression_type=bogus x.qcow2 1M",
        ),
        img(
            "create bad refcount bits",
            f,
            "create -f qcow2 -o refcount_bits=bogus x.qcow2 1M",
        ),
        img(
            "create bad lazy refcounts",
            f,
            "create -f qcow2 -o lazy_refcounts=bogus x.qcow2 1M",
        ),
        img(
            "create data file",
            f,
            "create -f qcow2 -o data_file=x.data x.qcow2 1M",
        ),
        img(
            "create raw data file",
            f,
            "create -f qcow2 -o data_file=x.data,data_file_raw=on x.qcow2 1M",
        ),
        img("create raw -o help", f, "create -f raw -o help"),
        img("create qcow2 -o help", f, "create -f qcow2 -o help"),
        img("create qcow2 -o ?", f, "create -f qcow2 -o '?'"),
        img(
            "create help after options",
            f,
            "create -f qcow2 -o cluster_size=4k,help",
        ),
        img("convert -o help", f, "convert -O qcow2 -o help"),
        img(
            "create encryption=on",
            f,
            "create -f qcow2 -o encryption=on x.qcow2 1M",
        ),
        img(
            "create aes",
            f,
            "create -f qcow2 -o encrypt.format=aes x.qcow2 1M",
        ),
        img(
            "create luks no secret",
            f,
            "create -f qcow2 -o encrypt.format=luks x.qcow2 1M",
        ),
        img(
            "create bad encrypt.format",
            f,
            "create -f qcow2 -o encrypt.format=bogus x.qcow2 1M",
        ),
        img(
            "create luks cipher no secret",
            f,
            "create -f qcow2 -o encrypt.cipher-alg=aes-256,encrypt.format=luks x.qcow2 1M",
        ),
        img(
            "create encrypt option without format",
            f,
            "create -f qcow2 -o encrypt.iter-time=10 x.qcow2 1M",
        ),
        img(
            "measure luks no secret",
            f,
            "measure -O qcow2 -o encrypt.format=luks --size 1G",
        ),
        img(
            "convert to luks no secret",
            f,
            "convert -O qcow2 -o encrypt.format=luks a.qcow2 out.qcow2",
        ),
        img(
            "amend encrypt.format",
            f,
            "amend -o encrypt.format=luks a.qcow2",
        ),
        img(
            "create backing without -F",
            f,
            "create -f qcow2 -b a.qcow2 x.qcow2",
        ),
        img(
            "create missing backing",
            f,
            "create -f qcow2 -b nope.qcow2 -F qcow2 x.qcow2",
        ),
        img(
            "create missing backing with size",
            f,
            "create -f qcow2 -b nope.qcow2 -F qcow2 x.qcow2 1M",
        ),
        img(
            "create unsafe missing backing",
            f,
            "create -f qcow2 -u -b nope.qcow2 -F qcow2 x.qcow2 1M",
        ),
        img(
            "create backing of another format",
            f,
            "create -f qcow2 -b a.raw -F qcow2 x.qcow2",
        ),
        img(
            "create backing of an unknown format",
            f,
            "create -f qcow2 -b a.raw -F nosuch x.qcow2",
        ),
        img(
            "create backing in a missing directory",
            f,
            "create -f qcow2 -b nodir/b.raw -F raw x.qcow2",
        ),
        img(
            "create raw backing",
            f,
            "create -f qcow2 -b a.raw -F raw x.qcow2",
        ),
        img(
            "create larger than backing",
            f,
            "create -f qcow2 -b a.qcow2 -F qcow2 x.qcow2 32M",
        ),
        img(
            "create smaller than backing",
            f,
            "create -f qcow2 -b a.qcow2 -F qcow2 x.qcow2 8M",
        ),
        img("create -q", f, "create -q -f qcow2 x.qcow2 1M"),
        img(
            "create refcount bits 1",
            f,
            "create -f qcow2 -o refcount_bits=1 x.qcow2 1M",
        ),
        img(
            "create refcount bits 128",
            f,
            "create -f qcow2 -o refcount_bits=128 x.qcow2 1M",
        ),
        img(
            "create lazy refcounts on v2",
            f,
            "create -f qcow2 -o lazy_refcounts=on,compat=0.10 x.qcow2 1M",
        ),
        img(
            "create size option",
            f,
            "create -f qcow2 -o size=2M x.qcow2",
        ),
        img(
            "create size twice",
            f,
            "create -f qcow2 -o size=2M x.qcow2 1M",
        ),
        img(
            "create size twice equal",
            f,
            "create -f qcow2 -o size=1M x.qcow2 1M",
        ),
        img(
            "create zstd",
            f,
            "create -f qcow2 -o compression_type=zstd x.qcow2 1M",
        ),
        img(
            "create in missing directory",
            f,
            "create -f qcow2 nodir/x.qcow2 1M",
        ),
        img("create no file", f, "create -f qcow2"),
        img(
            "create unknown option letter",
            f,
            "create -f qcow2 -Z x.qcow2 1M",
        ),
    ];
    check_table(&rows);
}
