//! The differential layer: a table of command lines, each run through the
//! QEMU tool (`qemu-img`, `qemu-io`) and through `blk` on identical copies of
//! the same run-time-made images, in two sibling directories with the same
//! relative names. A row passes when both tools give the same exit code, the
//! same output (JSON compared as values) and the same resulting files: a
//! file QEMU leaves byte-identical blk must leave byte-identical, and a file
//! QEMU changes must afterwards hold the same guest data, format and size
//! and pass the same `qemu-img check`.
//!
//! A new subcommand joins the layer by adding a [`Row`] to a table in
//! `tests/tests/differential.rs`; images come from [`fixture`] names.

mod fixtures;

use fixtures::place;
pub use fixtures::{fixture, FIXTURES};

use crate::{blk_bin, is_locked};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Which QEMU tool a row's command line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `qemu-img ARGS` against `blk ARGS`.
    Img,
    /// `qemu-io ARGS` against `blk io ARGS`.
    Io,
}

/// A process that holds an image open (and locked) while a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `qemu-io FILE`, read-write.
    QemuIo,
    /// `qemu-io -r FILE`.
    QemuIoReadOnly,
    /// `qemu-nbd -k SOCKET FILE`, serving it read-write.
    QemuNbd,
    /// `blk io FILE`, read-write.
    Blk,
}

/// What a row expects of blk relative to QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The same exit code, output and resulting files as QEMU.
    Same,
    /// blk is deliberately safer than QEMU: it must fail (non-zero exit) and
    /// leave every file byte-identical, whatever QEMU does.
    BlkRefuses,
}

/// One command line of the differential table.
#[derive(Clone, Debug)]
pub struct Row {
    /// A short name for reports.
    pub name: &'static str,
    /// The tool.
    pub tool: Tool,
    /// The arguments, split like a shell does (single and double quotes).
    pub args: &'static str,
    /// The fixture files the row's directory starts with (see [`fixture`]).
    pub files: Vec<&'static str>,
    /// Files held open by another process while the command runs.
    pub holders: Vec<(&'static str, Holder)>,
    /// The expectation.
    pub expect: Expect,
    /// Compare stdout.
    pub stdout: bool,
    /// Compare stderr.
    pub stderr: bool,
    /// Output lines containing one of these are dropped before comparing.
    pub ignore_lines: Vec<&'static str>,
    /// JSON object keys dropped (at any depth) before comparing.
    pub ignore_keys: Vec<&'static str>,
    /// Bytes written to the command's stdin (e.g. qemu-io commands).
    pub stdin: Option<&'static str>,
}

/// A `qemu-img ARGS` / `blk ARGS` row over `files`.
pub fn img(name: &'static str, files: &[&'static str], args: &'static str) -> Row {
    Row {
        name,
        tool: Tool::Img,
        args,
        files: files.to_vec(),
        holders: Vec::new(),
        expect: Expect::Same,
        stdout: true,
        stderr: true,
        ignore_lines: vec!["disk size:"],
        ignore_keys: vec!["actual-size"],
        stdin: None,
    }
}

/// A `qemu-io ARGS` / `blk io ARGS` row over `files`.
pub fn io(name: &'static str, files: &[&'static str], args: &'static str) -> Row {
    Row {
        tool: Tool::Io,
        ..img(name, files, args)
    }
    .ignore_line("ops/sec")
}

impl Row {
    /// `file` is held open by `holder` while the command runs.
    pub fn held(mut self, file: &'static str, holder: Holder) -> Row {
        self.holders.push((file, holder));
        self
    }

    /// blk must refuse and change nothing, whatever QEMU does.
    pub fn blk_refuses(mut self) -> Row {
        self.expect = Expect::BlkRefuses;
        self
    }

    /// Stdout is not compared.
    pub fn any_stdout(mut self) -> Row {
        self.stdout = false;
        self
    }

    /// Stderr is not compared.
    pub fn any_stderr(mut self) -> Row {
        self.stderr = false;
        self
    }

    /// Output lines containing `s` are not compared.
    pub fn ignore_line(mut self, s: &'static str) -> Row {
        self.ignore_lines.push(s);
        self
    }

    /// JSON keys named `k` are not compared.
    pub fn ignore_key(mut self, k: &'static str) -> Row {
        self.ignore_keys.push(k);
        self
    }

    /// The command reads `text` on stdin.
    pub fn stdin(mut self, text: &'static str) -> Row {
        self.stdin = Some(text);
        self
    }
}

/// Every fixture kind, for tables that read them.
pub const KINDS: &[&str] = &[
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

/// Splits a command line into words: whitespace separates, single and double
/// quotes group (no escapes inside single quotes).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                have = true;
            }
            None if c.is_whitespace() => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            None => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------- holders

/// A running holder; killed (and reaped) when dropped.
struct Held {
    child: Child,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fmt_of(file: &str) -> &'static str {
    if file.ends_with(".qcow2") {
        "qcow2"
    } else {
        "raw"
    }
}

