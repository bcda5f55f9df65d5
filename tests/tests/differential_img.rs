//! The differential table, part 2: every qemu-img subcommand over every
//! kind of fixture (info, check, map, compare, convert, dd, measure, amend,
//! resize, snapshot, rebase, commit, create), with options and errors.

use blk_tests::differential::{check_table, img, io, KINDS};

/// `info` on every kind of image, its options and its errors.
// Left out: LUKS images opened with a secret (blk cannot decrypt).
#[test]
fn differential_info() {
    let f = KINDS;
    let rows = vec![
        img("info missing file", f, "info nope.qcow2"),
        img("info -f raw on qcow2", f, "info -f raw a.qcow2"),
        img("info -f qcow2 on raw", f, "info -f qcow2 a.raw"),
        img("info unknown format", f, "info -f bogus a.qcow2"),
        img("info no file", f, "info"),
        img("info two files", f, "info a.qcow2 b.qcow2"),
        img("info unknown long option", f, "info --bogus a.qcow2"),
        img("info unknown short option", f, "info -x a.qcow2"),
        img("info bad output", f, "info --output=yaml a.qcow2"),
        img("info human", f, "info --output=human a.qcow2"),
        img("info -U", f, "info -U a.qcow2"),
        img("info 4k clusters", f, "info c4k.qcow2"),
        img("info compressed", f, "info comp.qcow2"),
        img("info compressed json", f, "info --output=json comp.qcow2"),
        img("info v2", f, "info v2.qcow2"),
        img("info v2 json", f, "info --output=json v2.qcow2"),
        img("info extended l2", f, "info xl2.qcow2"),
        img("info extended l2 json", f, "info --output=json xl2.qcow2"),
        img("info luks", f, "info luks.qcow2"),
        img("info luks json", f, "info --output=json luks.qcow2"),
        img("info raw probed", f, "info a.raw"),
        img("info raw json", f, "info --output=json a.raw"),
        img("info file: prefix", f, "info file:a.qcow2"),
        img(
            "info file: prefix json",
            f,
            "info --output=json file:a.qcow2",
        ),
        img("info file: chain", f, "info --backing-chain file:top.qcow2"),
        img("info file: missing", f, "info file:nope.qcow2"),
        img(
            "info image-opts",
            f,
            "info --image-opts driver=qcow2,file.filename=a.qcow2",
        ),
        img("info snapshots json", f, "info --output=json snap.qcow2"),
        img(
            "info chain of a base",
            f,
            "info --backing-chain --output=json base.qcow2",
        ),
        img("info small raw", f, "info t.raw"),
        img("info data file", f, "info ext.qcow2"),
        img("info data file json", f, "info --output=json ext.qcow2"),
        img("info data file chain", f, "info --backing-chain ext.qcow2"),
    ];
    check_table(&rows);
}

/// `check` on every kind of image.
#[test]
fn differential_check() {
    let f = KINDS;
    let rows = vec![
        img("check missing file", f, "check nope.qcow2"),
        img("check raw", f, "check -f raw a.raw"),
        img("check unknown format", f, "check -f bogus a.qcow2"),
        img("check bad repair mode", f, "check -r bogus a.qcow2"),
        img("check json", f, "check --output=json a.qcow2"),
        img("check compressed", f, "check comp.qcow2"),
        img("check compressed json", f, "check --output=json comp.qcow2"),
        img("check data file", f, "check ext.qcow2"),
        img("check v2", f, "check v2.qcow2"),
        img("check extended l2", f, "check xl2.qcow2"),
        img("check luks", f, "check luks.qcow2"),
        img("check snapshots", f, "check snap.qcow2"),
        img("check overlay", f, "check top.qcow2"),
        img("check -U", f, "check -U a.qcow2"),
        img("check no file", f, "check"),
        img("check two files", f, "check a.qcow2 b.qcow2"),
        img("check -q leaks", &["leak.qcow2"], "check -q leak.qcow2"),
        img(
            "repair all leaks",
            &["leak.qcow2"],
            "check -r all leak.qcow2",
        ),
        img(
            "repair leaks json",
            &["leak.qcow2"],
            "check --output=json -r leaks leak.qcow2",
        ),
        img(
            "check file: prefix",
            &["leak.qcow2"],
            "check file:leak.qcow2",
        ),
    ];
    check_table(&rows);
}

