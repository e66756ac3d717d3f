//! Crash safety of `update deploy` (deploy/src/deploy.rs module doc; STYLE.md "crash safety
//! is tested").
//!
//! strace kills `update deploy` with SIGKILL at the N-th call of one group of system calls
//! (`-e inject=SYSCALL:signal=KILL:when=N`), for every group a normal deploy makes (counted
//! per syscall and per thread from a traced normal run first, as strace counts `when`),
//! and N in a Fibonacci-spaced set up to that count plus its last [`TAIL`] calls (every N
//! for a group called at most [`DENSE`] times). The device has deployment A booted and
//! marked good, a local edit in A's `/etc`, and v2 (a new kernel, so boot files are copied
//! to the ESP) pulled; the killed command deploys v2 (B). The sysroot is set up once and
//! copied with `cp -a` (hardlinks kept) for each kill.
//!
//! After each kill:
//!
//! - every `*.conf` on the ESP parses, names (by `update.deployment=`) a deployment that
//!   exists with its origin file, and is complete: the same tree as A before the kill, or as
//!   a reference B made by an uninterrupted deploy (B's `/etc` with the local edit); the
//!   kernel and initramfs it names exist with the right content;
//! - A's blessed entry `update-os-1.conf` is still there, naming A, and A is unchanged;
//! - `update status --json` and `update fsck` of the sysroot's repository succeed;
//! - a following `update deploy origin:main` succeeds; afterwards there are exactly A's
//!   entry and a `+3` entry of B, both complete, the deployments directory holds only A and
//!   B (and their origins: no `.staging-*`/`.tmp-*`, no orphan), the ESP holds the two
//!   kernel directories and no temp files, and the stand-in firmware boots B.
//!
//! Bounded: at most [`MAX_RUNS`] kills.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use deploy::bls::{EntriesDir, Entry, EntryName};
use testkit::cli::{self, run_command};
use testkit::device::{make_bootable, Device};
use testkit::kill::{copy_tree, verdict};
use testkit::snapshot::Snapshot;
use testkit::world::{texty, write, World};

const MAX_RUNS: usize = 80;

/// Groups called at most this many times get a kill at every call.
const DENSE: usize = 8;

/// Groups called more often get a kill at each of their last this many calls.
const TAIL: usize = 3;

const KERNEL_A: &[u8] = b"kernel v1";
const KERNEL_B: &[u8] = b"kernel v2, a little longer";
const INITRAMFS: &[u8] = b"initramfs";
const LOCAL_EDIT: &[u8] = b"level=9\n";

/// The syscalls each kill point stands for (`?`: unknown on this arch is fine).
const GROUPS: &[(&str, &[&str])] = &[
    ("openat", &["openat", "?open"]),
    ("write", &["write", "pwrite64", "writev", "?pwritev"]),
    ("copy", &["copy_file_range", "sendfile"]),
    // Apart: strace counts per syscall, and deploy uses both.
    ("renameat", &["renameat", "?rename"]),
    ("renameat2", &["renameat2"]),
    ("fsync", &["fsync", "fdatasync"]),
    ("syncfs", &["syncfs"]),
    ("mkdirat", &["mkdirat", "?mkdir"]),
    ("unlinkat", &["unlinkat", "?unlink", "?rmdir"]),
    ("linkat", &["linkat", "?link"]),
    ("symlinkat", &["symlinkat", "?symlink"]),
    ("fchown", &["fchown", "fchownat", "?lchown", "?chown"]),
    ("fchmod", &["fchmod", "fchmodat", "?chmod"]),
    ("xattr", &["fsetxattr", "lsetxattr", "?setxattr"]),
    ("utimens", &["utimensat", "?futimesat"]),
];

/// The template device, and what an uninterrupted deploy of B makes.
struct Setup {
    /// The device: A booted and good, local edit in A's /etc, v2 pulled.
    dev: Device,
    /// A's `COMMIT.SERIAL`.
    a: String,
    /// A's deployment before any kill.
    snap_a: Snapshot,
    /// B's commit.
    commit_b: String,
    /// B's deployment as an uninterrupted deploy makes it.
    snap_b: Snapshot,
}

fn id_of(report: &serde_json::Value) -> String {
    let d = report["deployment"]
        .as_str()
        .expect("deployment in the report");
    d.split_once('/').expect("OS/ID").1.to_owned()
}

/// A device at `sysroot` (a copy of the template's, made by the caller) with its own copy
/// of the template's booted command line (`boot()` rewrites it).
fn device_at(template: &Device, sysroot: &Path) -> Device {
    let cmdline = sysroot.with_extension("cmdline");
    std::fs::copy(&template.cmdline, &cmdline).unwrap();
    Device {
        sysroot: sysroot.to_path_buf(),
        esp: sysroot.join("efi"),
        cmdline,
    }
}

