//! Crash safety of `update commit` (THREATS.md G1; STYLE.md "crash safety is tested").
//!
//! strace kills `update commit` with SIGKILL at the N-th call of one system call
//! (`-e inject=SYSCALL:signal=KILL:when=N`), for each of openat, write, rename, fsync,
//! syncfs, mkdirat, unlinkat, fchown and fchmod, and N in a Fibonacci-spaced set up to the
//! number of calls a normal run makes (strace counts per syscall and per thread, so a
//! large N may not fire in a multi-threaded run: the run then simply completes). The
//! repository already holds commit A on `main`; the killed commit is B. After each kill:
//!
//! - `update fsck` passes;
//! - `main` is A or exactly B (commit ids are deterministic with `--timestamp`), and its
//!   whole tree reads back verified through the store crate;
//! - a following `update commit` of B succeeds, checks out equal to B, and clears the
//!   crashed writer's staging directory.
//!
//! Both repository modes. Bounded: at most [`MAX_RUNS_PER_MODE`] kills per mode.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use store::{CommitId, FileId, ObjectId, Repo};
use testkit::cli::{self, run_command};
use testkit::kill::{copy_tree, verdict};
use testkit::random::{random_tree, Shape};
use testkit::snapshot::Snapshot;
use testkit::tree::{Content, Entry, Tree};

const MAX_RUNS_PER_MODE: usize = 75;

/// The syscalls each kill point stands for (`?` : unknown on this arch is fine).
const GROUPS: &[(&str, &[&str])] = &[
    ("openat", &["openat", "?open"]),
    ("write", &["write", "pwrite64", "writev", "?pwritev"]),
    ("rename", &["renameat2", "renameat", "?rename"]),
    ("fsync", &["fsync", "fdatasync"]),
    ("syncfs", &["syncfs"]),
    ("mkdirat", &["mkdirat", "?mkdir"]),
    ("unlinkat", &["unlinkat", "?unlink", "?rmdir"]),
    ("fchown", &["fchown", "fchownat", "?lchown", "?chown"]),
    ("fchmod", &["fchmod", "fchmodat", "?chmod"]),
];

fn trees() -> (Tree, Tree) {
    let a = random_tree(
        3,
        Shape {
            max_depth: 3,
            max_width: 8,
            max_entries: 30,
            big_files: false,
        },
    );
    // B: some contents changed, some files added.
    let mut b = a.clone();
    let mut changed = 0;
    for e in &mut b.entries {
        if let Entry::File { content, .. } = e {
            if changed < 4 {
                *content = Content::Random {
                    len: 3000 + changed,
                    seed: 77 + changed as u64,
                };
                changed += 1;
            }
        }
    }
    for i in 0..5 {
        b.entries.push(Entry::File {
            path: format!("new/file-{i}").into_bytes(),
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            content: Content::Random {
                len: 500 * i,
                seed: i as u64,
            },
        });
    }
    (a, b)
}

fn commit_args<'a>(repo: &'a Path, src: &'a Path, ts: &'a str, subject: &'a str) -> Vec<&'a OsStr> {
    vec![
        "commit".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--branch".as_ref(),
        "main".as_ref(),
        "--timestamp".as_ref(),
        ts.as_ref(),
        "--subject".as_ref(),
        subject.as_ref(),
        src.as_os_str(),
    ]
}

/// How many times a normal commit of B calls each syscall (all threads together).
fn count_syscalls(template: &Path, work: &Path, src_b: &Path) -> BTreeMap<String, usize> {
    let repo = work.join("count");
    copy_tree(template, &repo);
    let out = work.join("strace-count.txt");
    let names: Vec<&str> = GROUPS.iter().flat_map(|g| g.1.iter().copied()).collect();
    let mut cmd = Command::new("strace");
    cmd.arg("-f").arg("-c").arg("-o").arg(&out);
    cmd.arg(format!("-etrace={}", names.join(",")));
    cmd.arg(cli::update_bin())
        .args(commit_args(&repo, src_b, "2000", "B"));
    let run = run_command(cmd, Duration::from_secs(60));
    assert_eq!(
        run.code(),
        Some(0),
        "counting syscalls failed\n{}",
        run.describe()
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 5 && f[0].parse::<f64>().is_ok() {
            if let (Ok(calls), Some(name)) = (f[3].parse::<usize>(), f.last()) {
                counts.insert((*name).to_owned(), calls);
            }
        }
    }
    counts
}

/// Kill points: for each group, N in {1, 2, 3, 5, 8, 13, ...} up to the largest count of
/// its syscalls, and that count itself; thinned evenly to the per-mode cap.
fn plan(counts: &BTreeMap<String, usize>) -> Vec<(&'static str, usize)> {
    let mut all = Vec::new();
    for (group, names) in GROUPS {
        let max = names
            .iter()
            .filter_map(|n| counts.get(n.trim_start_matches('?')))
            .copied()
            .max()
            .unwrap_or(0);
        let (mut a, mut b) = (1usize, 2usize);
        let mut ns = Vec::new();
        while a <= max {
            ns.push(a);
            (a, b) = (b, a + b);
        }
        if max > 0 && ns.last() != Some(&max) {
            ns.push(max);
        }
        all.extend(ns.into_iter().map(|n| (*group, n)));
    }
    if all.len() > MAX_RUNS_PER_MODE {
        let step = all.len() as f64 / MAX_RUNS_PER_MODE as f64;
        all = (0..MAX_RUNS_PER_MODE)
            .map(|i| all[(i as f64 * step) as usize])
            .collect();
    }
    all
}