/// `map` and `compare`.
// Left out: luks.qcow2 opened with its secret (blk cannot decrypt).
#[test]
fn differential_map_compare() {
    let f = KINDS;
    let rows = vec![
        img("map raw", f, "map -f raw a.raw"),
        img("map raw json", f, "map --output=json a.raw"),
        img("map human 4k clusters", f, "map --output=human c4k.qcow2"),
        img("map compressed", f, "map --output=json comp.qcow2"),
        img("map v2", f, "map --output=json v2.qcow2"),
        img("map extended l2", f, "map --output=json xl2.qcow2"),
        img(
            "map range",
            f,
            "map --start-offset=1M --max-length=2M --output=json a.qcow2",
        ),
        img("map bad start", f, "map --start-offset=bogus a.qcow2"),
        img("map bad length", f, "map --max-length=-1 a.qcow2"),
        img("map bad output", f, "map --output=bogus a.qcow2"),
        img("map missing file", f, "map nope.qcow2"),
        img("map overlay human", f, "map top.qcow2"),
        img("map file: prefix", f, "map --output=json file:a.qcow2"),
        img("map no file", f, "map"),
        img("compare differ", f, "compare a.qcow2 b.qcow2"),
        img("compare strict", f, "compare -s a.qcow2 a.raw"),
        img(
            "compare formats",
            f,
            "compare -f qcow2 -F raw a.qcow2 a.raw",
        ),
        img("compare quiet", f, "compare -q a.qcow2 b.qcow2"),
        img("compare missing file", f, "compare a.qcow2 nope.qcow2"),
        img("compare bad cache", f, "compare -m 9 a.qcow2 a.raw"),
        img(
            "compare overlay and base",
            f,
            "compare top.qcow2 base.qcow2",
        ),
        img("compare compressed", f, "compare comp.qcow2 a.qcow2"),
        img("compare extended l2", f, "compare xl2.qcow2 xl2.qcow2"),
        img("compare -U", f, "compare -U a.qcow2 a.raw"),
        img("compare sizes differ", f, "compare a.qcow2 t.qcow2"),
        img(
            "compare strict sizes differ",
            f,
            "compare -s a.qcow2 t.qcow2",
        ),
        img("compare one file", f, "compare a.qcow2"),
        img(
            "compare three files",
            f,
            "compare a.qcow2 b.qcow2 c4k.qcow2",
        ),
        img("map luks", f, "map luks.qcow2"),
        img("map luks json", f, "map --output=json luks.qcow2"),
        img("compare luks first", f, "compare luks.qcow2 a.qcow2"),
        img("compare luks second", f, "compare a.qcow2 luks.qcow2"),
        img("convert luks", f, "convert -O raw luks.qcow2 out.raw"),
        img("dd luks", f, "dd if=luks.qcow2 of=out.raw"),
        img("measure luks", f, "measure -O qcow2 luks.qcow2"),
        img("snapshot list luks", f, "snapshot -l luks.qcow2"),
        img("snapshot create luks", f, "snapshot -c x luks.qcow2"),
        img("bench luks", f, "bench -c 1 luks.qcow2"),
        io("io read luks", f, "-c 'read 0 512' luks.qcow2"),
        img(
            "compare file: names",
            f,
            "compare file:a.qcow2 file:nope.qcow2",
        ),
        img("compare -f raw on qcow2", f, "compare -f raw a.qcow2 a.raw"),
        img("compare bad -f", f, "compare -f bogus a.qcow2 a.raw"),
    ];
    check_table(&rows);
}