fn setup(w: &World) -> Setup {
    make_bootable(w, KERNEL_A);
    w.commit("1", 1_700_000_000);
    w.publish(&[]);
    let dev = Device::new(w, "dev");
    dev.pull();
    let a = id_of(&dev.deploy(&[]));
    assert_eq!(dev.boot(), a);
    dev.run(&["mark-good"], &[]).success();
    assert_eq!(dev.entries(), ["update-os-1.conf"]);
    write(&dev.deployment(&a).join("etc/app.conf"), LOCAL_EDIT);

    // v2: a new kernel (so the deploy installs boot files on the ESP), changed and new
    // files under /usr, a new /etc default.
    make_bootable(w, KERNEL_B);
    write(&w.src.join("usr/bin/tool"), b"tool v2");
    write(&w.src.join("usr/etc/new.conf"), b"new\n");
    for i in 0..12 {
        write(
            &w.src.join(format!("usr/share/v2/f{i}")),
            &texty(1_000 + i * 91, 500 + i as u64),
        );
    }
    let commit_b = w.commit("2", 1_700_000_100);
    w.publish(&[]);
    dev.pull();
    let snap_a = Snapshot::take(&dev.deployment(&a)).unwrap();

    let reference = device_at(&dev, &w.root.join("reference"));
    copy_tree(&dev.sysroot, &reference.sysroot);
    let r = reference.deploy(&[]);
    assert_eq!(r["commit"], commit_b.as_str());
    let b_dir = reference.deployment(&id_of(&r));
    assert_eq!(
        std::fs::read(b_dir.join("etc/app.conf")).unwrap(),
        LOCAL_EDIT
    );
    let snap_b = Snapshot::take(&b_dir).unwrap();
    Setup {
        dev,
        a,
        snap_a,
        commit_b,
        snap_b,
    }
}

fn deploy_args(dev: &Device) -> Vec<String> {
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    vec![
        "deploy".into(),
        "--sysroot".into(),
        s(&dev.sysroot),
        "--proc-cmdline".into(),
        s(&dev.cmdline),
        "origin:main".into(),
        "--json".into(),
    ]
}

/// How many times a normal deploy of B calls each syscall, in the thread that calls it most
/// (strace counts `when=N` per syscall and per thread; the checkout runs on threads of its
/// own).
fn count_syscalls(s: &Setup, work: &Path) -> BTreeMap<String, usize> {
    let dev = device_at(&s.dev, &work.join("count"));
    copy_tree(&s.dev.sysroot, &dev.sysroot);
    let out = work.join("strace-count.txt");
    let names: Vec<&str> = GROUPS.iter().flat_map(|g| g.1.iter().copied()).collect();
    let mut cmd = Command::new("strace");
    cmd.arg("-f").arg("-o").arg(&out);
    cmd.arg(format!("-etrace={}", names.join(",")));
    cmd.arg(cli::update_bin()).args(deploy_args(&dev));
    let run = run_command(cmd, Duration::from_secs(60));
    assert_eq!(
        run.code(),
        Some(0),
        "counting syscalls failed\n{}",
        run.describe()
    );
    // Lines are `PID NAME(ARGS...`; a call split by another thread's shows once as
    // `PID NAME(... <unfinished ...>` and once as `PID <... NAME resumed>`.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut per_thread: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some((name, _)) = rest.split_once('(') {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                *per_thread.entry((pid, name)).or_default() += 1;
            }
        }
    }
    let mut counts = BTreeMap::new();
    for ((_, name), n) in per_thread {
        let c = counts.entry(name.to_owned()).or_insert(0);
        *c = n.max(*c);
    }
    let _ = std::fs::remove_dir_all(&dev.sysroot);
    let _ = std::fs::remove_file(&dev.cmdline);
    counts
}

/// Kill points: per group, every N up to [`DENSE`] calls, else N in {1, 2, 3, 5, 8, 13,
/// ...} and the last [`TAIL`] calls (the end of a deploy is where the publishing steps
/// are). Over [`MAX_RUNS`], the longest lists are thinned until the plan fits.
fn plan(counts: &BTreeMap<String, usize>) -> Vec<(&'static str, usize)> {
    let mut lists: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for (group, names) in GROUPS {
        let max = names
            .iter()
            .filter_map(|n| counts.get(n.trim_start_matches('?')))
            .copied()
            .max()
            .unwrap_or(0);
        let ns: Vec<usize> = if max <= DENSE {
            (1..=max).collect()
        } else {
            let mut ns = BTreeSet::new();
            let (mut a, mut b) = (1usize, 2usize);
            while a < max {
                ns.insert(a);
                (a, b) = (b, a + b);
            }
            ns.extend(max + 1 - TAIL..=max);
            ns.into_iter().collect()
        };
        if !ns.is_empty() {
            lists.push((group, ns));
        }
    }
    while lists.iter().map(|l| l.1.len()).sum::<usize>() > MAX_RUNS {
        // Drop the largest Fibonacci point of the longest list (the tail stays).
        let longest = lists.iter_mut().max_by_key(|l| l.1.len()).unwrap();
        let ns = &mut longest.1;
        ns.remove(ns.len() - TAIL - 1);
    }
    lists
        .into_iter()
        .flat_map(|(g, ns)| ns.into_iter().map(move |n| (g, n)))
        .collect()
}

