//! Round trips through the store: a tree committed with `update commit` (from a directory,
//! and from `.tar`, `.tar.gz` and `.tar.zst` archives made by GNU tar) and checked out with
//! `update checkout` comes back the same, in bare and archive repositories.
//!
//! "The same" is the store's model: relative path, type, permission bits (setuid, setgid
//! and sticky included), owner, size, content, symlink target and xattrs (including a
//! `security.capability` blob), plus the hardlink structure. Modification times are not
//! part of the model (commits record one timestamp, not one per file, as in OSTree), so
//! they are not compared.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use testkit::cli;
use testkit::random::{random_tree, Shape};
use testkit::snapshot::{object_inodes, Snapshot};
use testkit::tree::Tree;

/// Every kind of entry and every odd mode and owner, written by hand.
const EVERY_KIND: &str = r"
d . 755 0 0
d etc 755 0 0
f etc/passwd 644 0 0 root:x:0:0::/root:/bin/sh
f etc/shadow 640 0 42 secret
d usr/bin 755 0 0
f usr/bin/sudo 4755 0 0 @rand:70000:1
f usr/bin/wall 2755 0 5 @rand:1:2
f usr/bin/both 6755 1 2 @rand:3000:3
f usr/bin/ping 755 0 0 @rand:1000:4
x usr/bin/ping security.capability 0x0100000200200000000000000000000000000000
d tmp 1777 0 0
d srv 2775 1000 100
f srv/empty 644 4294967294 65534
f srv/big 600 65534 65534 @rand:1048600:5
f srv/exact64k-1 644 0 0 @rand:65535:6
f srv/a\sname\swith\sspaces 644 0 0 spaces inside
f srv/-rf 644 0 0 dash
f srv/--help 644 0 0 dashdash
f srv/日本語\s🦀 644 0 0 unicode
f srv/new\nline 644 0 0 newline in name
f srv/same-bytes-other-mode 755 0 0 dash
f srv/same-bytes-same-meta 644 0 0 dash
l srv/link-rel ../etc/passwd
l srv/link-abs /etc/passwd 7 8
l srv/dangling does/not/exist
l srv/dotdot ../../../../..
l srv/root /
h srv/hard1 etc/passwd
h usr/bin/sudo-again usr/bin/sudo
h hard-top srv/big
x etc/passwd user.note hello
x etc/passwd trusted.t 0x00ff00
x srv/empty user.empty-value 0x
x srv user.dir dirxattr
x srv/link-abs trusted.on-symlink yes
d var/empty/deep/deeper 700 3 3
d ro 555 0 0
f ro/inside 444 0 0 readonly
f nomode 0 0 0 nothing
f sticky 1644 0 0 sticky
";

/// Prints the tree as DSL if the test panics, so a generated tree can be replayed.
struct ShowOnPanic(String);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- the tree under test, as DSL ----\n{}", self.0);
        }
    }
}

const TS: &[&str] = &["--subject", "round trip", "--timestamp", "1700000000"];

/// Commit `src` into a fresh repo of `mode`, check it out by hardlink and by copy, and
/// compare both with the source. Returns the commit id.
fn commit_and_compare(mode: &str, src: &Path, work: &Path, label: &str) -> String {
    let expected = Snapshot::take(src).unwrap();
    let repo = work.join(format!("repo-{mode}"));
    cli::init(&repo, mode);
    let id = cli::commit(&repo, "main", src.as_os_str(), TS);
    expected.assert_same(
        &Snapshot::take(src).unwrap(),
        &format!("{label}: commit must not change its source"),
    );

    let out = work.join(format!("co-{mode}"));
    cli::checkout(&repo, &id, &out, &[]).success();
    let got = Snapshot::take(&out).unwrap();
    expected.assert_same(&got, &format!("{label}: {mode} checkout"));
    if mode == "bare" {
        expected.assert_links_kept(&got, &format!("{label}: {mode} hardlink checkout"));
    }

    let out_copy = work.join(format!("co-copy-{mode}"));
    cli::checkout(&repo, &id, &out_copy, &["--copy"]).success();
    let got = Snapshot::take(&out_copy).unwrap();
    expected.assert_same(&got, &format!("{label}: {mode} --copy checkout"));
    // A copy must be independent of the store: editing it must never change an object.
    let objects = object_inodes(&repo).unwrap();
    for (path, ino) in &got.inodes {
        assert!(
            !objects.contains_key(ino),
            "{label}: --copy checkout of {} shares its inode with the object {}",
            String::from_utf8_lossy(path),
            objects[ino].display()
        );
    }
    id
}