/// `convert`: options, sources of every kind, errors.
#[test]
fn differential_convert() {
    let f = KINDS;
    let rows = vec![
        img("convert qcow2", f, "convert -O qcow2 a.qcow2 out.qcow2"),
        img(
            "convert raw to raw",
            f,
            "convert -O raw -f raw a.raw out.raw",
        ),
        img(
            "convert wrong -f",
            f,
            "convert -f qcow2 -O raw a.raw out.raw",
        ),
        img("convert bad -O", f, "convert -O bogus a.qcow2 out.raw"),
        img(
            "convert missing source",
            f,
            "convert -O qcow2 nope.qcow2 out.qcow2",
        ),
        img("convert no target", f, "convert -O qcow2 a.qcow2"),
        img("convert no files", f, "convert -O qcow2"),
        img(
            "convert 4k clusters",
            f,
            "convert -O qcow2 -o cluster_size=4k a.qcow2 out.qcow2",
        ),
        img(
            "convert to v2",
            f,
            "convert -O qcow2 -o compat=0.10 a.qcow2 out.qcow2",
        ),
        img(
            "convert to extended l2",
            f,
            "convert -O qcow2 -o extended_l2=on a.qcow2 out.qcow2",
        ),
        img(
            "convert unknown -o",
            f,
            "convert -O qcow2 -o bogus=1 a.qcow2 out.qcow2",
        ),
        img(
            "convert bad cluster size",
            f,
            "convert -O qcow2 -o cluster_size=3k a.qcow2 out.qcow2",
        ),
        img(
            "convert compressed source",
            f,
            "convert -O raw comp.qcow2 out.raw",
        ),
        img(
            "convert data file source",
            f,
            "convert -O raw ext.qcow2 out.raw",
        ),
        img(
            "convert extended l2 source",
            f,
            "convert -O raw xl2.qcow2 out.raw",
        ),
        img("convert v2 source", f, "convert -O raw v2.qcow2 out.raw"),
        img(
            "convert with -B",
            f,
            "convert -O qcow2 -B a.qcow2 -F qcow2 b.qcow2 out.qcow2",
        ),
        img("convert -n qcow2", f, "convert -n -O qcow2 a.qcow2 t.qcow2"),
        img("convert -n raw", f, "convert -n -O raw a.qcow2 t.raw"),
        img("convert -S 0", f, "convert -S 0 -O raw a.qcow2 out.raw"),
        img(
            "convert -S 4k",
            f,
            "convert -S 4k -O qcow2 a.qcow2 out.qcow2",
        ),
        img(
            "convert -S 1.5k",
            f,
            "convert -S 1.5k -O raw a.qcow2 out.raw",
        ),
        img(
            "convert -S bogus",
            f,
            "convert -S bogus -O raw a.qcow2 out.raw",
        ),
        img(
            "convert -S negative",
            f,
            "convert -S -1 -O raw a.qcow2 out.raw",
        ),
        img(
            "convert -S unaligned",
            f,
            "convert -S 1000 -O raw a.qcow2 out.raw",
        ),
        img(
            "convert -W -m 4",
            f,
            "convert -W -m 4 -O qcow2 a.qcow2 out.qcow2",
        ),
        img("convert -m 0", f, "convert -m 0 -O qcow2 a.qcow2 out.qcow2"),
        img(
            "convert two sources",
            f,
            "convert -O qcow2 a.qcow2 b.qcow2 out.qcow2",
        ),
        img("convert -q", f, "convert -q -O qcow2 a.qcow2 out.qcow2"),
        img("convert -p", f, "convert -p -O qcow2 a.qcow2 out.qcow2"),
        img(
            "convert -t none",
            f,
            "convert -t none -O qcow2 a.qcow2 out.qcow2",
        ),
        img(
            "convert bad -T",
            f,
            "convert -T bogus -O qcow2 a.qcow2 out.qcow2",
        ),
        img(
            "convert --target-is-zero -n",
            f,
            "convert --target-is-zero -n -O qcow2 a.qcow2 t.qcow2",
        ),
        img(
            "convert --target-is-zero without -n",
            f,
            "convert --target-is-zero -O qcow2 a.qcow2 out.qcow2",
        ),
        img(
            "convert raw compressed",
            f,
            "convert -O qcow2 -c a.raw out.qcow2",
        ),
        img("convert -c to raw", f, "convert -O raw -c a.qcow2 out.raw"),
        img(
            "convert -l name",
            f,
            "convert -O qcow2 -l s1 snap.qcow2 out.qcow2",
        ),
        img(
            "convert -l missing",
            f,
            "convert -O qcow2 -l nope snap.qcow2 out.qcow2",
        ),
        img(
            "convert preallocation=metadata",
            f,
            "convert -O qcow2 -o preallocation=metadata a.qcow2 out.qcow2",
        ),
        img(
            "convert --salvage",
            f,
            "convert -O qcow2 --salvage a.qcow2 out.qcow2",
        ),
        img("convert -U", f, "convert -U -O qcow2 a.qcow2 out.qcow2"),
        img("convert -r", f, "convert -O qcow2 -r 1M a.qcow2 out.qcow2"),
        img(
            "convert --skip-broken-bitmaps without --bitmaps",
            f,
            "convert --skip-broken-bitmaps -O qcow2 bm.qcow2 out.qcow2",
        ),
        img(
            "convert file: source",
            f,
            "convert -O raw file:a.qcow2 out.raw",
        ),
        img(
            "convert bad preallocation",
            f,
            "convert -O qcow2 -o preallocation=bogus a.qcow2 out.qcow2",
        ),
        img(
            "convert raw bad preallocation",
            f,
            "convert -O raw -o preallocation=bogus a.qcow2 out.raw",
        ),
        img(
            "convert bad compat",
            f,
            "convert -O qcow2 -o compat=bogus a.qcow2 out.qcow2",
        ),
        img(
            "convert bad compression type",
            f,
            "convert -O qcow2 -o compression_type=bogus a.qcow2 out.qcow2",
        ),
        img(
            "convert compat v2 word",
            f,
            "convert -O qcow2 -o compat=v2 a.qcow2 out.qcow2",
        ),
    ];
    check_table(&rows);
}

