//! Checkout: exact round trips from bare (hardlink) and archive (copy) repositories,
//! hardlink structure, subpaths, and refusal of hostile or broken trees before anything
//! is written. Runs as root (owners, `trusted.*` xattrs on symlinks).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use store::checkout::{checkout, CheckoutOptions, CheckoutStats, LinkMode};
use store::object::{Commit, DirMeta, DirTree, EntryName, FileHeader, ObjectKind, Xattrs};
use store::{CommitId, DirMetaId, DirTreeId, Error, FileId, ObjectId, Repo, RepoMode, Transaction};

fn xattrs(pairs: &[(&str, &str)]) -> Xattrs {
    Xattrs::new(
        pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
    )
    .unwrap()
}

fn file(txn: &Transaction<'_>, perm: u32, owner: (u32, u32), content: &[u8], x: Xattrs) -> FileId {
    let h = FileHeader::regular(perm, owner.0, owner.1, content.len() as u64, x).unwrap();
    txn.write_file(&h, &mut &content[..]).unwrap()
}

fn symlink(txn: &Transaction<'_>, target: &str, owner: (u32, u32), x: Xattrs) -> FileId {
    let h = FileHeader::symlink(target.as_bytes().to_vec(), owner.0, owner.1, x).unwrap();
    txn.write_file(&h, &mut std::io::empty()).unwrap()
}

fn meta(txn: &Transaction<'_>, perm: u32, owner: (u32, u32), x: Xattrs) -> DirMetaId {
    txn.write_dirmeta(&DirMeta::new(perm, owner.0, owner.1, x).unwrap())
        .unwrap()
}

fn tree(
    txn: &Transaction<'_>,
    files: &[(&str, FileId)],
    dirs: &[(&str, DirTreeId, DirMetaId)],
) -> DirTreeId {
    let files = files
        .iter()
        .map(|(n, id)| (EntryName::new(*n).unwrap(), *id))
        .collect();
    let dirs = dirs
        .iter()
        .map(|(n, t, m)| (EntryName::new(*n).unwrap(), *t, *m))
        .collect();
    txn.write_dirtree(&DirTree::new(files, dirs).unwrap())
        .unwrap()
}

fn commit(txn: &Transaction<'_>, root_tree: DirTreeId, root_meta: DirMetaId) -> CommitId {
    txn.write_commit(&Commit {
        parent: None,
        timestamp: 1,
        subject: "test".into(),
        body: String::new(),
        metadata: vec![],
        root_tree,
        root_meta,
    })
    .unwrap()
}

/// What one path of a checkout must look like.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expect {
    mode: u32,
    uid: u32,
    gid: u32,
    /// File content or symlink target; empty for a directory.
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn exp(mode: u32, owner: (u32, u32), data: &[u8], x: &[(&str, &str)]) -> Expect {
    Expect {
        mode,
        uid: owner.0,
        gid: owner.1,
        data: data.to_vec(),
        xattrs: x
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
    }
}

fn read_xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap();
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(p, &cname, &mut v).unwrap();
        out.insert(String::from_utf8(name.to_vec()).unwrap(), v[..len].to_vec());
    }
    out
}

/// Every path below `root` ("" is the root) with what it holds.
fn scan(root: &Path) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p).unwrap();
        let data = if md.file_type().is_symlink() {
            std::fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(rel.join(e.unwrap().file_name()));
            }
            Vec::new()
        };
        let e = Expect {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            data,
            xattrs: read_xattrs(&p),
        };
        out.insert(rel.to_str().unwrap().to_owned(), e);
    }
    out
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