/// Both modes; the commit id must not depend on the repository mode (object ids cover
/// header and content, never how they are stored).
fn round_trip_both_modes(tree: &Tree, label: &str) {
    let _show = ShowOnPanic(tree.to_dsl());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree.build(&src).unwrap();
    let bare = commit_and_compare("bare", &src, work.path(), label);
    let archive = commit_and_compare("archive", &src, work.path(), label);
    assert_eq!(
        bare, archive,
        "{label}: the same tree, subject and timestamp gave different commit ids in bare and archive repos"
    );
}

#[test]
fn every_entry_kind_round_trips() {
    testkit::require_root!("the trees have owners other than root and trusted.* xattrs");
    round_trip_both_modes(&Tree::parse(EVERY_KIND).unwrap(), "every-kind tree");
}

fn seeds() -> Vec<u64> {
    match std::env::var("UPDATE_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("UPDATE_TEST_SEED is a number")],
        Err(_) => vec![11, 22, 33, 44],
    }
}

#[test]
fn random_trees_round_trip() {
    testkit::require_root!("the trees have owners other than root and trusted.* xattrs");
    for seed in seeds() {
        eprintln!("random tree seed {seed} (replay with UPDATE_TEST_SEED={seed})");
        let tree = random_tree(seed, Shape::default());
        round_trip_both_modes(&tree, &format!("random tree, seed {seed}"));
    }
}

#[test]
fn deep_narrow_tree_round_trips() {
    testkit::require_root!("the trees have owners other than root and trusted.* xattrs");
    let shape = Shape {
        max_depth: 40,
        max_width: 2,
        max_entries: 120,
        big_files: false,
    };
    let tree = random_tree(5, shape);
    round_trip_both_modes(&tree, "deep narrow tree, seed 5");
}

/// The commit's root dirtree and dirmeta ids, read with the store crate.
fn root_ids(repo: &Path, commit: &str) -> (String, String) {
    let r = store::Repo::open(repo).unwrap();
    let c = r.read_commit(&commit.parse().unwrap()).unwrap();
    (c.root_tree.to_string(), c.root_meta.to_string())
}

/// The same tree committed from GNU tar archives (plain, gzip, zstd) gives the same root
/// tree and root metadata as committed from the directory, and checks out the same.
fn tar_matches_dir(mode: &str) {
    testkit::require_tool("tar");
    testkit::require_tool("zstd");
    let mut tree = Tree::parse(EVERY_KIND).unwrap();
    let extra = random_tree(
        7,
        Shape {
            max_entries: 60,
            ..Shape::default()
        },
    );
    // Graft the random tree under `gen/`.
    for mut e in extra.entries.into_iter().skip(1) {
        use testkit::tree::Entry;
        let fix = |p: &mut Vec<u8>| *p = [b"gen/".as_slice(), p].concat();
        match &mut e {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Xattr { path, .. } => fix(path),
            Entry::Hardlink { path, existing } => {
                fix(path);
                fix(existing);
            }
        }
        tree.entries.push(e);
    }
    let _show = ShowOnPanic(tree.to_dsl());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree.build(&src).unwrap();
    let expected = Snapshot::take(&src).unwrap();
    let repo = work.path().join("repo");
    cli::init(&repo, mode);
    let dir_commit = cli::commit(&repo, "dir", src.as_os_str(), TS);
    let dir_root = root_ids(&repo, &dir_commit);

    for (ext, compress) in [
        ("tar", None),
        ("tar.gz", Some("--gzip")),
        ("tar.zst", Some("--zstd")),
    ] {
        let archive = work.path().join(format!("tree.{ext}"));
        let mut cmd = std::process::Command::new("tar");
        cmd.args(["--xattrs", "--xattrs-include=*"]);
        cmd.args(compress);
        cmd.arg("-cpf").arg(&archive).arg("-C").arg(&src).arg(".");
        let run = cli::run_command(cmd, std::time::Duration::from_secs(60));
        assert_eq!(
            run.code(),
            Some(0),
            "making the archive failed\n{}",
            run.describe()
        );

        let branch = format!("from-{}", ext.replace('.', "-"));
        let id = cli::commit(&repo, &branch, archive.as_os_str(), TS);
        let out = work.path().join(format!("co-{ext}"));
        cli::checkout(&repo, &id, &out, &[]).success();
        expected.assert_same(
            &Snapshot::take(&out).unwrap(),
            &format!("{mode} repo: checkout of the commit made from {ext}"),
        );
        assert_eq!(
            root_ids(&repo, &id),
            dir_root,
            "{mode} repo: committing from {ext} gave another (root dirtree, root dirmeta) than from the directory"
        );
    }
}