/// `dd`.
#[test]
fn differential_dd() {
    let f = &["a.qcow2", "a.raw"];
    let rows = vec![
        img("dd raw", f, "dd if=a.qcow2 of=out.raw"),
        img(
            "dd qcow2 count",
            f,
            "dd -O qcow2 if=a.qcow2 of=out.qcow2 bs=1M count=3",
        ),
        img(
            "dd skip",
            f,
            "dd -f raw -O raw if=a.raw of=out.raw skip=2 bs=64k",
        ),
        img("dd bs=0", f, "dd if=a.qcow2 of=out.raw bs=0"),
        img("dd bad bs", f, "dd if=a.qcow2 of=out.raw bs=bogus"),
        img("dd bad count", f, "dd if=a.qcow2 of=out.raw count=bogus"),
        img("dd negative skip", f, "dd if=a.qcow2 of=out.raw skip=-1"),
        img("dd missing source", f, "dd if=nope.qcow2 of=out.raw"),
        img("dd no output", f, "dd if=a.qcow2"),
        img("dd no input", f, "dd of=out.raw"),
        img("dd unknown operand", f, "dd if=a.qcow2 of=out.raw bogus=1"),
        img("dd bad -O", f, "dd -O bogus if=a.qcow2 of=out.raw"),
        img(
            "dd count past end",
            f,
            "dd if=a.qcow2 of=out.raw count=1000 bs=1M",
        ),
        img(
            "dd skip past end",
            f,
            "dd if=a.qcow2 of=out.raw skip=1000 bs=1M",
        ),
        img("dd extra operand", f, "dd if=a.qcow2 of=out.raw a.raw"),
    ];
    check_table(&rows);
}