/// File names in `dir` (empty when it does not exist).
fn names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Check every `*.conf` entry on the ESP: parses, names a complete deployment (A as it was,
/// or B as the reference deploy made it) with its origin, and boot files that exist with the
/// right content. Returns the entries (file name, deployment id).
fn check_entries(s: &Setup, dev: &Device, failures: &mut Vec<String>) -> Vec<(String, String)> {
    let entries_dir = dev.esp.join("loader/entries");
    let dir = match EntriesDir::open(&dev.esp, false) {
        Ok(d) => d,
        Err(e) => {
            failures.push(format!("{}: does not open: {e}", entries_dir.display()));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for file in names(&entries_dir) {
        if !file.ends_with(".conf") {
            continue;
        }
        let Some(name) = EntryName::parse(&file) else {
            failures.push(format!("entry {file}: not an entry name"));
            continue;
        };
        let entry: Entry = match dir.read(&name) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("entry {file}: does not parse: {e}"));
                continue;
            }
        };
        let Some(id) = entry
            .karg("update.deployment")
            .and_then(|d| d.strip_prefix("os/"))
        else {
            failures.push(format!(
                "entry {file}: no update.deployment=os/... in {:?}",
                entry.options()
            ));
            continue;
        };
        out.push((file.clone(), id.to_owned()));
        let root = dev.deployment(id);
        let (expected, kernel) = if id == s.a {
            (&s.snap_a, KERNEL_A)
        } else if id.starts_with(&format!("{}.", s.commit_b)) {
            (&s.snap_b, KERNEL_B)
        } else {
            failures.push(format!("entry {file}: names {id}, neither A nor B"));
            continue;
        };
        if !root.is_dir() {
            failures.push(format!("entry {file}: deployment {id} does not exist"));
            continue;
        }
        let origin = dev.deployment(&format!("{id}.origin"));
        if !std::fs::metadata(&origin).is_ok_and(|m| m.len() > 0) {
            failures.push(format!("entry {file}: deployment {id} has no origin file"));
        }
        match Snapshot::take(&root) {
            Ok(snap) => {
                let d = expected.diff(&snap);
                if !d.is_empty() {
                    failures.push(format!(
                        "entry {file}: deployment {id} is not complete ({} differences): {:?}",
                        d.len(),
                        d.iter().take(10).collect::<Vec<_>>()
                    ));
                }
            }
            Err(e) => failures.push(format!("entry {file}: deployment {id} unreadable: {e:#}")),
        }
        if std::fs::read(root.join("etc/app.conf")).ok().as_deref() != Some(LOCAL_EDIT) {
            failures.push(format!(
                "entry {file}: deployment {id} lost the local /etc edit"
            ));
        }
        let files = std::iter::once((&entry.linux, kernel))
            .chain(entry.initrd.iter().map(|i| (i, INITRAMFS)));
        for (path, content) in files {
            let p = dev.esp.join(path.trim_start_matches('/'));
            match std::fs::read(&p) {
                Ok(data) if data == content => {}
                Ok(data) => failures.push(format!(
                    "entry {file}: {path} has {} bytes, expected {}",
                    data.len(),
                    content.len()
                )),
                Err(e) => failures.push(format!("entry {file}: {path}: {e}")),
            }
        }
        if entry.initrd.len() != 1 {
            failures.push(format!(
                "entry {file}: expected one initrd, has {:?}",
                entry.initrd
            ));
        }
    }
    out
}

/// The invariants right after a kill.
fn check_after_kill(s: &Setup, dev: &Device, failures: &mut Vec<String>) {
    let entries = check_entries(s, dev, failures);
    if !entries
        .iter()
        .any(|(f, id)| f == "update-os-1.conf" && *id == s.a)
    {
        failures.push(format!(
            "A's entry update-os-1.conf naming {} is gone; entries: {entries:?}",
            s.a
        ));
    }
    let status = dev.run(&["status", "--json"], &[]);
    if status.code() != Some(0) {
        failures.push(format!("status fails\n{}", status.describe()));
    } else if let Err(e) = serde_json::from_str::<serde_json::Value>(status.out()) {
        failures.push(format!("status --json is not JSON: {e}\n{}", status.out()));
    }
    let fsck = cli::fsck(&dev.repo());
    if fsck.code() != Some(0) {
        failures.push(format!("fsck fails\n{}", fsck.describe()));
    }
}