#[test]
fn tar_archives_match_directory_bare() {
    testkit::require_root!("the trees have owners other than root and trusted.* xattrs");
    tar_matches_dir("bare");
}

#[test]
fn tar_archives_match_directory_archive() {
    testkit::require_root!("the trees have owners other than root and trusted.* xattrs");
    tar_matches_dir("archive");
}

/// The harness itself: the DSL builds what it says (modes survive chown, the capability
/// survives, hardlinks are one inode), so a passing round trip means something.
#[test]
fn dsl_builds_what_it_says() {
    testkit::require_root!("the tree has owners other than root");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    Tree::parse(EVERY_KIND).unwrap().build(&src).unwrap();
    let s = Snapshot::take(&src).unwrap();
    let node = |p: &str| &s.nodes[p.as_bytes()];
    assert_eq!(node("usr/bin/sudo").perm, 0o4755);
    assert_eq!(node("usr/bin/both").perm, 0o6755);
    assert_eq!((node("usr/bin/both").uid, node("usr/bin/both").gid), (1, 2));
    assert_eq!(node("tmp").perm, 0o1777);
    assert_eq!(node("srv").perm, 0o2775);
    assert_eq!(node("srv/empty").uid, 4_294_967_294);
    assert_eq!(node("srv/big").size, 1_048_600);
    assert_eq!(
        node("srv/link-abs").target.as_deref(),
        Some(&b"/etc/passwd"[..])
    );
    assert_eq!(node("srv/link-abs").uid, 7);
    assert_eq!(node("").perm, 0o755);
    assert!(node("usr/bin/ping").xattrs.contains(&(
        b"security.capability".to_vec(),
        testkit::tree::cap_net_raw_v2()
    )));
    assert!(node("srv/link-abs")
        .xattrs
        .iter()
        .any(|x| x.0 == b"trusted.on-symlink"));
    let links = s.links();
    assert!(
        links.contains(&vec![b"etc/passwd".to_vec(), b"srv/hard1".to_vec()]),
        "{links:?}"
    );
    assert_eq!(links.len(), 3, "{links:?}");
    // A random tree builds too, and prints back as the same DSL.
    let t = random_tree(11, Shape::default());
    assert_eq!(Tree::parse(&t.to_dsl()).unwrap(), t);
    t.build(&work.path().join("random")).unwrap();
}

/// Regression guard: GNU tar stores xattr values raw in PAX records ("LEN key=value\n",
/// delimited by LEN, not by the newline), so a binary value holding a 0x0a byte (IMA and
/// EVM signatures, random test data) must import like any other.
#[test]
fn tar_binary_xattr_value_with_newline() {
    testkit::require_root!("trusted.* xattrs");
    testkit::require_tool("tar");
    let tree = Tree::parse(
        "d . 755 0 0\nf f 644 0 0 content\nx f user.bin 0x000a0d0a41\nx f trusted.nl 0x0a\nf g 644 0 0 other\n",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree.build(&src).unwrap();
    let expected = Snapshot::take(&src).unwrap();
    let archive = work.path().join("t.tar");
    let mut cmd = std::process::Command::new("tar");
    cmd.args(["--xattrs", "--xattrs-include=*", "-cpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&src)
        .arg(".");
    assert_eq!(
        cli::run_command(cmd, std::time::Duration::from_secs(60)).code(),
        Some(0)
    );
    for mode in ["bare", "archive"] {
        let repo = work.path().join(format!("repo-{mode}"));
        cli::init(&repo, mode);
        let id = cli::commit(&repo, "main", archive.as_os_str(), TS);
        let out = work.path().join(format!("co-{mode}"));
        cli::checkout(&repo, &id, &out, &[]).success();
        expected.assert_same(
            &Snapshot::take(&out).unwrap(),
            &format!("{mode}: tar with a newline in an xattr value"),
        );
    }
}