/// `measure`.
#[test]
fn differential_measure() {
    let f = &["a.qcow2", "snap.qcow2", "comp.qcow2"];
    let rows = vec![
        img("measure size qcow2", f, "measure -O qcow2 --size 1G"),
        img("measure size raw", f, "measure -O raw --size 1G"),
        img("measure image", f, "measure -O qcow2 a.qcow2"),
        img(
            "measure image json",
            f,
            "measure -O qcow2 --output=json a.qcow2",
        ),
        img(
            "measure 4k clusters",
            f,
            "measure -O qcow2 -o cluster_size=4k --size 100M",
        ),
        img(
            "measure preallocation",
            f,
            "measure -O qcow2 -o preallocation=full --size 100M",
        ),
        img(
            "measure unknown -o",
            f,
            "measure -O qcow2 -o bogus=1 --size 100M",
        ),
        img("measure bad size", f, "measure -O qcow2 --size bogus"),
        img(
            "measure size and file",
            f,
            "measure -O qcow2 --size 1G a.qcow2",
        ),
        img("measure bad -O", f, "measure -O bogus --size 1G"),
        img("measure default format", f, "measure --size 1G"),
        img("measure snapshot", f, "measure -O qcow2 -l s1 snap.qcow2"),
        img("measure compressed", f, "measure -O qcow2 comp.qcow2"),
        img(
            "measure extended l2",
            f,
            "measure -O qcow2 -o extended_l2=on --size 1G",
        ),
        img("measure v2", f, "measure -O qcow2 -o compat=0.10 --size 1G"),
        img(
            "measure raw preallocation",
            f,
            "measure -O raw -o preallocation=full --size 1G",
        ),
        img("measure missing file", f, "measure -O qcow2 nope.qcow2"),
        img(
            "measure raw with qcow2 option",
            f,
            "measure -O raw -o cluster_size=4k --size 1G",
        ),
        img("measure nothing", f, "measure -O qcow2"),
        img(
            "measure two files",
            f,
            "measure -O qcow2 a.qcow2 snap.qcow2",
        ),
        img(
            "measure bad compat",
            f,
            "measure -O qcow2 -o compat=bogus --size 1M",
        ),
        img(
            "measure bad compression type",
            f,
            "measure -O qcow2 -o compression_type=bogus --size 1M",
        ),
        img(
            "measure bad preallocation",
            f,
            "measure -O qcow2 -o preallocation=bogus --size 1M",
        ),
        img(
            "measure raw bad preallocation",
            f,
            "measure -O raw -o preallocation=bogus --size 1M",
        ),
        img(
            "measure zstd",
            f,
            "measure -O qcow2 -o compression_type=zstd --size 1M",
        ),
        img(
            "measure bad encrypt.format",
            f,
            "measure -O qcow2 -o encrypt.format=bogus --size 1M",
        ),
        img(
            "measure aes",
            f,
            "measure -O qcow2 -o encrypt.format=aes --size 1M",
        ),
        img(
            "measure encryption=on",
            f,
            "measure -O qcow2 -o encryption=on --size 1M",
        ),
        img(
            "measure encrypt option alone",
            f,
            "measure -O qcow2 -o encrypt.iter-time=10 --size 1M",
        ),
    ];
    check_table(&rows);
}

