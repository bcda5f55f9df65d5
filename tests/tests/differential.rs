//! The differential table, part 1: the issue-8 rows (data safety against
//! every kind of holder, bitmaps, refusals) and ordinary read and modifying
//! commands. Command lines run through qemu-img/qemu-io and blk on identical
//! copies of the same images (tests/src/differential/); each table is one
//! test, and a failing test lists every failing row. A new command joins by
//! adding a row.

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