/// A capability set granting cap_net_bind_service (VFS_CAP_REVISION_2, 20 bytes).
fn cap_net_bind() -> Vec<u8> {
    let mut v = Vec::new();
    for word in [0x0200_0000u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

struct Sample {
    commit: CommitId,
    expect: BTreeMap<String, Expect>,
    /// Paths that must share one inode, per group.
    same_inode: Vec<Vec<&'static str>>,
    /// A path and the file id at it.
    a: FileId,
}

/// Every entry kind, odd modes and owners, xattrs (`security.capability` included), a
/// file id at several paths, and one subtree shared by two directories.
fn sample(repo: &Repo) -> Sample {
    let txn = repo.begin().unwrap();
    let (u1, u2, r) = ((1000, 1001), (1002, 1003), (0, 0));
    let big: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let a = file(
        &txn,
        0o640,
        u1,
        b"hello\n",
        xattrs(&[("user.k", "v"), ("user.z", "")]),
    );
    let suid = file(&txn, 0o4755, r, b"#!/bin/sh\n", Xattrs::empty());
    let sgid = file(&txn, 0o2711, u2, b"g", Xattrs::empty());
    let empty = file(&txn, 0o000, u1, b"", Xattrs::empty());
    let bigf = file(&txn, 0o444, r, &big, Xattrs::empty());
    let cap = txn
        .write_file(
            &FileHeader::regular(
                0o755,
                0,
                0,
                3,
                Xattrs::new(vec![(b"security.capability".to_vec(), cap_net_bind())]).unwrap(),
            )
            .unwrap(),
            &mut &b"cap"[..],
        )
        .unwrap();
    let link = symlink(&txn, "a", u2, xattrs(&[("trusted.t", "1")]));
    let root_link = symlink(&txn, "/", r, Xattrs::empty());
    let up_link = symlink(&txn, "../../..", r, Xattrs::empty());
    let y = file(&txn, 0o600, u2, b"deep", Xattrs::empty());
    let m_ro = meta(&txn, 0o500, u1, xattrs(&[("user.d", "1")]));
    let m_sticky = meta(&txn, 0o1777, r, Xattrs::empty());
    let m_sgid = meta(&txn, 0o2750, u2, Xattrs::empty());
    let m_plain = meta(&txn, 0o755, r, Xattrs::empty());
    let m_root = meta(&txn, 0o751, u1, xattrs(&[("user.root", "yes")]));
    let empty_tree = tree(&txn, &[], &[]);
    let deep = tree(&txn, &[("y", y)], &[]);
    let sub = tree(
        &txn,
        &[("x", a), ("z", root_link)],
        &[("deep", deep, m_sgid)],
    );
    let shared = tree(&txn, &[("f", y), ("g", link)], &[]);
    let root = tree(
        &txn,
        &[
            ("a", a),
            ("big", bigf),
            ("cap", cap),
            ("empty", empty),
            ("link", link),
            ("root-link", root_link),
            ("sgid", sgid),
            ("suid", suid),
            ("up", up_link),
        ],
        &[
            ("emptydir", empty_tree, m_plain),
            ("s1", shared, m_plain),
            ("s2", shared, m_sticky),
            ("sticky", empty_tree, m_sticky),
            ("sub", sub, m_ro),
        ],
    );
    let commit = commit(&txn, root, m_root);
    txn.commit().unwrap();

    let d = 0o040000;
    let f = 0o100000;
    let l = 0o120777;
    let mut expect = BTreeMap::new();
    let mut put = |p: &str, e: Expect| {
        expect.insert(p.to_owned(), e);
    };
    put("", exp(d | 0o751, u1, b"", &[("user.root", "yes")]));
    put(
        "a",
        exp(
            f | 0o640,
            u1,
            b"hello\n",
            &[("user.k", "v"), ("user.z", "")],
        ),
    );
    put("big", exp(f | 0o444, r, &big, &[]));
    let mut c = exp(f | 0o755, r, b"cap", &[]);
    c.xattrs
        .insert("security.capability".into(), cap_net_bind());
    put("cap", c);
    put("empty", exp(f, u1, b"", &[]));
    put("link", exp(l, u2, b"a", &[("trusted.t", "1")]));
    put("root-link", exp(l, r, b"/", &[]));
    put("sgid", exp(f | 0o2711, u2, b"g", &[]));
    put("suid", exp(f | 0o4755, r, b"#!/bin/sh\n", &[]));
    put("up", exp(l, r, b"../../..", &[]));
    put("emptydir", exp(d | 0o755, r, b"", &[]));
    put("sticky", exp(d | 0o1777, r, b"", &[]));
    put("s1", exp(d | 0o755, r, b"", &[]));
    put("s2", exp(d | 0o1777, r, b"", &[]));
    for s in ["s1", "s2"] {
        put(&format!("{s}/f"), exp(f | 0o600, u2, b"deep", &[]));
        put(&format!("{s}/g"), exp(l, u2, b"a", &[("trusted.t", "1")]));
    }
    put("sub", exp(d | 0o500, u1, b"", &[("user.d", "1")]));
    put(
        "sub/x",
        exp(
            f | 0o640,
            u1,
            b"hello\n",
            &[("user.k", "v"), ("user.z", "")],
        ),
    );
    put("sub/z", exp(l, r, b"/", &[]));
    put("sub/deep", exp(d | 0o2750, u2, b"", &[]));
    put("sub/deep/y", exp(f | 0o600, u2, b"deep", &[]));
    Sample {
        commit,
        expect,
        same_inode: vec![
            vec!["a", "sub/x"],
            vec!["s1/f", "s2/f", "sub/deep/y"],
            vec!["link", "s1/g", "s2/g"],
            vec!["root-link", "sub/z"],
        ],
        a,
    }
}

fn setup(mode: RepoMode) -> (tempfile::TempDir, Repo) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path().join("repo"), mode).unwrap();
    (dir, repo)
}