/// Read the whole tree of `commit` back through the store, verifying every object.
fn check_complete(repo: &Repo, commit: &CommitId) -> anyhow::Result<()> {
    let c = repo.read_commit(commit)?;
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut stack = vec![(c.root_tree, c.root_meta)];
    while let Some((tree, meta)) = stack.pop() {
        repo.read_dirmeta(&meta)?;
        if !seen.insert(tree.0) {
            continue;
        }
        let t = repo.read_dirtree(&tree)?;
        for (_, f) in &t.files {
            let f: &FileId = f;
            if seen.insert(f.0) {
                repo.verify_file(f)?;
            }
        }
        stack.extend(t.dirs.iter().map(|(_, t, m)| (*t, *m)));
    }
    Ok(())
}

fn crash_commit(mode: &str) {
    testkit::require_tool("strace");
    let start = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (tree_a, tree_b) = trees();
    let (src_a, src_b) = (work.join("a"), work.join("b"));
    tree_a.build(&src_a).unwrap();
    tree_b.build(&src_b).unwrap();
    let snap_b = Snapshot::take(&src_b).unwrap();

    // The template: a repo holding A on main. Then the id B gets on top of A.
    let template = work.join("template");
    cli::init(&template, mode);
    let id_a = cli::update(commit_args(&template, &src_a, "1000", "A"))
        .success()
        .out()
        .to_owned();
    let reference = work.join("reference");
    copy_tree(&template, &reference);
    let id_b = cli::update(commit_args(&reference, &src_b, "2000", "B"))
        .success()
        .out()
        .to_owned();

    let counts = count_syscalls(&template, work, &src_b);
    let plan = plan(&counts);
    eprintln!(
        "{mode}: syscall counts of one commit: {counts:?}; {} kill points",
        plan.len()
    );
    assert!(!plan.is_empty(), "no syscalls counted: {counts:?}");

    let mut failures = Vec::new();
    let mut killed = 0;
    for (i, (group, n)) in plan.iter().enumerate() {
        let label = format!("{mode}: killed at {group} #{n}");
        let repo = work.join(format!("run-{i}"));
        copy_tree(&template, &repo);
        let names = GROUPS.iter().find(|g| g.0 == *group).unwrap().1.join(",");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-o", "/dev/null"]);
        cmd.arg(format!("-etrace={names}"));
        cmd.arg(format!("-einject={names}:signal=KILL:when={n}"));
        cmd.arg(cli::update_bin())
            .args(commit_args(&repo, &src_b, "2000", "B"));
        let run = run_command(cmd, Duration::from_secs(60));
        if run.code() != Some(0) {
            killed += 1;
        }

        let fsck = cli::fsck(&repo);
        if fsck.code() != Some(0) {
            failures.push(format!("{label}: fsck fails\n{}", fsck.describe()));
        }
        let r = match Repo::open(&repo) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{label}: the repo does not open: {e}"));
                continue;
            }
        };
        match r.list_refs() {
            Ok(refs) => {
                let main: Vec<_> = refs.iter().filter(|(n, _)| n.as_str() == "main").collect();
                match main.as_slice() {
                    [(_, id)] if id.to_string() == id_a || id.to_string() == id_b => {}
                    other => failures.push(format!(
                        "{label}: main should be A {id_a} or B {id_b}, refs are {other:?}"
                    )),
                }
                for (name, id) in &refs {
                    if let Err(e) = check_complete(&r, id) {
                        failures.push(format!("{label}: ref {name} -> {id} is not complete: {e}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{label}: listing refs fails: {e}")),
        }

        let again = cli::update(commit_args(&repo, &src_b, "3000", "B again"));
        if again.code() != Some(0) {
            failures.push(format!(
                "{label}: the next commit fails\n{}",
                again.describe()
            ));
            continue;
        }
        let out = work.join(format!("co-{i}"));
        let co = cli::checkout(&repo, again.out(), &out, &[]);
        if co.code() != Some(0) {
            failures.push(format!(
                "{label}: checkout of the next commit fails\n{}",
                co.describe()
            ));
            continue;
        }
        let d = snap_b.diff(&Snapshot::take(&out).unwrap());
        if !d.is_empty() {
            failures.push(format!(
                "{label}: the next commit checks out different: {d:?}"
            ));
        }
        // The crashed writer's staging is gone (a staging dir without its lock file is
        // kept for an hour by design: its writer may be between mkdir and lock).
        for e in std::fs::read_dir(repo.join("tmp")).unwrap().flatten() {
            if e.path().join("lock").exists() {
                failures.push(format!(
                    "{label}: stale staging {:?} survived the next commit",
                    e.file_name()
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&repo);
    }
    verdict(&format!("{mode}: "), plan.len(), killed, &failures, start);
}

#[test]
fn commit_survives_kill_bare() {
    testkit::require_root!("the trees have owners other than root");
    crash_commit("bare");
}

#[test]
fn commit_survives_kill_archive() {
    testkit::require_root!("the trees have owners other than root");
    crash_commit("archive");
}