/// `amend` and `resize`.
// Left out: `amend -p` (blk prints one progress step fewer).
#[test]
fn differential_amend_resize() {
    let f = KINDS;
    let rows = vec![
        img("amend v2 to v3", f, "amend -o compat=1.1 v2.qcow2"),
        img("amend bitmaps to v2", f, "amend -o compat=0.10 bm.qcow2"),
        img("amend unknown option", f, "amend -o bogus=1 a.qcow2"),
        img("amend cluster size", f, "amend -o cluster_size=4k a.qcow2"),
        img(
            "amend refcount bits",
            f,
            "amend -o refcount_bits=16 a.qcow2",
        ),
        img(
            "amend bad refcount bits",
            f,
            "amend -o refcount_bits=3 a.qcow2",
        ),
        img("amend size", f, "amend -o size=32M a.qcow2"),
        img("amend help", f, "amend -o help a.qcow2"),
        img("amend raw", f, "amend -f raw -o size=1M a.raw"),
        img("amend missing file", f, "amend -o compat=1.1 nope.qcow2"),
        img("amend bad bool", f, "amend -o lazy_refcounts=bogus a.qcow2"),
        img(
            "amend backing",
            f,
            "amend -o backing_file=b.qcow2,backing_fmt=qcow2 top.qcow2",
        ),
        img("amend -q", f, "amend -q -o compat=0.10 a.qcow2"),
        img("amend data file", f, "amend -o data_file=x.data a.qcow2"),
        img("amend no options", f, "amend a.qcow2"),
        img(
            "amend extended l2 to v2",
            f,
            "amend -o compat=0.10 xl2.qcow2",
        ),
        img("amend data file to v2", f, "amend -o compat=0.10 ext.qcow2"),
        img(
            "amend v2 with refcount bits",
            f,
            "amend -o compat=0.10,refcount_bits=8 a.qcow2",
        ),
        img(
            "amend snapshots to v2",
            f,
            "amend -o compat=0.10 snap.qcow2",
        ),
        img(
            "amend compressed to v2",
            f,
            "amend -o compat=0.10 comp.qcow2",
        ),
        img("amend bad compat", f, "amend -o compat=bogus a.qcow2"),
        img("amend compat v2 word", f, "amend -o compat=v2 a.qcow2"),
        img("amend luks", f, "amend -o compat=1.1 luks.qcow2"),
        img(
            "amend encrypt option",
            f,
            "amend -o encrypt.iter-time=10 a.qcow2",
        ),
        img("resize absolute", f, "resize a.qcow2 32M"),
        img("resize negative", f, "resize a.qcow2 -- -1M"),
        img(
            "resize shrink relative",
            f,
            "resize --shrink a.qcow2 -- -1M",
        ),
        img("resize bad size", f, "resize a.qcow2 bogus"),
        img("resize +0", f, "resize a.qcow2 +0"),
        img("resize beyond the L1 table", f, "resize a.qcow2 3P"),
        img("resize raw relative", f, "resize -f raw a.raw +1M"),
        img("resize wrong -f", f, "resize -f qcow2 a.raw +1M"),
        img(
            "resize raw preallocated",
            f,
            "resize --preallocation=full -f raw a.raw 20M",
        ),
        img(
            "resize preallocation metadata",
            f,
            "resize --preallocation=metadata a.qcow2 20M",
        ),
        img(
            "resize bad preallocation",
            f,
            "resize --preallocation=bogus a.qcow2 20M",
        ),
        img("resize missing file", f, "resize nope.qcow2 1M"),
        img("resize with snapshots", f, "resize snap.qcow2 32M"),
        img("resize v2", f, "resize v2.qcow2 32M"),
        img("resize extended l2", f, "resize xl2.qcow2 17M"),
        img("resize compressed", f, "resize comp.qcow2 32M"),
        img("resize data file", f, "resize ext.qcow2 32M"),
        img("resize -q", f, "resize -q a.qcow2 32M"),
        img("resize same size", f, "resize a.qcow2 16M"),
        img("resize shrink", f, "resize --shrink a.qcow2 1M"),
        img("resize past 2^64", f, "resize a.qcow2 100E"),
        img("resize relative past 2^64", f, "resize a.qcow2 +16E"),
        img("resize past int64", f, "resize a.qcow2 9E"),
        img("resize no size", f, "resize a.qcow2"),
        img("resize no args", f, "resize"),
        img("resize extra args", f, "resize a.qcow2 1M 2M"),
    ];
    check_table(&rows);
}