fn opts(mode: LinkMode) -> CheckoutOptions {
    CheckoutOptions {
        mode,
        ..Default::default()
    }
}

fn round_trip(
    repo_mode: RepoMode,
    link: LinkMode,
) -> (tempfile::TempDir, Repo, Sample, PathBuf, CheckoutStats) {
    let (dir, repo) = setup(repo_mode);
    let s = sample(&repo);
    let dest = dir.path().join("out");
    let stats = checkout(&repo, &s.commit, &dest, &opts(link)).unwrap();
    assert_eq!(scan(&dest), s.expect);
    for group in &s.same_inode {
        let first = ino(&dest.join(group[0]));
        for p in group {
            assert_eq!(
                ino(&dest.join(p)),
                first,
                "{p} should share an inode with {}",
                group[0]
            );
        }
    }
    assert_ne!(ino(&dest.join("a")), ino(&dest.join("big")));
    // Nothing left beside the destination.
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    assert_eq!((stats.files, stats.dirs), (16, 7));
    (dir, repo, s, dest, stats)
}

#[test]
fn bare_hardlink_round_trip_is_exact() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (_dir, repo, s, dest, stats) = round_trip(RepoMode::Bare, LinkMode::Auto);
    assert_eq!((stats.hardlinked, stats.copied, stats.bytes), (16, 0, 0));
    let obj = repo.path().join(repo.object_path(ObjectKind::File, &s.a.0));
    assert_eq!(ino(&dest.join("a")), ino(&obj), "hardlinked to the object");
}

#[test]
fn bare_copy_round_trip_is_exact() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (_dir, repo, s, dest, stats) = round_trip(RepoMode::Bare, LinkMode::Copy);
    // 10 distinct objects copied once each; the 6 other paths link to the first copy.
    assert_eq!((stats.copied, stats.hardlinked, stats.symlinks), (10, 6, 3));
    let obj = repo.path().join(repo.object_path(ObjectKind::File, &s.a.0));
    assert_ne!(ino(&dest.join("a")), ino(&obj), "a copy, not the object");
}

#[test]
fn archive_copy_round_trip_is_exact() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (_dir, _repo, _s, _dest, stats) = round_trip(RepoMode::Archive, LinkMode::Auto);
    assert_eq!((stats.copied, stats.hardlinked), (10, 6));
    assert_eq!(stats.bytes, 6 + 1_000_003 + 3 + 1 + 10 + 4);
}