fn hold(dir: &Path, file: &str, how: Holder) -> Held {
    let fmt = fmt_of(file);
    let mut cmd = match how {
        Holder::QemuIo | Holder::QemuIoReadOnly => {
            let mut c = Command::new("qemu-io");
            c.args(["-f", fmt]);
            if how == Holder::QemuIoReadOnly {
                c.arg("-r");
            }
            c.args(["-c", "sleep 600000", file]);
            c
        }
        Holder::QemuNbd => {
            let mut c = Command::new("qemu-nbd");
            c.args(["-f", fmt, "-k"])
                .arg(dir.join("nbd.sock"))
                .arg(file);
            c
        }
        Holder::Blk => {
            let mut c = Command::new(blk_bin());
            c.args(["io", "-f", fmt, file]);
            c
        }
    };
    let child = cmd
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start holder");
    let held = Held { child };
    let start = Instant::now();
    while !is_locked(&dir.join(file)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{how:?} did not lock {file}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    held
}

// ---------------------------------------------------------------- running

/// What one tool did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with_timeout(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .env("LC_ALL", "C");
    let mut child = cmd.spawn().expect("start command");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    // Readers on threads, so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

fn run_tool(dir: &Path, row: &Row, qemu: bool) -> Ran {
    let words = split_words(row.args);
    let cmd = match (row.tool, qemu) {
        (Tool::Img, true) => {
            let mut c = Command::new("qemu-img");
            c.args(&words);
            c
        }
        (Tool::Io, true) => {
            let mut c = Command::new("qemu-io");
            c.args(&words);
            c
        }
        (Tool::Img, false) => {
            let mut c = Command::new(blk_bin());
            c.args(&words);
            c
        }
        (Tool::Io, false) => {
            let mut c = Command::new(blk_bin());
            c.arg("io").args(&words);
            c
        }
    };
    let mut cmd = cmd;
    cmd.current_dir(dir);
    let holders: Vec<Held> = row.holders.iter().map(|(f, h)| hold(dir, f, *h)).collect();
    let out = run_with_timeout(cmd, row.stdin);
    drop(holders);
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Output with the tools' names made equal and ignored lines dropped.
fn normalise(text: &str, row: &Row) -> String {
    // Only the tool names are mapped: a missing or extra "blk: " prefix
    // is a difference scripts see.
    // blk's interactive prompt is "blk io> ".
    let t = text
        .replace("qemu-img", "blk")
        .replace("qemu-io", "blk")
        .replace("blk io> ", "blk> ");
    let mut out = String::new();
    for l in t.lines() {
        if row.ignore_lines.iter().any(|s| l.contains(s)) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn strip_keys(v: &mut serde_json::Value, keys: &[&str]) {
    match v {
        serde_json::Value::Object(m) => {
            for k in keys {
                m.remove(*k);
            }
            for x in m.values_mut() {
                strip_keys(x, keys);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                strip_keys(x, keys);
            }
        }
        _ => {}
    }
}

/// Stdout as JSON when it is JSON (possibly several documents), else None.
fn as_json(text: &str, row: &Row) -> Option<Vec<serde_json::Value>> {
    let t = text.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    let mut docs = Vec::new();
    for v in serde_json::Deserializer::from_str(t).into_iter::<serde_json::Value>() {
        let mut v = v.ok()?;
        strip_keys(&mut v, &row.ignore_keys);
        docs.push(v);
    }
    Some(docs)
}

/// The content of every entry of `dir` (symlinks as their target's name).
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "nbd.sock" {
            continue;
        }
        let p = e.path();
        let meta = p.symlink_metadata().expect("stat");
        if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&p).expect("readlink");
            m.insert(name, Some(format!("-> {}", t.display()).into_bytes()));
        } else if meta.is_file() {
            m.insert(name, std::fs::read(&p).ok());
        }
    }
    m
}

