//! The differential table: command lines run through qemu-img/qemu-io and
//! blk on identical copies of the same images (tests/src/differential.rs).
//! Each table is one test; a failing test lists every failing row. A new
//! command joins by adding a row.

use blk_tests::differential::{check_table, img, io, Holder, Row};

const HOLDERS: [Holder; 4] = [
    Holder::QemuNbd,
    Holder::QemuIo,
    Holder::QemuIoReadOnly,
    Holder::Blk,
];

/// Rows run with the target held by every kind of holder.
fn held_by_each(
    name: &'static str,
    files: &[&'static str],
    args: &'static str,
    target: &'static str,
) -> Vec<Row> {
    HOLDERS
        .iter()
        .map(|h| img(name, files, args).held(target, *h))
        .collect()
}

/// Issue 8, items 1-4: no failed command changes an image; a command that
/// would create over, truncate or overwrite an image another process holds
/// is refused before it changes a byte.
#[test]
fn differential_data_safety() {
    let mut rows = Vec::new();
    rows.extend(held_by_each(
        "create qcow2 over a held qcow2",
        &["t.qcow2"],
        "create -f qcow2 t.qcow2 16M",
        "t.qcow2",
    ));
    rows.extend(held_by_each(
        "convert to a held qcow2",
        &["a.qcow2", "t.qcow2"],
        "convert -O qcow2 a.qcow2 t.qcow2",
        "t.qcow2",
    ));
    rows.extend(held_by_each(
        "convert -n to a held qcow2",
        &["a.qcow2", "t.qcow2"],
        "convert -n -O qcow2 a.qcow2 t.qcow2",
        "t.qcow2",
    ));
    rows.extend(held_by_each(
        "resize a held qcow2",
        &["t.qcow2"],
        "resize t.qcow2 8M",
        "t.qcow2",
    ));
    rows.push(
        img(
            "create raw over a raw held by qemu-nbd",
            &["t.raw"],
            "create -f raw t.raw 16M",
        )
        .held("t.raw", Holder::QemuNbd),
    );
    for h in [Holder::QemuIo, Holder::QemuIoReadOnly, Holder::Blk] {
        rows.push(
            img(
                "create raw over a held raw",
                &["t.raw"],
                "create -f raw t.raw 16M",
            )
            .held("t.raw", h)
            .blk_refuses(),
        );
        rows.push(
            img(
                "convert to a held raw",
                &["a.qcow2", "t.raw"],
                "convert -O raw a.qcow2 t.raw",
            )
            .held("t.raw", h)
            .blk_refuses(),
        );
        rows.push(
            img(
                "dd to a held raw",
                &["a.qcow2", "t.raw"],
                "dd -O raw bs=64k count=4 if=a.qcow2 of=t.raw",
            )
            .held("t.raw", h)
            .blk_refuses(),
        );
    }
    rows.push(
        img(
            "convert to a raw held by qemu-nbd",
            &["a.qcow2", "t.raw"],
            "convert -O raw a.qcow2 t.raw",
        )
        .held("t.raw", Holder::QemuNbd),
    );
    rows.push(
        img(
            "dd to a raw held by qemu-nbd",
            &["a.qcow2", "t.raw"],
            "dd -O raw bs=64k count=4 if=a.qcow2 of=t.raw",
        )
        .held("t.raw", Holder::QemuNbd),
    );
    for (name, args) in [
        (
            "convert onto the source",
            "convert -O qcow2 a.qcow2 a.qcow2",
        ),
        (
            "convert onto ./source",
            "convert -O qcow2 a.qcow2 ./a.qcow2",
        ),
        (
            "convert onto a symlink to the source",
            "convert -O qcow2 a.qcow2 sym.qcow2",
        ),
        (
            "convert onto a hard link to the source",
            "convert -O qcow2 a.qcow2 hard.qcow2",
        ),
        (
            "convert raw onto the source",
            "convert -f raw -O raw a.raw a.raw",
        ),
        (
            "convert raw onto a symlink to the source",
            "convert -f raw -O raw a.raw sym.raw",
        ),
        (
            "convert onto the backing file",
            "convert -O qcow2 top.qcow2 base.qcow2",
        ),
    ] {
        rows.push(img(
            name,
            &[
                "a.qcow2",
                "a.raw",
                "sym.qcow2",
                "hard.qcow2",
                "sym.raw",
                "top.qcow2",
            ],
            args,
        ));
    }
    // qemu-img dd -O raw onto its own raw source succeeds (it recreates the
    // file it reads); blk refuses.
    rows.push(
        img(
            "dd onto the source",
            &["a.raw"],
            "dd -O raw if=a.raw of=a.raw",
        )
        .blk_refuses(),
    );
    check_table(&rows);
}

/// info, check, map and convert on ordinary images: the same output.
#[test]
fn differential_read_commands() {
    let all = &["a.qcow2", "a.raw", "c4k.qcow2", "top.qcow2", "snap.qcow2"];
    let mut rows = vec![
        img("info", all, "info a.qcow2"),
        img("info json", all, "info --output=json a.qcow2"),
        img("info raw", all, "info -f raw a.raw"),
        img("info chain", all, "info --backing-chain top.qcow2"),
        img(
            "info chain json",
            all,
            "info --backing-chain --output=json top.qcow2",
        ),
        img("info snapshots", all, "info snap.qcow2")
            .ignore_line(":")
            .any_stdout(),
        img("check", all, "check a.qcow2"),
        img("check json", all, "check --output=json c4k.qcow2"),
        img("map", all, "map a.qcow2"),
        img("map json", all, "map --output=json top.qcow2"),
        img("map 4k clusters", all, "map --output=json c4k.qcow2"),
        img("compare", all, "compare a.qcow2 a.raw"),
        img("compare differ", all, "compare a.qcow2 c4k.qcow2"),
        img("convert to raw", all, "convert -O raw a.qcow2 out.raw"),
        img(
            "convert to qcow2",
            all,
            "convert -O qcow2 top.qcow2 out.qcow2",
        ),
        img(
            "convert compressed",
            all,
            "convert -c -O qcow2 c4k.qcow2 out.qcow2",
        ),
        img(
            "convert from snapshot",
            all,
            "convert -l snapshot.name=s1 -O raw snap.qcow2 out.raw",
        ),
        img("measure", all, "measure -O qcow2 a.raw"),
        img("snapshot list", all, "snapshot -l snap.qcow2").any_stdout(),
        io("io read pattern", all, "-c 'read -P 0 15M 4k' a.qcow2"),
        io(
            "io write and read",
            all,
            "-c 'write -P 0x3c 1000 5000' -c 'read -P 0x3c 1000 5000' a.qcow2",
        ),
    ];
    rows.push(img("leaked clusters", &["leak.qcow2"], "check leak.qcow2"));
    rows.push(img(
        "leaked clusters json",
        &["leak.qcow2"],
        "check --output=json leak.qcow2",
    ));
    rows.push(img(
        "repair leaks",
        &["leak.qcow2"],
        "check -r leaks leak.qcow2",
    ));
    check_table(&rows);
}

/// Issue 8, items 5-7: persistent bitmaps are kept and counted.
#[test]
fn differential_bitmaps() {
    let f = &["bm.qcow2"];
    let rows = vec![
        img("info with bitmaps", f, "info bm.qcow2"),
        img("info with bitmaps json", f, "info --output=json bm.qcow2"),
        img("check with bitmaps", f, "check bm.qcow2"),
        img("repair leaks with bitmaps", f, "check -r leaks bm.qcow2"),
        img("repair all with bitmaps", f, "check -r all bm.qcow2"),
        io("write with bitmaps", f, "-c 'write -P 9 3M 200k' bm.qcow2"),
        img("bitmap add", f, "bitmap --add bm.qcow2 b2"),
        img(
            "bitmap add granularity",
            f,
            "bitmap --add -g 256k bm.qcow2 b2",
        ),
        img("bitmap remove", f, "bitmap --remove bm.qcow2 b1"),
        img("bitmap clear", f, "bitmap --clear bm.qcow2 b0"),
        img("bitmap disable", f, "bitmap --disable bm.qcow2 b0"),
        img("bitmap enable", f, "bitmap --enable bm.qcow2 b1"),
        img("bitmap merge", f, "bitmap --merge b1 bm.qcow2 b0"),
        img("bitmap add existing", f, "bitmap --add bm.qcow2 b0"),
        img("bitmap remove missing", f, "bitmap --remove bm.qcow2 nope"),
        img("resize with bitmaps", f, "resize bm.qcow2 32M"),
        img("snapshot with bitmaps", f, "snapshot -c s1 bm.qcow2"),
        img("measure with bitmaps", f, "measure -O qcow2 bm.qcow2"),
        img(
            "convert bitmaps",
            f,
            "convert --bitmaps -O qcow2 bm.qcow2 out.qcow2",
        ),
    ];
    check_table(&rows);
}

/// Issue 8, items 8 and 12: unsupported versions and refused syntax.
#[test]
fn differential_refusals() {
    let f = &["v9.qcow2", "a.qcow2"];
    let rows = vec![
        img("info of version 9", f, "info v9.qcow2"),
        io("write to version 9", f, "-c 'write -P 1 0 512' v9.qcow2"),
        img("convert version 9", f, "convert -O raw v9.qcow2 out.raw"),
        img("convert -s", f, "convert -s snap -O raw a.qcow2 out.raw"),
        img(
            "protocol-looking name",
            f,
            "convert -O qcow2 a.qcow2 x:y.qcow2",
        ),
        io("invalid cache mode", f, "-t bogus -c 'read 0 512' a.qcow2"),
    ];
    check_table(&rows);
}

/// Commands that change images: the same resulting files.
#[test]
fn differential_modifying_commands() {
    let all = &["a.qcow2", "a.raw", "top.qcow2", "snap.qcow2", "c4k.qcow2"];
    let rows = vec![
        img("create qcow2", all, "create -f qcow2 new.qcow2 1G"),
        img(
            "create options",
            all,
            "create -f qcow2 -o cluster_size=4k,lazy_refcounts=on,refcount_bits=8 new.qcow2 100M",
        ),
        img(
            "create over an idle image",
            all,
            "create -f qcow2 a.qcow2 1M",
        ),
        img(
            "create with backing",
            all,
            "create -f qcow2 -b a.qcow2 -F qcow2 new.qcow2",
        ),
        img("create raw", all, "create -f raw new.raw 3M"),
        img("create bad size", all, "create -f qcow2 new.qcow2 12Q"),
        img(
            "create unknown option",
            all,
            "create -f qcow2 -o bogus=1 new.qcow2 1M",
        ),
        img("commit", all, "commit top.qcow2"),
        img("commit -d", all, "commit -d top.qcow2"),
        img(
            "rebase unsafe",
            all,
            "rebase -u -b a.qcow2 -F qcow2 top.qcow2",
        ),
        img("rebase safe", all, "rebase -b a.qcow2 -F qcow2 top.qcow2"),
        img("rebase to none", all, "rebase -b '' top.qcow2"),
        img("amend compat", all, "amend -o compat=0.10 a.qcow2"),
        img(
            "amend lazy refcounts",
            all,
            "amend -o lazy_refcounts=on c4k.qcow2",
        ),
        img("resize grow", all, "resize a.qcow2 +1G"),
        img("resize shrink refused", all, "resize a.qcow2 1M"),
        img("resize shrink", all, "resize --shrink a.qcow2 8M"),
        img("resize raw", all, "resize -f raw a.raw 20M"),
        img("snapshot apply", all, "snapshot -a s1 snap.qcow2"),
        img("snapshot delete", all, "snapshot -d s2 snap.qcow2"),
        img(
            "snapshot delete missing",
            all,
            "snapshot -d nope snap.qcow2",
        ),
        io("io discard", all, "-c 'discard 64k 128k' a.qcow2"),
        io("io zero", all, "-c 'write -z 0 1M' c4k.qcow2"),
        io("io read-only write", all, "-r -c 'write 0 512' a.qcow2"),
    ];
    check_table(&rows);
}

/// Every fixture kind, for tables that read them.
const KINDS: &[&str] = &[
    "a.qcow2",
    "a.raw",
    "b.qcow2",
    "c4k.qcow2",
    "top.qcow2",
    "snap.qcow2",
    "bm.qcow2",
    "comp.qcow2",
    "ext.qcow2",
    "v2.qcow2",
    "xl2.qcow2",
    "luks.qcow2",
    "t.qcow2",
    "t.raw",
];

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

/// `bitmap` beyond the basic operations.
#[test]
fn differential_bitmap_errors() {
    let f = &["a.qcow2", "a.raw", "bm.qcow2", "v2.qcow2"];
    let rows = vec![
        img("bitmap add to a new image", f, "bitmap --add a.qcow2 b0"),
        img(
            "bitmap bad granularity",
            f,
            "bitmap --add -g 100 a.qcow2 b0",
        ),
        img(
            "bitmap granularity not a size",
            f,
            "bitmap --add -g bogus a.qcow2 b0",
        ),
        // QEMU names the node by a generated "#blockNNN" in this message.
        img("bitmap add to raw", f, "bitmap --add -f raw a.raw b0").any_stderr(),
        img("bitmap add to v2", f, "bitmap --add v2.qcow2 b0").any_stderr(),
        img("bitmap missing file", f, "bitmap --add nope.qcow2 b0"),
        img("bitmap without name", f, "bitmap --add bm.qcow2"),
        img("bitmap merge missing", f, "bitmap --merge nope bm.qcow2 b0"),
        img(
            "bitmap merge from other image",
            f,
            "bitmap --merge b0 -b a.qcow2 bm.qcow2 b1",
        ),
        img(
            "bitmap add and clear",
            f,
            "bitmap --add --clear bm.qcow2 b5",
        ),
        img("bitmap enable missing", f, "bitmap --enable bm.qcow2 nope"),
        img("bitmap unknown option", f, "bitmap --bogus bm.qcow2 b0"),
        img("bitmap no action", f, "bitmap bm.qcow2 b0"),
    ];
    check_table(&rows);
}

/// A bitmap directory left by a program without bitmap support (autoclear
/// bit cleared): QEMU's warning, as "blk: warning: ...".
#[test]
fn differential_stale_bitmaps() {
    let rows = vec![
        img("stale bitmaps check", &["stale.qcow2"], "check stale.qcow2"),
        img("stale bitmaps info", &["stale.qcow2"], "info stale.qcow2"),
        img(
            "stale bitmaps repair",
            &["stale.qcow2"],
            "check -r leaks stale.qcow2",
        ),
    ];
    check_table(&rows);
}

/// qemu-io commands.
// Left out: `write -c` over allocated clusters (QEMU fails with EIO, blk
// writes: blk's compressed writes may overwrite), plain `help` (blk's
// command set differs: no abort, break, sigraise, zone_*; it adds
// activate, inactivate, invalidate) and `sigraise`.
#[test]
fn differential_io_commands() {
    let f = &["a.qcow2", "a.raw", "t.qcow2", "top.qcow2", "c4k.qcow2"];
    let rows = vec![
        io("io read probed raw", f, "-c 'read -P 0 0 4k' a.raw"),
        io("io read raw", f, "-f raw -c 'read -P 0 0 4k' a.raw"),
        io("io read -v", f, "-c 'read -v 0 32' a.qcow2"),
        io(
            "io write pattern",
            f,
            "-c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' t.qcow2",
        ),
        io(
            "io write zeroes",
            f,
            "-c 'write -z 0 64k' -c 'read -P 0 0 64k' t.qcow2",
        ),
        io(
            "io write zeroes unmap",
            f,
            "-c 'write -z -u 0 64k' -c 'map' t.qcow2",
        ),
        io(
            "io write compressed",
            f,
            "-c 'write -c -P 3 1M 64k' -c 'read -P 3 1M 64k' t.qcow2",
        ),
        io(
            "io discard",
            f,
            "-c 'discard 0 64k' -c 'read -P 0 0 64k' t.qcow2",
        ),
        io("io map", f, "-c 'map' a.qcow2"),
        io("io map overlay", f, "-c 'map' top.qcow2"),
        io("io alloc", f, "-c 'alloc 0 1M' a.qcow2"),
        io("io alloc overlay", f, "-c 'alloc 0 64k' top.qcow2"),
        io("io length", f, "-c 'length' a.qcow2"),
        io("io info", f, "-c 'info' a.qcow2"),
        io("io info raw", f, "-c 'info' a.raw"),
        io("io help unknown", f, "-c 'help bogus' a.qcow2"),
        io("io help read", f, "-c 'help read' a.qcow2"),
        io("io help write", f, "-c 'help write' a.qcow2"),
        io("io help readv", f, "-c 'help readv' a.qcow2"),
        io("io help writev", f, "-c 'help writev' a.qcow2"),
        io("io help aio_read", f, "-c 'help aio_read' a.qcow2"),
        io("io help aio_write", f, "-c 'help aio_write' a.qcow2"),
        io("io help discard", f, "-c 'help discard' a.qcow2"),
        io("io help map", f, "-c 'help map' a.qcow2"),
        io("io help length", f, "-c 'help length' a.qcow2"),
        io("io help alias", f, "-c 'help r' a.qcow2"),
        io("io help two words", f, "-c 'help read write' a.qcow2"),
        io(
            "io compressed write to a free cluster",
            f,
            "-c 'write -c -P 3 1M 64k' -c 'read -P 3 1M 64k' t.qcow2",
        ),
        io(
            "io compressed write over zeroes",
            f,
            "-c 'write -z 1M 64k' -c 'write -c -P 4 1M 64k' t.qcow2",
        ),
        io("io flush", f, "-c 'flush' t.qcow2"),
        io(
            "io close and open",
            f,
            "-c 'close' -c 'open -f qcow2 t.qcow2' -c 'read -P 0x77 0 4k' a.qcow2",
        ),
        io("io unknown command", f, "-c 'bogus' a.qcow2"),
        io("io read missing length", f, "-c 'read 0' a.qcow2"),
        io("io read bad offset", f, "-c 'read bogus 512' a.qcow2"),
        io("io read past end", f, "-c 'read 16M 512' a.qcow2"),
        io("io read unaligned", f, "-c 'read 100 512' a.qcow2"),
        io("io missing file", f, "-c 'write -P 1 0 512' nope.qcow2"),
        io("io -f raw on qcow2", f, "-f raw -c 'read 0 512' a.qcow2"),
        io(
            "io pattern mismatch",
            f,
            "-c 'read -P 0 0 4k' -c 'read -P 1 0 4k' a.qcow2",
        ),
        io("io readv", f, "-c 'readv 0 4k 4k' a.qcow2"),
        io("io writev", f, "-c 'writev -P 5 0 4k 4k' t.qcow2"),
        io("io aio", f, "-c 'aio_read 0 4k' -c 'aio_flush' a.qcow2"),
        io("io truncate", f, "-c 'truncate 8M' -c 'length' t.qcow2"),
        io(
            "io read quiet",
            f,
            "-c 'write -P 1 0 4k' -c 'read -q -P 1 0 4k' t.qcow2",
        ),
        io(
            "io sub-cluster write",
            f,
            "-c 'write -P 2 512 1k' -c 'map' c4k.qcow2",
        ),
        io("io commands on stdin", f, "a.qcow2").stdin("length\nread -P 0 15M 4k\nquit\n"),
    ];
    check_table(&rows);
}

/// Argument errors worded as getopt and qemu-img word them.
#[test]
fn differential_usage_errors() {
    let f = &["a.qcow2"];
    let mut rows = Vec::new();
    for (name, args) in [
        ("usage info", "info"),
        ("usage check", "check"),
        ("usage map", "map"),
        ("usage compare", "compare"),
        ("usage convert", "convert"),
        ("usage dd", "dd"),
        ("usage measure", "measure"),
        ("usage amend", "amend"),
        ("usage resize", "resize"),
        ("usage snapshot", "snapshot"),
        ("usage rebase", "rebase"),
        ("usage commit", "commit"),
        ("usage create", "create"),
        ("usage bitmap", "bitmap"),
        ("usage bench", "bench"),
        ("extra info", "info a.qcow2 b.qcow2 c.qcow2"),
        ("extra check", "check a.qcow2 b.qcow2"),
        ("extra map", "map a.qcow2 b.qcow2"),
        ("extra snapshot", "snapshot -l a.qcow2 b.qcow2"),
        ("extra bench", "bench a.qcow2 b.qcow2"),
        ("unknown command", "bogus a.qcow2"),
        ("unknown long option", "check --bogus a.qcow2"),
        ("unknown short option", "convert -Z -O raw a.qcow2 out.raw"),
        ("missing option value", "convert a.qcow2 out.raw -O"),
        ("missing -f value", "info a.qcow2 -f"),
    ] {
        rows.push(img(name, f, args));
    }
    check_table(&rows);
}

/// qemu-io's options and more of its commands.
// Left out: `inactivate` (a blk command qemu-io 10 lacks).
#[test]
fn differential_io_options() {
    let f = &["a.qcow2", "t.qcow2", "top.qcow2", "c4k.qcow2"];
    let rows = vec![
        io("io -r read", f, "-r -c 'read -P 0 15M 4k' a.qcow2"),
        io(
            "io -s snapshot write",
            f,
            "-s -c 'write -P 9 0 4k' -c 'read -P 9 0 4k' a.qcow2",
        ),
        io("io -U without -r", f, "-U -c 'length' a.qcow2"),
        io("io -n", f, "-n -c 'read 0 4k' a.qcow2"),
        io("io -C copy on read", f, "-C -c 'read 0 4k' top.qcow2"),
        io(
            "io open -r -o",
            f,
            "-c 'open -r -o driver=qcow2 t.qcow2' -c 'length'",
        ),
        io("io open missing", f, "-c 'open nope.qcow2'"),
        io("io write past end", f, "-c 'write -P 1 16M 512' t.qcow2"),
        io("io write bad length", f, "-c 'write -P 1 0 bogus' t.qcow2"),
        io(
            "io write bad pattern",
            f,
            "-c 'write -P bogus 0 512' t.qcow2",
        ),
        io("io write -z with -P", f, "-c 'write -z -P 1 0 512' t.qcow2"),
        io("io discard missing length", f, "-c 'discard 0' t.qcow2"),
        io("io discard quiet", f, "-c 'discard -q 0 64k' t.qcow2"),
        io("io alloc one argument", f, "-c 'alloc 0' a.qcow2"),
        io("io alloc unaligned", f, "-c 'alloc 100 1' a.qcow2"),
        io("io map bad option", f, "-c 'map -x' a.qcow2"),
        io("io truncate bad size", f, "-c 'truncate bogus' t.qcow2"),
        io("io length extra argument", f, "-c 'length extra' a.qcow2"),
        io("io info overlay", f, "-c 'info' top.qcow2"),
        io("io info 4k clusters", f, "-c 'info' c4k.qcow2"),
        io(
            "io read pattern range",
            f,
            "-c 'read -s 1 -l 2 -P 0 0 4k' a.qcow2",
        ),
        io(
            "io write missing source file",
            f,
            "-c 'write -s nope.bin 0 4k' t.qcow2",
        ),
        io(
            "io readv pattern mismatch",
            f,
            "-c 'readv -P 0 15M 4k 4k' a.qcow2",
        ),
        io("io write -u without -z", f, "-c 'write -u 0 4k' t.qcow2"),
        io("io write fua", f, "-c 'write -f -P 1 0 4k' t.qcow2"),
        // -C prints the timings in a machine-parsable line.
        io("io read -C", f, "-c 'read -C 0 4k' a.qcow2").any_stdout(),
        io(
            "io aio write",
            f,
            "-c 'aio_write -P 2 0 4k' -c 'aio_flush' -c 'read -P 2 0 4k' t.qcow2",
        ),
        io(
            "io flush after close",
            f,
            "-c 'flush' -c 'close' -c 'flush' t.qcow2",
        ),
        io("io bad format", f, "-f bogus -c 'read 0 4k' a.qcow2"),
        io(
            "io cache writeback",
            f,
            "-t writeback -c 'read 0 4k' a.qcow2",
        ),
        io("io discard unmap", f, "-d unmap -c 'discard 0 64k' t.qcow2"),
        io(
            "io bad discard mode",
            f,
            "-d bogus -c 'discard 0 64k' t.qcow2",
        ),
        io("io aio threads", f, "-i threads -c 'length' a.qcow2"),
        io("io bad aio mode", f, "-i bogus -c 'length' a.qcow2"),
        io(
            "io native aio without direct",
            f,
            "-i native -c 'length' a.qcow2",
        ),
        io("io -k without direct", f, "-k -c 'length' a.qcow2"),
        io(
            "io native aio with -n",
            f,
            "-n -i native -c 'length' a.qcow2",
        ),
        io("io -k with cache none", f, "-t none -k -c 'length' a.qcow2"),
        io("io sleep", f, "-c 'sleep 1' a.qcow2"),
        io(
            "io image-opts",
            f,
            "--image-opts -c 'length' driver=qcow2,file.filename=a.qcow2",
        ),
    ];
    check_table(&rows);
}

/// `bench`, `--object`, `--image-opts` and `json:` names.
// Left out: `--version` (blk has its own version), `json:` text that is
// not JSON (the parser's message differs).
#[test]
fn differential_bench_and_specs() {
    let f = &["a.qcow2", "a.raw", "t.qcow2"];
    let json = "info 'json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"a.qcow2\"}}'";
    let json_missing =
        "info 'json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"nope.qcow2\"}}'";
    let rows = vec![
        // The run time is a measurement.
        img("bench read", f, "bench -c 10 a.qcow2").ignore_line("Run completed in"),
        img("bench write", f, "bench -c 10 -w t.qcow2").ignore_line("Run completed in"),
        img("bench raw", f, "bench -f raw -c 4 a.raw").ignore_line("Run completed in"),
        img("bench bad count", f, "bench -c bogus a.qcow2"),
        img("bench bad depth", f, "bench -d 0 a.qcow2"),
        img("bench bad size", f, "bench -s 0 a.qcow2"),
        img("bench bad cache", f, "bench -t bogus a.qcow2"),
        img("bench missing file", f, "bench nope.qcow2"),
        img("info json: name", f, json),
        img("info json: missing file", f, json_missing),
        img(
            "info image-opts missing file",
            f,
            "info --image-opts driver=qcow2,file.filename=nope.qcow2",
        ),
        img(
            "info image-opts bad driver",
            f,
            "info --image-opts driver=bogus,file.filename=a.qcow2",
        ),
        img(
            "info image-opts with -f",
            f,
            "info --image-opts -f qcow2 driver=qcow2,file.filename=a.qcow2",
        ),
        img(
            "object before the command",
            f,
            "--object secret,id=s0,data=x info a.qcow2",
        ),
        img(
            "info with a secret",
            f,
            "info --object secret,id=s0,data=x a.qcow2",
        ),
        img(
            "info bad object type",
            f,
            "info --object bogus,id=s0 a.qcow2",
        ),
        img(
            "info secret without data",
            f,
            "info --object secret,id=s0 a.qcow2",
        ),
        img(
            "check with a secret",
            f,
            "check --object secret,id=s0,data=x a.qcow2",
        ),
        img("trace unknown event", f, "-T bogus-event info a.qcow2"),
        img("info raw missing", f, "info -f raw nope.raw"),
        img("check raw missing", f, "check -f raw nope.raw"),
        img("map wrong -f", f, "map -f qcow2 a.raw"),
        img("compare raw", f, "compare -f raw -F raw a.raw a.raw"),
        img("snapshot wrong -f", f, "snapshot -l -f qcow2 a.raw"),
        img("resize raw to 4096", f, "resize -f raw a.raw 4096"),
        img("resize raw unaligned", f, "resize -f raw a.raw 1000"),
        img(
            "shrink raw unaligned",
            f,
            "resize --shrink -f raw a.raw 1000",
        ),
    ];
    check_table(&rows);
}

/// More option combinations of the modifying commands.
// Left out: `commit -p`/`commit -d -p` progress steps (QEMU's are
// timing-dependent; the rows below compare the result without -p).
#[test]
fn differential_more_options() {
    let f = &[
        "a.qcow2",
        "a.raw",
        "base.qcow2",
        "top.qcow2",
        "snap.qcow2",
        "bm.qcow2",
        "stale.qcow2",
        "t.qcow2",
        "v2.qcow2",
        "comp.qcow2",
        "xl2.qcow2",
    ];
    let rows = vec![
        img("create missing -o value", f, "create -f qcow2 -o"),
        img("create missing -f value", f, "create -f"),
        img("create -F with raw", f, "create -F qcow2 x.qcow2 1M"),
        img(
            "create -F without -b",
            f,
            "create -f qcow2 -F qcow2 x.qcow2 1M",
        ),
        img(
            "create backing_fmt without backing",
            f,
            "create -f qcow2 -o backing_fmt=qcow2 x.qcow2 1M",
        ),
        img(
            "create -q -F without -b",
            f,
            "create -q -f qcow2 -F qcow2 x.qcow2 1M",
        ),
        img(
            "create backing in -o",
            f,
            "create -f qcow2 -o backing_file=a.qcow2,backing_fmt=qcow2 x.qcow2",
        ),
        img(
            "create backing in -o without format",
            f,
            "create -f qcow2 -o backing_file=a.qcow2 x.qcow2",
        ),
        img(
            "create backing read as raw",
            f,
            "create -f qcow2 -b a.qcow2 -F raw x.qcow2",
        ),
        img(
            "create raw with backing",
            f,
            "create -f raw -b a.qcow2 -F qcow2 x.raw",
        ),
        img(
            "create own backing",
            f,
            "create -f qcow2 -b x.qcow2 -F qcow2 x.qcow2",
        ),
        img(
            "create 2M clusters",
            f,
            "create -f qcow2 -o cluster_size=2M x.qcow2 1M",
        ),
        img(
            "create 4M clusters",
            f,
            "create -f qcow2 -o cluster_size=4M x.qcow2 1M",
        ),
        img(
            "create refcount bits 64",
            f,
            "create -f qcow2 -o refcount_bits=64 x.qcow2 1M",
        ),
        img(
            "create refcount bits 3",
            f,
            "create -f qcow2 -o refcount_bits=3 x.qcow2 1M",
        ),
        img(
            "create data_file_raw alone",
            f,
            "create -f qcow2 -o data_file_raw=on x.qcow2 1M",
        ),
        img(
            "create over a raw data file",
            f,
            "create -f qcow2 -o data_file=a.raw,data_file_raw=on x.qcow2 16M",
        ),
        img(
            "convert to a data file",
            f,
            "convert -O qcow2 -o data_file=o.data a.qcow2 o.qcow2",
        ),
        img(
            "convert -B without -F",
            f,
            "convert -O qcow2 -B base.qcow2 top.qcow2 o.qcow2",
        ),
        img(
            "convert backing in -o",
            f,
            "convert -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2 o.qcow2",
        ),
        img(
            "convert -B to raw",
            f,
            "convert -O raw -B a.qcow2 -F qcow2 top.qcow2 o.raw",
        ),
        img(
            "convert --bitmaps to raw",
            f,
            "convert --bitmaps -O raw bm.qcow2 o.raw",
        ),
        img(
            "convert --bitmaps none",
            f,
            "convert --bitmaps -O qcow2 a.qcow2 o.qcow2",
        ),
        img(
            "convert --bitmaps -n",
            f,
            "convert --bitmaps -n -O qcow2 bm.qcow2 t.qcow2",
        ),
        img(
            "convert stale bitmaps",
            f,
            "convert -O qcow2 stale.qcow2 o.qcow2",
        ),
        img(
            "convert --bitmaps stale",
            f,
            "convert --bitmaps -O qcow2 stale.qcow2 o.qcow2",
        ),
        img("dd -U", f, "dd -U if=a.qcow2 of=o.raw"),
        img(
            "dd skip and count",
            f,
            "dd if=a.qcow2 of=o.raw bs=1k count=1k skip=100",
        ),
        img(
            "dd -o",
            f,
            "dd -O qcow2 -o cluster_size=4k if=a.qcow2 of=o.qcow2",
        ),
        img("dd conv", f, "dd if=a.qcow2 of=o.raw conv=notrunc"),
        img("dd osize", f, "dd if=a.qcow2 of=o.raw osize=1M"),
        img("commit -s", f, "commit -s 1M top.qcow2"),
        img(
            "commit -b outside the chain",
            f,
            "commit -b a.qcow2 top.qcow2",
        ),
        img(
            "rebase -u -F",
            f,
            "rebase -u -F qcow2 -b base.qcow2 top.qcow2",
        ),
        img("rebase -u without -b", f, "rebase -u top.qcow2"),
        img(
            "rebase -u without -b, no backing",
            f,
            "rebase -u -f qcow2 a.qcow2",
        ),
        img(
            "rebase -u -f to none",
            f,
            "rebase -b '' -u -f qcow2 top.qcow2",
        ),
        img(
            "rebase cache modes",
            f,
            "rebase -t none -T none -b a.qcow2 -F qcow2 top.qcow2",
        ),
        img("rebase -U", f, "rebase -U -b a.qcow2 -F qcow2 top.qcow2"),
        img(
            "snapshot name with a space",
            f,
            "snapshot -c 's 1' snap.qcow2",
        ),
        img("snapshot -q after", f, "snapshot -d s1 -q snap.qcow2"),
        img(
            "snapshot unknown --output",
            f,
            "snapshot -l --output=json snap.qcow2",
        ),
        img("unknown option with value", f, "info --bogus=1 a.qcow2"),
        img("snapshot -U", f, "snapshot -U -l snap.qcow2"),
        img("snapshot apply by ID", f, "snapshot -a 1 snap.qcow2"),
        img("snapshot delete by ID", f, "snapshot -d 2 snap.qcow2"),
        img("check repair v2", f, "check -r leaks v2.qcow2"),
        img("check repair compressed", f, "check -r all comp.qcow2"),
        img(
            "check repair extended l2",
            f,
            "check --output=json -r all xl2.qcow2",
        ),
        img("commit -d", f, "commit -d top.qcow2"),
        img(
            "amend raw -f on qcow2",
            f,
            "amend -f raw -o compat=1.1 a.qcow2",
        ),
        img("amend bad -f", f, "amend -f bogus -o compat=1.1 a.qcow2"),
        img("resize bad -f", f, "resize -f bogus a.qcow2 1M"),
        img("commit bad -f", f, "commit -f bogus top.qcow2"),
        img("commit -f raw on qcow2", f, "commit -f raw top.qcow2"),
        img("rebase raw to none", f, "rebase -f raw -u -b '' a.qcow2"),
        img("rebase raw", f, "rebase -f raw -b a.qcow2 -F qcow2 a.raw"),
        img("rebase bad -f", f, "rebase -f bogus -u -b '' top.qcow2"),
        img("bitmap bad -f", f, "bitmap -f bogus --add a.qcow2 b0"),
        // QEMU names the node by a generated "#blockNNN" in this message.
        img(
            "bitmap -f raw on qcow2",
            f,
            "bitmap -f raw --add a.qcow2 b0",
        )
        .any_stderr(),
        img(
            "bitmap with a secret",
            f,
            "bitmap --add --object secret,id=s,data=x a.qcow2 b0",
        ),
        img(
            "bitmap bad object",
            f,
            "bitmap --add --object bogus,id=s a.qcow2 b0",
        ),
        img("snapshot bad -f", f, "snapshot -f bogus -l a.qcow2"),
        img("map bad -f", f, "map -f bogus a.qcow2"),
        img("measure bad -f", f, "measure -f bogus -O qcow2 a.qcow2"),
        img(
            "measure -f raw on qcow2",
            f,
            "measure -f raw -O qcow2 a.qcow2",
        ),
        img("dd bad -f", f, "dd -f bogus if=a.qcow2 of=o.raw"),
        img("dd -f raw on qcow2", f, "dd -f raw if=a.qcow2 of=o.raw"),
        img("convert bad -f", f, "convert -f bogus -O raw a.qcow2 o.raw"),
        img("bench bad -f", f, "bench -f bogus a.qcow2"),
        img("check -f raw on qcow2", f, "check -f raw a.qcow2"),
        img("check -f qcow2 on raw", f, "check -f qcow2 a.raw"),
        img("compare bad -F", f, "compare -F bogus a.qcow2 a.raw"),
        img(
            "create option given twice",
            f,
            "create -f qcow2 -o cluster_size=64k,cluster_size=4k x.qcow2 1M",
        ),
        img(
            "create two -o",
            f,
            "create -f qcow2 -o cluster_size=4k -o lazy_refcounts=on x.qcow2 1M",
        ),
        img(
            "create option list of commas",
            f,
            "create -f qcow2 -o ,, x.qcow2 1M",
        ),
        img(
            "create option list ending in a comma",
            f,
            "create -f qcow2 -o a, x.qcow2 1M",
        ),
        img(
            "create empty option list",
            f,
            "create -f qcow2 -o cluster_size=4k -o '' x.qcow2 1M",
        ),
        img(
            "create option without name",
            f,
            "create -f qcow2 -o =1 x.qcow2 1M",
        ),
        img(
            "measure option without name",
            f,
            "measure -O qcow2 -o =1 --size 1M",
        ),
        img(
            "convert option without name",
            f,
            "convert -O qcow2 -o =1 a.qcow2 o.qcow2",
        ),
        img("amend option without name", f, "amend -o =1 a.qcow2"),
        img(
            "bitmap image-opts",
            f,
            "bitmap --add --image-opts driver=qcow2,file.filename=a.qcow2 b0",
        ),
        img(
            "bitmap image-opts with -f",
            f,
            "bitmap --add --image-opts -f qcow2 driver=qcow2,file.filename=a.qcow2 b0",
        ),
        img(
            "bitmap image-opts missing file",
            f,
            "bitmap --add --image-opts driver=qcow2,file.filename=nope.qcow2 b0",
        ),
        img(
            "convert option list of commas",
            f,
            "convert -O qcow2 -o ,, a.qcow2 o.qcow2",
        ),
        img(
            "convert empty option list",
            f,
            "convert -o '' -O raw a.qcow2 o.raw",
        ),
        img("amend empty option list", f, "amend -o '' a.qcow2"),
        img("measure empty option list", f, "measure -o '' --size 1M"),
        img("amend help for raw", f, "amend -o help -f raw a.raw"),
        img(
            "resize with a secret",
            f,
            "resize --object secret,id=s,data=x a.qcow2 1M",
        ),
        img(
            "map image-opts",
            f,
            "map --image-opts driver=qcow2,file.filename=a.qcow2",
        ),
        img(
            "snapshot image-opts",
            f,
            "snapshot -l --image-opts driver=qcow2,file.filename=snap.qcow2",
        ),
    ];
    check_table(&rows);
}

/// The commands on the less common image kinds (v2, extended L2,
/// compressed, data file, snapshots, bitmaps).
// Left out: `map` of the image with a data file (blk does not yet report
// the data file's offsets; being done through the ABI separately).
#[test]
fn differential_image_kinds() {
    let f = KINDS;
    let rows = vec![
        img("info 4k clusters json", f, "info --output=json c4k.qcow2"),
        img("info overlay json", f, "info --output=json top.qcow2"),
        img(
            "info -U snapshots json",
            f,
            "info -U --output=json snap.qcow2",
        ),
        img("info chain of one", f, "info --backing-chain a.qcow2"),
        img("info --force-share", f, "info --force-share a.qcow2"),
        img("check human", f, "check -f qcow2 --output=human a.qcow2"),
        img("check snapshots json", f, "check --output=json snap.qcow2"),
        img("check overlay json", f, "check --output=json top.qcow2"),
        img("check v2 json", f, "check --output=json v2.qcow2"),
        img("check data file json", f, "check --output=json ext.qcow2"),
        img("check luks json", f, "check --output=json luks.qcow2"),
        img("map snapshots", f, "map --output=json snap.qcow2"),
        img(
            "map from 15M",
            f,
            "map --output=json --start-offset=15M a.qcow2",
        ),
        img(
            "map one byte",
            f,
            "map --output=json --max-length=1 a.qcow2",
        ),
        img(
            "map past the end",
            f,
            "map --output=json --start-offset=17M a.qcow2",
        ),
        img("compare -p", f, "compare -p a.qcow2 a.raw"),
        img("compare data file", f, "compare ext.qcow2 ext.qcow2"),
        img(
            "compare v2 and extended l2",
            f,
            "compare v2.qcow2 xl2.qcow2",
        ),
        img(
            "convert data file to qcow2",
            f,
            "convert -O qcow2 ext.qcow2 o.qcow2",
        ),
        img(
            "convert extended l2 compressed",
            f,
            "convert -O qcow2 -c xl2.qcow2 o.qcow2",
        ),
        img(
            "convert to extended l2 16k",
            f,
            "convert -O qcow2 -o extended_l2=on,cluster_size=16k c4k.qcow2 o.qcow2",
        ),
        img(
            "convert snapshots image",
            f,
            "convert -O qcow2 snap.qcow2 o.qcow2",
        ),
        img("convert -S 64k", f, "convert -O raw -S 64k a.qcow2 o.raw"),
        img("measure raw from qcow2", f, "measure -O raw a.qcow2"),
        img("measure data file image", f, "measure -O qcow2 ext.qcow2"),
        img("measure extended l2 image", f, "measure -O qcow2 xl2.qcow2"),
        img(
            "measure 2M clusters json",
            f,
            "measure -O qcow2 --output=json -o cluster_size=2M --size 100G",
        ),
        img("snapshot list v2", f, "snapshot -l v2.qcow2"),
        img("snapshot compressed", f, "snapshot -c x comp.qcow2"),
        img("snapshot with bitmaps", f, "snapshot -c x bm.qcow2"),
        img("shrink with snapshots", f, "resize --shrink snap.qcow2 1M"),
        img("shrink data file", f, "resize --shrink ext.qcow2 8M"),
        img("shrink extended l2", f, "resize --shrink xl2.qcow2 1M"),
        img("shrink compressed", f, "resize --shrink comp.qcow2 1M"),
        img("shrink with bitmaps", f, "resize --shrink bm.qcow2 8M"),
        img(
            "amend size with snapshots",
            f,
            "amend -o size=8M snap.qcow2",
        ),
        img(
            "amend lazy refcounts on v2",
            f,
            "amend -o lazy_refcounts=on v2.qcow2",
        ),
        img(
            "amend data_file_raw",
            f,
            "amend -o data_file_raw=on ext.qcow2",
        ),
    ];
    check_table(&rows);
}