#[test]
fn hardlink_mode_needs_a_bare_repo() {
    let (dir, repo) = setup(RepoMode::Archive);
    let s = sample(&repo);
    let dest = dir.path().join("out");
    let err = checkout(&repo, &s.commit, &dest, &opts(LinkMode::Hardlink)).unwrap_err();
    assert!(matches!(err, Error::Repo { .. }), "{err}");
    assert!(!dest.exists());
}

#[test]
fn symlinks_are_created_never_followed() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let txn = repo.begin().unwrap();
    let r = (0, 0);
    let esc = symlink(&txn, outside.to_str().unwrap(), r, Xattrs::empty());
    let up = symlink(&txn, "../../../..", r, Xattrs::empty());
    let f = file(&txn, 0o644, r, b"payload", Xattrs::empty());
    let m = meta(&txn, 0o755, r, Xattrs::empty());
    let inner = tree(&txn, &[("evil", f)], &[]);
    let root = tree(&txn, &[("x", esc), ("y", up)], &[("z", inner, m)]);
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    for link in [LinkMode::Hardlink, LinkMode::Copy] {
        let dest = dir.path().join(format!("out-{link:?}"));
        checkout(&repo, &c, &dest, &opts(link)).unwrap();
        assert_eq!(std::fs::read_link(dest.join("x")).unwrap(), outside);
        assert_eq!(
            std::fs::read_link(dest.join("y")).unwrap(),
            Path::new("../../../..")
        );
        assert!(dest.join("z/evil").is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}

#[test]
fn same_id_at_many_paths_shares_one_inode() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Archive);
    let txn = repo.begin().unwrap();
    let f = file(&txn, 0o644, (0, 0), b"same", Xattrs::empty());
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, FileId)> = names.iter().map(|n| (n.as_str(), f)).collect();
    let t = tree(&txn, &files, &[]);
    let root = tree(&txn, &files, &[("d", t, m)]);
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    let dest = dir.path().join("out");
    let stats = checkout(&repo, &c, &dest, &CheckoutOptions::default()).unwrap();
    assert_eq!((stats.copied, stats.hardlinked), (1, 99));
    assert_eq!(std::fs::metadata(dest.join("d/f49")).unwrap().nlink(), 100);
}

/// A tree large enough to be split over threads: nested directories with their own
/// metadata, written by threads, must come out exactly as a single-threaded copy.
#[test]
fn large_tree_split_over_threads_is_exact() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let ids: Vec<FileId> = (0..40u32)
        .map(|i| {
            file(
                &txn,
                0o600 + i % 8,
                (i, i + 1),
                &i.to_le_bytes(),
                Xattrs::empty(),
            )
        })
        .collect();
    let names: Vec<String> = (0..1500).map(|i| format!("f{i:04}")).collect();
    let files: Vec<(&str, FileId)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), ids[i % ids.len()]))
        .collect();
    let leaf = tree(&txn, &files, &[]);
    let metas: Vec<DirMetaId> = (0..6u32)
        .map(|i| {
            meta(
                &txn,
                0o700 + i,
                (i, i),
                xattrs(&[("user.i", &i.to_string())]),
            )
        })
        .collect();
    let mid = tree(
        &txn,
        &files[..10],
        &[
            ("p", leaf, metas[0]),
            ("q", leaf, metas[1]),
            ("r", leaf, metas[2]),
        ],
    );
    let big = tree(
        &txn,
        &files[..5],
        &[
            ("m1", mid, metas[3]),
            ("m2", mid, metas[4]),
            ("x", leaf, metas[5]),
        ],
    );
    let root = tree(
        &txn,
        &files[..3],
        &[("big", big, metas[0]), ("small", leaf, metas[1])],
    );
    let c = commit(&txn, root, metas[2]);
    txn.commit().unwrap();
    let linked = dir.path().join("linked");
    let stats = checkout(&repo, &c, &linked, &opts(LinkMode::Hardlink)).unwrap();
    assert_eq!(stats.files, 3 + 5 + 2 * (10 + 3 * 1500) + 1500 + 1500);
    assert_eq!(stats.dirs, 1 + 2 + 1 + 2 * 4);
    let copied = dir.path().join("copied");
    checkout(&repo, &c, &copied, &opts(LinkMode::Copy)).unwrap();
    assert_eq!(scan(&linked), scan(&copied));
}