fn qemu_info(path: &Path) -> Option<serde_json::Value> {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn qemu_code(args: &[&str], a: &Path, b: Option<&Path>) -> i32 {
    let mut c = Command::new("qemu-img");
    c.args(args).arg(a);
    if let Some(b) = b {
        c.arg(b);
    }
    c.output()
        .map(|o| o.status.code().unwrap_or(-1))
        .unwrap_or(-1)
}

/// Differences between what QEMU left in `qd` and blk in `bd`, both started
/// from `before`.
fn compare_files(
    before: &BTreeMap<String, Option<Vec<u8>>>,
    qd: &Path,
    bd: &Path,
    problems: &mut Vec<String>,
) {
    let qa = snapshot_dir(qd);
    let ba = snapshot_dir(bd);
    let qn: Vec<_> = qa.keys().collect();
    let bn: Vec<_> = ba.keys().collect();
    if qn != bn {
        problems.push(format!("files differ: qemu {qn:?}, blk {bn:?}"));
        return;
    }
    for (name, qv) in &qa {
        let bv = &ba[name];
        let orig = before.get(name);
        let q_same = orig == Some(qv);
        let b_same = orig == Some(bv);
        if q_same && !b_same {
            problems.push(format!("blk changed {name}, which qemu left as it was"));
            continue;
        }
        if q_same || qv == bv {
            continue;
        }
        if qd
            .join(name)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            continue; // the target is compared under its own name
        }
        let (qp, bp) = (qd.join(name), bd.join(name));
        let (qi, bi) = (qemu_info(&qp), qemu_info(&bp));
        match (&qi, &bi) {
            (Some(qi), Some(bi)) => {
                for k in [
                    "format",
                    "virtual-size",
                    "backing-filename",
                    "backing-filename-format",
                    "format-specific",
                    "encrypted",
                ] {
                    if qi.get(k) != bi.get(k) {
                        problems.push(format!(
                            "{name}: {k} is {:?} after qemu, {:?} after blk",
                            qi.get(k),
                            bi.get(k)
                        ));
                    }
                }
                let fmt = qi["format"].as_str().unwrap_or("raw").to_string();
                let cq = qemu_code(&["compare", "-U", "-f", &fmt, "-F", &fmt], &qp, Some(&bp));
                if cq != 0 {
                    problems.push(format!(
                        "{name}: guest data differ (qemu-img compare: {cq})"
                    ));
                }
                if fmt == "qcow2" {
                    let kq = qemu_code(&["check", "-U", "-q"], &qp, None);
                    let kb = qemu_code(&["check", "-U", "-q"], &bp, None);
                    if kq != kb {
                        problems.push(format!(
                            "{name}: qemu-img check exits {kq} after qemu, {kb} after blk"
                        ));
                    }
                }
            }
            (None, None) => {
                if qv != bv {
                    problems.push(format!("{name}: unreadable after both, with other bytes"));
                }
            }
            _ => problems.push(format!(
                "{name}: readable by qemu-img info after {} only",
                if qi.is_some() { "qemu" } else { "blk" }
            )),
        }
    }
}

/// Runs one row; returns its problems (empty when it passes).
pub fn check_row(row: &Row) -> Vec<String> {
    let root = tempfile::Builder::new()
        .prefix("blk-diff")
        .tempdir()
        .expect("tempdir");
    let (qd, bd) = (root.path().join("q"), root.path().join("b"));
    for d in [&qd, &bd] {
        std::fs::create_dir(d).expect("mkdir");
        for f in &row.files {
            place(d, f);
        }
    }
    let before = snapshot_dir(&bd);
    let q = run_tool(&qd, row, true);
    let b = run_tool(&bd, row, false);
    let mut problems = Vec::new();
    match row.expect {
        Expect::BlkRefuses => {
            if b.code == 0 {
                problems.push("blk succeeded where it must refuse".into());
            }
            let after = snapshot_dir(&bd);
            for (name, v) in &before {
                if after.get(name) != Some(v) {
                    problems.push(format!("blk changed {name} while refusing"));
                }
            }
        }
        Expect::Same => {
            if q.code != b.code {
                problems.push(format!("exit code: qemu {} blk {}", q.code, b.code));
            }
            if row.stdout {
                let (qs, bs) = (normalise(&q.stdout, row), normalise(&b.stdout, row));
                let same = match (as_json(&qs, row), as_json(&bs, row)) {
                    (Some(qj), Some(bj)) => qj == bj,
                    _ => qs == bs,
                };
                if !same {
                    problems.push(format!("stdout:\n--- qemu\n{qs}--- blk\n{bs}"));
                }
            }
            if row.stderr {
                let (qs, bs) = (normalise(&q.stderr, row), normalise(&b.stderr, row));
                if qs != bs {
                    problems.push(format!("stderr:\n--- qemu\n{qs}--- blk\n{bs}"));
                }
            }
            compare_files(&before, &qd, &bd, &mut problems);
        }
    }
    if !problems.is_empty() {
        let mut ctx = String::new();
        let _ = write!(
            ctx,
            "(qemu exit {}, stderr {:?}; blk exit {}, stderr {:?})",
            q.code,
            q.stderr.trim_end(),
            b.code,
            b.stderr.trim_end()
        );
        problems.push(ctx);
    }
    problems
}

/// Runs every row of a table and panics with a report of all failing rows.
pub fn check_table(rows: &[Row]) {
    let mut report = String::new();
    let mut failed = 0;
    for row in rows {
        let problems = check_row(row);
        if !problems.is_empty() {
            failed += 1;
            let _ = writeln!(report, "\n## {} ({:?} {})", row.name, row.tool, row.args);
            for p in problems {
                let _ = writeln!(report, "- {p}");
            }
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} differential rows failed:{report}",
        rows.len()
    );
}