/// `snapshot`, `rebase` and `commit`.
#[test]
fn differential_snapshot_rebase_commit() {
    let f = KINDS;
    let rows = vec![
        img("snapshot create", f, "snapshot -c s3 snap.qcow2"),
        img("snapshot create existing", f, "snapshot -c s1 snap.qcow2"),
        img("snapshot apply missing", f, "snapshot -a nope snap.qcow2"),
        img("snapshot list none", f, "snapshot -l a.qcow2"),
        img("snapshot create on raw", f, "snapshot -c x a.raw"),
        img("snapshot list raw", f, "snapshot -f raw -l a.raw"),
        img("snapshot two actions", f, "snapshot -c x -d y snap.qcow2"),
        img("snapshot missing file", f, "snapshot -l nope.qcow2"),
        img("snapshot create v2", f, "snapshot -c x v2.qcow2"),
        img("snapshot create extended l2", f, "snapshot -c x xl2.qcow2"),
        img("snapshot create data file", f, "snapshot -c x ext.qcow2"),
        img("snapshot delete quiet", f, "snapshot -q -d s1 snap.qcow2"),
        img("snapshot apply latest", f, "snapshot -a s2 snap.qcow2"),
        img("snapshot no file", f, "snapshot -l"),
        img("rebase unsafe to none", f, "rebase -u -b '' top.qcow2"),
        img(
            "rebase safe to other",
            f,
            "rebase -b b.qcow2 -F qcow2 top.qcow2",
        ),
        img(
            "rebase missing backing",
            f,
            "rebase -b nope.qcow2 -F qcow2 top.qcow2",
        ),
        img(
            "rebase unsafe missing backing",
            f,
            "rebase -u -b nope.qcow2 -F qcow2 top.qcow2",
        ),
        img("rebase without -F", f, "rebase -b a.qcow2 top.qcow2"),
        img("rebase onto raw", f, "rebase -b a.raw -F raw top.qcow2"),
        img("rebase bad -F", f, "rebase -b a.qcow2 -F bogus top.qcow2"),
        img(
            "rebase unsafe bad -F",
            f,
            "rebase -u -b a.qcow2 -F bogus top.qcow2",
        ),
        img(
            "rebase bad -F missing file",
            f,
            "rebase -b a.qcow2 -F bogus nope.qcow2",
        ),
        img(
            "rebase compressed",
            f,
            "rebase -c -b a.qcow2 -F qcow2 top.qcow2",
        ),
        img(
            "rebase missing file",
            f,
            "rebase -b a.qcow2 -F qcow2 nope.qcow2",
        ),
        img("rebase -p", f, "rebase -p -b a.qcow2 -F qcow2 top.qcow2"),
        img(
            "rebase same backing",
            f,
            "rebase -q -b base.qcow2 -F qcow2 top.qcow2",
        ),
        img("rebase without -b", f, "rebase top.qcow2"),
        img("rebase no file", f, "rebase -b a.qcow2"),
        img("commit -b", f, "commit -b base.qcow2 top.qcow2"),
        img(
            "commit -b not in chain",
            f,
            "commit -b nope.qcow2 top.qcow2",
        ),
        img("commit without backing", f, "commit a.qcow2"),
        img("commit missing file", f, "commit nope.qcow2"),
        img("commit -q", f, "commit -q top.qcow2"),
        // The job's progress steps are timing-dependent in QEMU.
        img("commit -p", f, "commit -p top.qcow2").any_stdout(),
        img("commit -r", f, "commit -r 1M top.qcow2"),
        img("commit bad cache", f, "commit -t bogus top.qcow2"),
        img("commit raw", f, "commit -f raw a.raw"),
        img("commit no file", f, "commit"),
        img("commit two files", f, "commit top.qcow2 a.qcow2"),
    ];
    check_table(&rows);
}