/// ext4 allows 65000 links to one inode: past that, a hardlink checkout copies the object
/// once and links the remaining paths to the copy.
#[test]
fn link_limit_falls_back_to_a_copy() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let f = file(&txn, 0o644, (0, 0), b"many", Xattrs::empty());
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let names: Vec<String> = (0..70_000).map(|i| format!("{i:05}")).collect();
    let files: Vec<(&str, FileId)> = names.iter().map(|n| (n.as_str(), f)).collect();
    let root = tree(&txn, &files, &[]);
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    let dest = dir.path().join("out");
    let stats = checkout(&repo, &c, &dest, &opts(LinkMode::Hardlink)).unwrap();
    assert_eq!(stats.files, 70_000);
    assert_eq!((stats.copied, stats.hardlinked), (1, 69_999));
    assert_eq!(std::fs::read(dest.join("69999")).unwrap(), b"many");
}

#[test]
fn subpath_dir_file_and_missing() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let s = sample(&repo);
    let sub = |p: &str| CheckoutOptions {
        subpath: Some(p.into()),
        ..Default::default()
    };
    let dest = dir.path().join("sub");
    checkout(&repo, &s.commit, &dest, &sub("/sub/")).unwrap();
    let got = scan(&dest);
    let want: BTreeMap<_, _> = s
        .expect
        .iter()
        .filter_map(|(k, v)| {
            let rest = if k == "sub" {
                Some("")
            } else {
                k.strip_prefix("sub/")
            };
            rest.map(|r| (r.to_owned(), v.clone()))
        })
        .collect();
    assert_eq!(got, want);

    let dest = dir.path().join("one");
    let stats = checkout(&repo, &s.commit, &dest, &sub("sub/deep/y")).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"deep");
    assert_eq!((stats.files, stats.dirs), (1, 0));

    for bad in ["nope", "a/b", "sub/../a"] {
        let dest = dir.path().join("missing");
        assert!(
            checkout(&repo, &s.commit, &dest, &sub(bad)).is_err(),
            "{bad}"
        );
        assert!(!dest.exists());
    }
    // A file cannot replace an existing directory.
    let d = dir.path().join("emptydir");
    std::fs::create_dir(&d).unwrap();
    assert!(checkout(&repo, &s.commit, &d, &sub("a")).is_err());
}

#[test]
fn destination_rules() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let s = sample(&repo);
    let o = CheckoutOptions::default();
    // An empty directory is replaced.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    checkout(&repo, &s.commit, &empty, &o).unwrap();
    assert_eq!(scan(&empty), s.expect);
    // A non-empty directory, a file and a symlink are refused and left alone.
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep"), b"mine").unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"mine").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    for dest in [&full, &file, &link] {
        let err = checkout(&repo, &s.commit, dest, &o).unwrap_err();
        assert!(matches!(err, Error::Checkout { .. }), "{err}");
    }
    assert_eq!(std::fs::read(full.join("keep")).unwrap(), b"mine");
    assert!(!dir.path().join("nowhere").exists());
    // A missing parent is an I/O error.
    let err = checkout(&repo, &s.commit, &dir.path().join("no/such"), &o).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

// ---- hostile and broken trees -------------------------------------------------------

/// Store raw bytes as an object of `kind` under their own hash (or under `as_id`).
fn put_raw(repo: &Repo, kind: ObjectKind, bytes: &[u8], as_id: Option<ObjectId>) -> ObjectId {
    let id = as_id.unwrap_or_else(|| ObjectId::of(bytes));
    let path = repo.path().join(repo.object_path(kind, &id));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    id
}