/// The invariants after a following, uninterrupted deploy.
fn check_after_redeploy(s: &Setup, dev: &Device, failures: &mut Vec<String>) {
    let run = dev.run(&["deploy"], &["origin:main", "--json"]);
    if run.code() != Some(0) {
        failures.push(format!("the following deploy fails\n{}", run.describe()));
        return;
    }
    let report: serde_json::Value = match serde_json::from_str(run.out()) {
        Ok(v) => v,
        Err(e) => {
            failures.push(format!("deploy --json is not JSON: {e}\n{}", run.out()));
            return;
        }
    };
    let b = id_of(&report);
    let entries = check_entries(s, dev, failures);
    let ok = entries.len() == 2
        && entries
            .iter()
            .any(|(f, id)| f == "update-os-1.conf" && *id == s.a)
        && entries
            .iter()
            .any(|(f, id)| f.ends_with("+3.conf") && *id == b);
    if !ok {
        failures.push(format!(
            "after the following deploy: expected entries of A (update-os-1.conf -> {}) and B (+3 -> {b}), have {entries:?}",
            s.a
        ));
    }
    let in_entries: BTreeSet<String> = names(&dev.esp.join("loader/entries"));
    let expected: BTreeSet<String> = entries.iter().map(|e| e.0.clone()).collect();
    if in_entries != expected {
        failures.push(format!(
            "leftovers in loader/entries: {:?}",
            in_entries.difference(&expected).collect::<Vec<_>>()
        ));
    }
    let deploy_dir = dev.sysroot.join("update/deploy/os/deploy");
    let expected: BTreeSet<String> = [
        s.a.clone(),
        format!("{}.origin", s.a),
        b.clone(),
        format!("{b}.origin"),
    ]
    .into();
    let present = names(&deploy_dir);
    if present != expected {
        failures.push(format!(
            "deployments directory after the following deploy: unexpected {:?}, missing {:?}",
            present.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&present).collect::<Vec<_>>()
        ));
    }
    let boot_dirs = names(&dev.esp.join("update/os"));
    if boot_dirs.len() != 2 || boot_dirs.iter().any(|n| n.starts_with('.')) {
        failures.push(format!(
            "efi/update/os should hold the kernel directories of A and B, holds {boot_dirs:?}"
        ));
    }
    if failures.is_empty() {
        let booted = dev.boot();
        if booted != b {
            failures.push(format!("the firmware boots {booted}, not the new {b}"));
        }
    }
}

#[test]
fn deploy_survives_kill_at_every_step() {
    testkit::require_root!("deployments keep the tree's owners");
    testkit::require_tool("strace");
    let start = Instant::now();
    let w = World::new();
    let s = setup(&w);
    let setup_time = start.elapsed();

    let counts = count_syscalls(&s, &w.root);
    let plan = plan(&counts);
    eprintln!(
        "syscall counts of one deploy: {counts:?}; {} kill points (setup {setup_time:?})",
        plan.len()
    );
    assert!(!plan.is_empty(), "no syscalls counted: {counts:?}");

    let mut failures = Vec::new();
    let mut killed = 0;
    for (i, (group, n)) in plan.iter().enumerate() {
        let names = GROUPS.iter().find(|g| g.0 == *group).unwrap().1.join(",");
        let label = format!("killed at {group} #{n} (-einject={names}:signal=KILL:when={n})");
        let dev = device_at(&s.dev, &w.root.join(format!("run-{i}")));
        copy_tree(&s.dev.sysroot, &dev.sysroot);
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-o", "/dev/null"]);
        cmd.arg(format!("-etrace={names}"));
        cmd.arg(format!("-einject={names}:signal=KILL:when={n}"));
        cmd.arg(cli::update_bin()).args(deploy_args(&dev));
        let run = run_command(cmd, Duration::from_secs(60));
        if run.code() != Some(0) {
            killed += 1;
        }

        let mut here = Vec::new();
        check_after_kill(&s, &dev, &mut here);
        if here.is_empty() {
            check_after_redeploy(&s, &dev, &mut here);
        }
        let _ = std::fs::remove_dir_all(&dev.sysroot);
        let _ = std::fs::remove_file(&dev.cmdline);
        if !here.is_empty() {
            failures.push(format!("{label}:\n  {}", here.join("\n  ")));
        }
    }
    verdict("", plan.len(), killed, &failures, start);
}