/// A dirtree encoded by hand, with no validation at all.
fn raw_dirtree(files: &[(&[u8], FileId)], dirs: &[(&[u8], DirTreeId, DirMetaId)]) -> Vec<u8> {
    let mut b = b"UDTR\x01".to_vec();
    b.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (n, id) in files {
        b.extend_from_slice(&(n.len() as u32).to_le_bytes());
        b.extend_from_slice(n);
        b.extend_from_slice(id.0.as_bytes());
    }
    b.extend_from_slice(&(dirs.len() as u32).to_le_bytes());
    for (n, t, m) in dirs {
        b.extend_from_slice(&(n.len() as u32).to_le_bytes());
        b.extend_from_slice(n);
        b.extend_from_slice(t.0.as_bytes());
        b.extend_from_slice(m.0.as_bytes());
    }
    b
}

/// Check out a commit that must be refused; nothing may appear at or beside `out`.
fn refused(dir: &Path, repo: &Repo, c: &CommitId, link: LinkMode) -> Error {
    let before: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let dest = dir.join("out");
    let err = checkout(repo, c, &dest, &opts(link)).unwrap_err();
    assert!(!dest.exists(), "nothing at DEST after: {err}");
    let after: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing beside DEST after: {err}");
    err
}

#[test]
fn hostile_names_are_refused_before_writing() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let f = file(&txn, 0o644, (0, 0), b"x", Xattrs::empty());
    let l = symlink(&txn, "/", (0, 0), Xattrs::empty());
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let empty = tree(&txn, &[], &[]);
    let good_file = (&b"aaa"[..], f);
    txn.commit().unwrap();
    let long = vec![b'n'; 256];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_dirtree(&[good_file, (b"..", f)], &[])),
        ("dot", raw_dirtree(&[(b".", f)], &[])),
        ("empty", raw_dirtree(&[(b"", f)], &[])),
        ("slash", raw_dirtree(&[(b"a/b", f)], &[])),
        ("abs", raw_dirtree(&[], &[(b"/etc", empty, m)])),
        ("nul", raw_dirtree(&[(b"a\0b", f)], &[])),
        ("not utf-8", raw_dirtree(&[(b"\xff", f)], &[])),
        ("too long", raw_dirtree(&[(&long, f)], &[])),
        ("duplicate files", raw_dirtree(&[(b"x", f), (b"x", f)], &[])),
        (
            "duplicate dirs",
            raw_dirtree(&[], &[(b"x", empty, m), (b"x", empty, m)]),
        ),
        (
            "symlink and dir",
            raw_dirtree(&[(b"x", l)], &[(b"x", empty, m)]),
        ),
        ("unsorted", raw_dirtree(&[(b"b", f), (b"a", f)], &[])),
    ];
    for (what, bytes) in cases {
        let bad = DirTreeId(put_raw(&repo, ObjectKind::DirTree, &bytes, None));
        // Hostile at the root, and one level down below a good sibling.
        let txn = repo.begin().unwrap();
        let ok = tree(&txn, &[("f", f)], &[]);
        let nested = txn
            .write_dirtree(&DirTree {
                files: vec![(EntryName::new("f").unwrap(), f)],
                dirs: vec![
                    (EntryName::new("a").unwrap(), ok, m),
                    (EntryName::new("b").unwrap(), bad, m),
                ],
            })
            .unwrap();
        let commits = [commit(&txn, bad, m), commit(&txn, nested, m)];
        txn.commit().unwrap();
        for c in commits {
            for link in [LinkMode::Hardlink, LinkMode::Copy] {
                let err = refused(dir.path(), &repo, &c, link);
                match &err {
                    Error::Corrupt {
                        kind: ObjectKind::DirTree,
                        id,
                        ..
                    } if *id == bad.0 => {}
                    _ => panic!("{what}: unexpected error {err}"),
                }
                assert!(err.to_string().contains(&bad.0.to_hex()), "{what}: {err}");
            }
        }
    }
}

#[test]
fn dag_bomb_is_refused_quickly() {
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let mut t = tree(&txn, &[], &[]);
    for _ in 0..30 {
        t = tree(&txn, &[], &[("a", t, m), ("b", t, m)]);
    }
    let c = commit(&txn, t, m);
    txn.commit().unwrap();
    let start = std::time::Instant::now();
    let err = refused(dir.path(), &repo, &c, LinkMode::Auto);
    assert!(
        matches!(
            err,
            Error::TreeLimit {
                what: "entry count",
                ..
            }
        ),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn too_deep_and_too_long_paths_are_refused() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let f = file(&txn, 0o644, (0, 0), b"x", Xattrs::empty());
    let mut deep = tree(&txn, &[("f", f)], &[]);
    for _ in 0..300 {
        deep = tree(&txn, &[], &[("d", deep, m)]);
    }
    let name = "n".repeat(250);
    let mut long = tree(&txn, &[("f", f)], &[]);
    for _ in 0..17 {
        long = tree(&txn, &[], &[(&name, long, m)]);
    }
    let mut fine = tree(&txn, &[("f", f)], &[]);
    for _ in 0..15 {
        fine = tree(&txn, &[], &[(&name, fine, m)]);
    }
    let deep = commit(&txn, deep, m);
    let long = commit(&txn, long, m);
    let fine = commit(&txn, fine, m);
    txn.commit().unwrap();
    let err = refused(dir.path(), &repo, &deep, LinkMode::Auto);
    assert!(
        matches!(err, Error::TreeLimit { what: "depth", .. }),
        "{err}"
    );
    let err = refused(dir.path(), &repo, &long, LinkMode::Auto);
    assert!(matches!(err, Error::Checkout { .. }), "{err}");
    assert!(err.to_string().contains("4095"), "{err}");
    // 15 × 251 + 2 = 3767 bytes is within the limit.
    checkout(
        &repo,
        &fine,
        &dir.path().join("fine"),
        &CheckoutOptions::default(),
    )
    .unwrap();
}

/// A dirtree whose stored bytes are another dirtree (here: its own parent, a cycle) is
/// refused as corrupt before anything is written.
#[test]
fn cycle_in_a_corrupt_store_is_refused() {
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    txn.commit().unwrap();
    let loop_id = DirTreeId(ObjectId::of(b"the child"));
    let root_bytes = raw_dirtree(&[], &[(b"loop", loop_id, m)]);
    let root = DirTreeId(put_raw(&repo, ObjectKind::DirTree, &root_bytes, None));
    put_raw(&repo, ObjectKind::DirTree, &root_bytes, Some(loop_id.0));
    let txn = repo.begin().unwrap();
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    let err = refused(dir.path(), &repo, &c, LinkMode::Auto);
    assert!(
        matches!(err, Error::Corrupt { kind: ObjectKind::DirTree, id, .. } if id == loop_id.0),
        "{err}"
    );
}

#[test]
fn corrupt_file_object_fails_a_copy_checkout() {
    testkit::require_root!("the objects and checkouts keep owners other than the user");
    let (dir, repo) = setup(RepoMode::Archive);
    let txn = repo.begin().unwrap();
    let good = file(&txn, 0o644, (0, 0), b"good content", Xattrs::empty());
    let other = file(&txn, 0o644, (0, 0), b"evil content", Xattrs::empty());
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let root = tree(&txn, &[("a", good)], &[]);
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    // Same header, same size, other bytes.
    let obj = |id: &FileId| repo.path().join(repo.object_path(ObjectKind::File, &id.0));
    std::fs::copy(obj(&other), obj(&good)).unwrap();
    let err = refused(dir.path(), &repo, &c, LinkMode::Auto);
    assert!(
        matches!(err, Error::Corrupt { kind: ObjectKind::File, id, .. } if id == good.0),
        "{err}"
    );
    // A missing object is refused too, in a bare repository's hardlink mode as well.
    std::fs::remove_file(obj(&good)).unwrap();
    let err = refused(dir.path(), &repo, &c, LinkMode::Auto);
    assert!(matches!(err, Error::MissingObject { .. }), "{err}");
    let (dir, repo) = setup(RepoMode::Bare);
    let txn = repo.begin().unwrap();
    let good = file(&txn, 0o644, (0, 0), b"good content", Xattrs::empty());
    let m = meta(&txn, 0o755, (0, 0), Xattrs::empty());
    let sub = tree(&txn, &[("a", good)], &[]);
    let root = tree(&txn, &[], &[("d", sub, m)]);
    let c = commit(&txn, root, m);
    txn.commit().unwrap();
    std::fs::remove_file(
        repo.path()
            .join(repo.object_path(ObjectKind::File, &good.0)),
    )
    .unwrap();
    let err = refused(dir.path(), &repo, &c, LinkMode::Hardlink);
    assert!(matches!(err, Error::MissingObject { .. }), "{err}");
}

// ---- benchmark ----------------------------------------------------------------------

/// Commit a directory into a bare repository with the Transaction API (no xattrs).
fn import(txn: &Transaction<'_>, src: &Path) -> (DirTreeId, DirMetaId) {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(src).unwrap();
    let m = meta(
        txn,
        md.permissions().mode() & 0o7777,
        (md.uid(), md.gid()),
        Xattrs::empty(),
    );
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let owner = (md.uid(), md.gid());
        if md.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            files.push((
                EntryName::new(name).unwrap(),
                symlink(txn, t.to_str().unwrap(), owner, Xattrs::empty()),
            ));
        } else if md.is_file() {
            let h = FileHeader::regular(
                md.permissions().mode() & 0o7777,
                owner.0,
                owner.1,
                md.len(),
                Xattrs::empty(),
            )
            .unwrap();
            let id = txn
                .write_file(&h, &mut std::fs::File::open(&p).unwrap())
                .unwrap();
            files.push((EntryName::new(name).unwrap(), id));
        } else if md.is_dir() {
            let (t, m) = import(txn, &p);
            dirs.push((EntryName::new(name).unwrap(), t, m));
        }
    }
    (
        txn.write_dirtree(&DirTree::new(files, dirs).unwrap())
            .unwrap(),
        m,
    )
}

fn time(f: impl FnOnce()) -> f64 {
    let t = std::time::Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `CHECKOUT_BENCH_SRC=/usr/share cargo test --release -p update-store --test checkout
/// -- --ignored --nocapture bench`: hardlink checkout vs `cp -al` of the same tree.
#[test]
#[ignore]
fn bench_hardlink_checkout_vs_cp_al() {
    let src = std::env::var("CHECKOUT_BENCH_SRC").unwrap_or_else(|_| "/usr/share".into());
    let base = std::env::var("CHECKOUT_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().to_str().unwrap().to_owned());
    let dir = tempfile::tempdir_in(base).unwrap();
    let repo = Repo::init(dir.path().join("repo"), RepoMode::Bare).unwrap();
    let txn = repo.begin().unwrap();
    let t0 = std::time::Instant::now();
    let (t, m) = import(&txn, Path::new(&src));
    let c = commit(&txn, t, m);
    txn.commit().unwrap();
    eprintln!("imported {src} in {:.1}s", t0.elapsed().as_secs_f64());
    let first = dir.path().join("first");
    let stats = checkout(&repo, &c, &first, &CheckoutOptions::default()).unwrap();
    eprintln!("{stats:?}");
    let rm = |p: &Path| {
        assert!(std::process::Command::new("rm")
            .arg("-rf")
            .arg(p)
            .status()
            .unwrap()
            .success())
    };
    let (mut ours, mut cp) = (Vec::new(), Vec::new());
    for i in 0..7 {
        let d = dir.path().join(format!("ours{i}"));
        ours.push(time(|| {
            checkout(&repo, &c, &d, &opts(LinkMode::Hardlink)).unwrap();
        }));
        rm(&d);
        let d = dir.path().join(format!("cp{i}"));
        cp.push(time(|| {
            let st = std::process::Command::new("cp")
                .arg("-al")
                .arg(&first)
                .arg(&d)
                .status()
                .unwrap();
            assert!(st.success());
        }));
        rm(&d);
    }
    let (o, c) = (median(ours), median(cp));
    eprintln!(
        "files {} dirs {}: checkout -H {:.1} ms, cp -al {:.1} ms, ratio {:.2}",
        stats.files,
        stats.dirs,
        o * 1e3,
        c * 1e3,
        o / c
    );
}
