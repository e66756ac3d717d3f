//! `store::commit` from every kind of source: a directory, a tar archive (plain, gzip,
//! zstd) and a git tree. Trees are described in a small spec, made real on disk (these
//! tests run as root, so owners are real) or written into a tar, committed, and read
//! back through the `Repo` API.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use store::commit::{commit, CommitOptions, CommitOutcome, Source};
use store::id::{DirMetaId, DirTreeId, FileId};
use store::object::ObjectKind;
use store::repo::FileContent;
use store::{Error, RefName, Repo, RepoMode};

/// A valid VFS_CAP_REVISION_2 `security.capability` value: cap_net_bind_service, effective.
const CAP_NET_BIND: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// One entry of a test tree, created in this order.
#[derive(Clone)]
enum E {
    /// Directory: path, permission bits, uid, gid, xattrs.
    D(
        &'static str,
        u32,
        u32,
        u32,
        Vec<(&'static str, &'static [u8])>,
    ),
    /// Regular file: path, permission bits, uid, gid, content, xattrs.
    F(
        &'static str,
        u32,
        u32,
        u32,
        &'static [u8],
        Vec<(&'static str, &'static [u8])>,
    ),
    /// Symlink: path, target, uid, gid.
    L(&'static str, &'static str, u32, u32),
    /// Hard link: path, existing path.
    H(&'static str, &'static str),
}

/// What the tests read back for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
        content: Vec<u8>,
    },
    Link {
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
}

fn xa(v: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = v
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
        .collect();
    out.sort();
    out
}

/// The tree with every kind of entry the store keeps.
fn full_spec() -> Vec<E> {
    vec![
        E::F("a", 0o644, 0, 0, b"hello\n", vec![("user.test", b"v1")]),
        E::F("empty", 0o600, 0, 0, b"", vec![]),
        E::D("bin", 0o755, 0, 0, vec![]),
        E::F(
            "bin/tool",
            0o4755,
            0,
            0,
            b"#!/bin/sh\necho tool\n",
            vec![("security.capability", CAP_NET_BIND)],
        ),
        E::F("bin/sgid", 0o2711, 1000, 1001, b"sgid", vec![]),
        E::D("tmp", 0o1777, 0, 0, vec![("user.dir", b"d")]),
        E::D("emptydir", 0o700, 5, 6, vec![]),
        E::L("link", "a", 0, 0),
        E::L("bin/abs", "/usr/bin/env", 7, 8),
        E::D("sub", 0o750, 1, 2, vec![]),
        E::D("sub/deeper", 0o755, 0, 0, vec![]),
        E::F(
            "sub/deeper/x",
            0o444,
            3,
            4,
            b"xx",
            vec![("user.a", b"1"), ("user.b", b"")],
        ),
        E::F("h1", 0o640, 0, 0, b"shared content", vec![]),
        E::H("sub/h2", "h1"),
        E::H("h3", "h1"),
    ]
}

/// Create the spec under `root` (which gets 0755, 0:0).
fn materialise(root: &Path, spec: &[E]) {
    std::fs::create_dir_all(root).unwrap();
    set_meta(root, 0o755, 0, 0, &[]);
    for e in spec {
        match e {
            E::D(p, mode, uid, gid, x) => {
                let path = root.join(p);
                std::fs::create_dir(&path).unwrap();
                set_meta(&path, *mode, *uid, *gid, x);
            }
            E::F(p, mode, uid, gid, content, x) => {
                let path = root.join(p);
                std::fs::write(&path, content).unwrap();
                set_meta(&path, *mode, *uid, *gid, x);
            }
            E::L(p, target, uid, gid) => {
                let path = root.join(p);
                symlink(target, &path).unwrap();
                lchown(&path, Some(*uid), Some(*gid)).unwrap();
            }
            E::H(p, target) => std::fs::hard_link(root.join(target), root.join(p)).unwrap(),
        }
    }
}

/// Owner first (chown clears setuid), then mode, then xattrs (a capability is cleared by
/// chown too).
fn set_meta(path: &Path, mode: u32, uid: u32, gid: u32, x: &[(&str, &[u8])]) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    for (n, v) in x {
        rustix::fs::setxattr(path, *n, v, rustix::fs::XattrFlags::empty()).unwrap();
    }
}

/// What reading the spec back must give (root included, as "").
fn expected(spec: &[E]) -> BTreeMap<String, Got> {
    let mut out = BTreeMap::new();
    out.insert(
        String::new(),
        Got::Dir {
            mode: 0o040755,
            uid: 0,
            gid: 0,
            xattrs: vec![],
        },
    );
    for e in spec {
        let (p, g) = match e {
            E::D(p, mode, uid, gid, x) => (
                p,
                Got::Dir {
                    mode: 0o040000 | mode,
                    uid: *uid,
                    gid: *gid,
                    xattrs: xa(x),
                },
            ),
            E::F(p, mode, uid, gid, content, x) => (
                p,
                Got::File {
                    mode: 0o100000 | mode,
                    uid: *uid,
                    gid: *gid,
                    xattrs: xa(x),
                    content: content.to_vec(),
                },
            ),
            E::L(p, target, uid, gid) => (
                p,
                Got::Link {
                    target: target.as_bytes().to_vec(),
                    uid: *uid,
                    gid: *gid,
                },
            ),
            E::H(p, target) => (p, out[*target].clone()),
        };
        out.insert(p.to_string(), g);
    }
    out
}

/// A tar archive of the spec. `root` adds a `./` entry for the root directory.
fn to_tar(spec: &[E], root: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, uid: u32, gid: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid.into());
        h.set_gid(gid.into());
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    };
    let pax = |b: &mut tar::Builder<Vec<u8>>, x: &[(&str, &[u8])]| {
        if !x.is_empty() {
            let recs: Vec<(String, &[u8])> = x
                .iter()
                .map(|(n, v)| (format!("SCHILY.xattr.{n}"), *v))
                .collect();
            b.append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
    };
    if root {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, 0, 0);
        b.append_data(&mut h, "./", &[][..]).unwrap();
    }
    for e in spec {
        match e {
            E::D(p, mode, uid, gid, x) => {
                pax(&mut b, x);
                let mut h = header(tar::EntryType::Directory, *mode, *uid, *gid, 0);
                b.append_data(&mut h, format!("./{p}/"), &[][..]).unwrap();
            }
            E::F(p, mode, uid, gid, content, x) => {
                pax(&mut b, x);
                let mut h = header(
                    tar::EntryType::Regular,
                    *mode,
                    *uid,
                    *gid,
                    content.len() as u64,
                );
                b.append_data(&mut h, format!("./{p}"), *content).unwrap();
            }
            E::L(p, target, uid, gid) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, *uid, *gid, 0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::H(p, target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
                b.append_link(&mut h, p, format!("./{target}")).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Every path of a commit's tree, read back through the Repo API, plus the file id of
/// each file.
fn read_back(
    repo: &Repo,
    out: &CommitOutcome,
) -> (BTreeMap<String, Got>, BTreeMap<String, FileId>) {
    let c = repo.read_commit(&out.commit).unwrap();
    let mut got = BTreeMap::new();
    let mut ids = BTreeMap::new();
    read_dir(repo, "", c.root_tree, c.root_meta, &mut got, &mut ids);
    (got, ids)
}

fn read_dir(
    repo: &Repo,
    path: &str,
    tree: DirTreeId,
    meta: DirMetaId,
    got: &mut BTreeMap<String, Got>,
    ids: &mut BTreeMap<String, FileId>,
) {
    let m = repo.read_dirmeta(&meta).unwrap();
    let x = m
        .xattrs
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    got.insert(
        path.to_owned(),
        Got::Dir {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            xattrs: x,
        },
    );
    let join = |n: &str| {
        if path.is_empty() {
            n.to_owned()
        } else {
            format!("{path}/{n}")
        }
    };
    let t = repo.read_dirtree(&tree).unwrap();
    for (name, id) in &t.files {
        let p = join(name.as_str());
        let (h, content) = repo.read_file(id).unwrap();
        repo.verify_file(id).unwrap();
        let x = h
            .xattrs
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        let g = match content {
            FileContent::Symlink => Got::Link {
                target: h.symlink_target.clone(),
                uid: h.uid,
                gid: h.gid,
            },
            FileContent::Regular(mut r) => {
                let mut data = Vec::new();
                r.read_to_end(&mut data).unwrap();
                Got::File {
                    mode: h.mode,
                    uid: h.uid,
                    gid: h.gid,
                    xattrs: x,
                    content: data,
                }
            }
        };
        got.insert(p.clone(), g);
        ids.insert(p, *id);
    }
    for (name, sub_tree, sub_meta) in &t.dirs {
        read_dir(repo, &join(name.as_str()), *sub_tree, *sub_meta, got, ids);
    }
}

fn opts(branch: &str) -> CommitOptions {
    CommitOptions {
        branch: Some(RefName::new(branch).unwrap()),
        subject: Some("test".into()),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    }
}

fn new_repo(tmp: &Path, mode: RepoMode) -> Repo {
    Repo::init(tmp.join(format!("repo-{mode}")), mode).unwrap()
}

#[test]
fn directory_with_every_entry_kind_round_trips() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let spec = full_spec();
    materialise(&tree, &spec);
    let want = expected(&spec);
    let mut roots = Vec::new();
    for mode in [RepoMode::Archive, RepoMode::Bare] {
        let repo = new_repo(tmp.path(), mode);
        let out = commit(&repo, &Source::Dir(tree.clone()), &opts("main")).unwrap();
        assert_eq!(
            repo.read_ref(&RefName::new("main").unwrap()).unwrap(),
            Some(out.commit)
        );
        let (got, ids) = read_back(&repo, &out);
        assert_eq!(got, want, "{mode}");
        assert_eq!(ids["h1"], ids["sub/h2"]);
        assert_eq!(ids["h1"], ids["h3"]);
        let s = out.stats;
        assert_eq!((s.files, s.dirs, s.symlinks), (8, 6, 2), "{s:?}");
        // The hardlinked content is read once.
        let bytes: u64 = [6, 0, 20, 4, 2, 14].iter().sum();
        assert_eq!(s.bytes, bytes);
        assert!(s.objects_written > 0);
        roots.push(repo.read_commit(&out.commit).unwrap().root_tree);
        // Committing the same tree again writes no new object but the commit.
        let again = commit(&repo, &Source::Dir(tree.clone()), &opts("main")).unwrap();
        assert_eq!(again.stats.objects_written, 1);
        assert_eq!(
            repo.read_commit(&again.commit).unwrap().parent,
            Some(out.commit)
        );
    }
    assert_eq!(roots[0], roots[1], "bare and archive give the same tree");
}

#[test]
fn special_files_are_refused_naming_the_path() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    use rustix::fs::{FileType, Mode};
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let cases: [(&str, &str); 3] = [
        ("fifo", "FIFO"),
        ("sock", "socket"),
        ("null", "character device"),
    ];
    for (name, kind) in cases {
        let tree = tmp.path().join(format!("tree-{name}"));
        materialise(
            &tree,
            &[
                E::D("sub", 0o755, 0, 0, vec![]),
                E::F("sub/ok", 0o644, 0, 0, b"ok", vec![]),
            ],
        );
        let path = tree.join("sub").join(name);
        match name {
            "sock" => {
                let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                std::mem::forget(_l);
            }
            "fifo" => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                FileType::Fifo,
                Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap(),
            _ => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(1, 3),
            )
            .unwrap(),
        }
        let err = commit(&repo, &Source::Dir(tree.clone()), &opts("main")).unwrap_err();
        match &err {
            Error::UnsupportedFileType { path: p, kind: k } => {
                assert_eq!(p, &path);
                assert_eq!(k, &kind);
            }
            other => panic!("{name}: unexpected {other}"),
        }
        assert!(err.to_string().contains(&format!("sub/{name}")), "{err}");
    }
    // Nothing became visible.
    assert!(repo.list_refs().unwrap().is_empty());
    assert!(repo.list_objects(ObjectKind::Commit).unwrap().is_empty());
    assert!(repo.list_objects(ObjectKind::File).unwrap().is_empty());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn tar_gives_the_same_tree_as_the_directory() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let spec = full_spec();
    materialise(&tree, &spec);
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let from_dir = commit(&repo, &Source::Dir(tree), &opts("dir")).unwrap();
    let plain = to_tar(&spec, true);
    let variants = [
        ("plain.tar", plain.clone()),
        ("x.tgz.not-by-name", gzip(&plain)),
        ("x.zst", zstd::encode_all(&plain[..], 3).unwrap()),
        ("noroot.tar", to_tar(&spec, false)),
    ];
    for (name, bytes) in variants {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let src = Source::parse(path.to_str().unwrap()).unwrap();
        assert_eq!(src, Source::Tar(path.clone()));
        let out = commit(&repo, &src, &opts("dir")).unwrap();
        let c = repo.read_commit(&out.commit).unwrap();
        let d = repo.read_commit(&from_dir.commit).unwrap();
        assert_eq!(
            (c.root_tree, c.root_meta),
            (d.root_tree, d.root_meta),
            "{name}"
        );
        let (_, ids) = read_back(&repo, &out);
        assert_eq!(ids["h1"], ids["sub/h2"], "{name}");
        assert_eq!(
            (out.stats.files, out.stats.dirs, out.stats.symlinks),
            (8, 6, 2),
            "{name}"
        );
        assert_eq!(
            out.stats.objects_written, 1,
            "{name}: only the commit is new"
        );
    }
}

#[test]
fn tar_big_files_stream_and_later_entries_win() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path(), RepoMode::Bare);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("a/b/big", tar::EntryType::Regular, 0o644, &big);
    add("dup", tar::EntryType::Regular, 0o644, b"first");
    add("dup", tar::EntryType::Regular, 0o600, b"second");
    add("a/", tar::EntryType::Directory, 0o711, b"");
    let data = b.into_inner().unwrap();
    let path = tmp.path().join("t.tar");
    std::fs::write(&path, &data).unwrap();
    let out = commit(&repo, &Source::Tar(path), &opts("main")).unwrap();
    let (got, _) = read_back(&repo, &out);
    match &got["a/b/big"] {
        Got::File { content, .. } => assert!(content == &big),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        got["dup"],
        Got::File {
            mode: 0o100600,
            uid: 0,
            gid: 0,
            xattrs: vec![],
            content: b"second".to_vec()
        }
    );
    let dir = |mode| Got::Dir {
        mode,
        uid: 0,
        gid: 0,
        xattrs: vec![],
    };
    assert_eq!(
        got["a"],
        dir(0o040711),
        "a later directory entry sets the metadata"
    );
    assert_eq!(got["a/b"], dir(0o040755), "implied directories get 0755");
    assert_eq!(out.stats.bytes, big.len() as u64 + 11);
}

/// Raw ustar header block for a path the tar crate's builder would refuse to write.
fn raw_entry(path: &str, kind: u8, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn tar_refuses_escaping_paths_and_special_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let cases: [(&str, u8, &str); 6] = [
        ("../evil", b'0', "'..'"),
        ("a/../../evil", b'0', "'..'"),
        ("/etc/passwd", b'0', "absolute"),
        ("dev/null", b'3', "character device"),
        ("dev/sda", b'4', "block device"),
        ("run/fifo", b'6', "FIFO"),
    ];
    for (i, (path, kind, msg)) in cases.iter().enumerate() {
        let mut data = raw_entry("ok", b'0', b"fine");
        data.extend(raw_entry(path, *kind, b""));
        data.extend([0u8; 1024]);
        let file = tmp.path().join(format!("bad{i}.tar"));
        std::fs::write(&file, &data).unwrap();
        let err = commit(&repo, &Source::Tar(file), &opts("main")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(msg) && text.contains(path), "{path}: {text}");
    }
    assert!(repo.list_refs().unwrap().is_empty());
    assert!(repo.list_objects(ObjectKind::Commit).unwrap().is_empty());
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn git_tree_commits_with_git_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("gitrepo");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("readme"), b"read me\n").unwrap();
    std::fs::create_dir_all(work.join("bin/sub")).unwrap();
    std::fs::write(work.join("bin/run"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(work.join("bin/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(work.join("bin/sub/same"), b"read me\n").unwrap();
    symlink("../readme", work.join("bin/link")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("later"), b"later").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "two"]);
    git(&work, &["tag", "v1", &first]);

    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let src = Source::parse(&format!("git:{}", work.display())).unwrap();
    let head = commit(&repo, &src, &opts("g")).unwrap();
    let (got, ids) = read_back(&repo, &head);
    let file = |mode, content: &[u8]| Got::File {
        mode,
        uid: 0,
        gid: 0,
        xattrs: vec![],
        content: content.to_vec(),
    };
    let dir = Got::Dir {
        mode: 0o040755,
        uid: 0,
        gid: 0,
        xattrs: vec![],
    };
    let mut want = BTreeMap::new();
    want.insert(String::new(), dir.clone());
    want.insert("bin".to_owned(), dir.clone());
    want.insert("bin/sub".to_owned(), dir.clone());
    want.insert("readme".to_owned(), file(0o100644, b"read me\n"));
    want.insert("later".to_owned(), file(0o100644, b"later"));
    want.insert("bin/run".to_owned(), file(0o100755, b"#!/bin/sh\n"));
    want.insert("bin/sub/same".to_owned(), file(0o100644, b"read me\n"));
    want.insert(
        "bin/link".to_owned(),
        Got::Link {
            target: b"../readme".to_vec(),
            uid: 0,
            gid: 0,
        },
    );
    assert_eq!(got, want);
    assert_eq!(ids["readme"], ids["bin/sub/same"]);
    assert_eq!(
        (head.stats.files, head.stats.dirs, head.stats.symlinks),
        (4, 3, 1)
    );

    // Older revisions by tag, by id, by branch; with an owner override.
    for rev in ["v1", first.as_str(), "refs/tags/v1"] {
        let src = Source::parse(&format!("git:{}:{rev}", work.display())).unwrap();
        let out = commit(&repo, &src, &opts("old")).unwrap();
        let (got, _) = read_back(&repo, &out);
        assert!(!got.contains_key("later"), "{rev}");
        assert!(got.contains_key("bin/run"), "{rev}");
    }
    let src = Source::parse(&format!("git:{}:main", work.display())).unwrap();
    let owned = CommitOptions {
        owner_uid: Some(10),
        owner_gid: Some(20),
        ..opts("owned")
    };
    let out = commit(&repo, &src, &owned).unwrap();
    let (got, _) = read_back(&repo, &out);
    assert_eq!(got.len(), want.len());
    assert!(got.values().all(|g| owner_of(g) == (10, 20)), "{got:?}");

    let err = commit(
        &repo,
        &Source::parse(&format!("git:{}:nosuchrev", work.display())).unwrap(),
        &opts("x"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nosuchrev"), "{err}");
}

#[test]
fn git_submodules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("gitrepo");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("f"), b"f").unwrap();
    git(&work, &["add", "f"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    git(
        &work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},modules/sm"),
        ],
    );
    git(&work, &["commit", "-q", "-m", "submodule"]);
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let err = commit(
        &repo,
        &Source::Git {
            repo: work,
            rev: None,
        },
        &opts("x"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("modules/sm") && text.contains("submodule"),
        "{text}"
    );
    assert!(repo.list_refs().unwrap().is_empty());
}

fn owner_of(g: &Got) -> (u32, u32) {
    match g {
        Got::Dir { uid, gid, .. } | Got::File { uid, gid, .. } | Got::Link { uid, gid, .. } => {
            (*uid, *gid)
        }
    }
}

#[test]
fn owner_override_applies_to_every_entry() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let spec = full_spec();
    materialise(&tree, &spec);
    let tar_path = tmp.path().join("t.tar");
    std::fs::write(&tar_path, to_tar(&spec, false)).unwrap();
    let repo = new_repo(tmp.path(), RepoMode::Bare);
    let o = CommitOptions {
        owner_uid: Some(4242),
        owner_gid: Some(4343),
        ..opts("main")
    };
    let mut roots = Vec::new();
    for src in [Source::Dir(tree), Source::Tar(tar_path)] {
        let out = commit(&repo, &src, &o).unwrap();
        let (got, _) = read_back(&repo, &out);
        assert_eq!(got.len(), expected(&spec).len());
        assert!(got.values().all(|g| owner_of(g) == (4242, 4343)), "{got:?}");
        roots.push(repo.read_commit(&out.commit).unwrap().root_tree);
    }
    assert_eq!(roots[0], roots[1]);
}

#[test]
fn parents_chain_and_metadata_is_recorded() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    materialise(&tree, &[E::F("f", 0o644, 0, 0, b"1", vec![])]);
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let branch = RefName::new("os/stable").unwrap();
    let first = commit(&repo, &Source::Dir(tree.clone()), &opts("os/stable")).unwrap();
    std::fs::write(tree.join("f"), b"2").unwrap();
    let o = CommitOptions {
        version: Some("2.0".into()),
        body: Some("longer".into()),
        metadata: vec![("zz".into(), "last".into()), ("build".into(), "42".into())],
        ..opts("os/stable")
    };
    let second = commit(&repo, &Source::Dir(tree.clone()), &o).unwrap();
    assert_eq!(repo.read_ref(&branch).unwrap(), Some(second.commit));
    let c = repo.read_commit(&second.commit).unwrap();
    assert_eq!(c.parent, Some(first.commit));
    assert_eq!(repo.read_commit(&first.commit).unwrap().parent, None);
    assert_eq!(c.version(), Some("2.0"));
    assert_eq!(c.meta("build"), Some("42"));
    assert_eq!(
        (c.subject.as_str(), c.body.as_str(), c.timestamp),
        ("test", "longer", 1_700_000_000)
    );

    // A repeated key is refused before anything is written; the branch stays.
    let dup = CommitOptions {
        metadata: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        ..opts("os/stable")
    };
    let err = commit(&repo, &Source::Dir(tree.clone()), &dup).unwrap_err();
    assert!(err.to_string().contains("'k'"), "{err}");
    assert_eq!(repo.read_ref(&branch).unwrap(), Some(second.commit));

    // Without a branch: an orphan commit, no ref written.
    let orphan = commit(&repo, &Source::Dir(tree), &CommitOptions::default()).unwrap();
    assert_eq!(repo.read_commit(&orphan.commit).unwrap().parent, None);
    assert_eq!(repo.list_refs().unwrap().len(), 1);
}

#[test]
fn non_utf8_names_are_refused_naming_the_path() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    materialise(&tree, &[E::D("d", 0o755, 0, 0, vec![])]);
    let bad: PathBuf = tree.join("d").join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    std::fs::write(&bad, b"x").unwrap();
    let repo = new_repo(tmp.path(), RepoMode::Archive);
    let err = commit(&repo, &Source::Dir(tree), &opts("main")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("d/bad") && text.contains("UTF-8"), "{text}");
}

/// PAX records are delimited by their length prefix, not by newlines: a binary xattr
/// value holding '\n' and '=' (as GNU tar writes IMA/EVM signatures) imports intact, and
/// the other records of the same header (path, uid, size) still apply.
#[test]
fn pax_record_with_binary_value_is_read_by_length() {
    testkit::require_root!("the source trees and bare objects have owners other than the user");
    let value: &[u8] = b"\x00\n=\n\xff=x\n";
    let record = |key: &str, value: &[u8]| {
        let body = [key.as_bytes(), b"=", value, b"\n"].concat();
        // The length counts its own digits.
        let mut len = body.len() + 2;
        while len.to_string().len() + 1 + body.len() != len {
            len += 1;
        }
        [format!("{len} ").into_bytes(), body].concat()
    };
    let long = format!("d/{}", "n".repeat(150));
    let pax = [
        record("SCHILY.xattr.user.bin", value),
        record("path", long.as_bytes()),
        record("uid", b"4242"),
        // Header size 0, the real size only here (as GNU tar does above 8 GiB).
        record("size", b"5"),
    ]
    .concat();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/f").unwrap();
    h.set_mode(0o644);
    h.set_size(pax.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, &pax[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("short-name").unwrap();
    h.set_mode(0o640);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("after").unwrap();
    h.set_mode(0o600);
    h.set_size(3);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    b.append(&h, &b"abc"[..]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tar_path = tmp.path().join("t.tar");
    std::fs::write(&tar_path, b.into_inner().unwrap()).unwrap();

    let repo = new_repo(tmp.path(), RepoMode::Bare);
    let out = commit(&repo, &Source::Tar(tar_path.clone()), &opts("main")).unwrap();
    let (got, _) = read_back(&repo, &out);
    assert_eq!(
        got.get(&long),
        Some(&Got::File {
            mode: 0o100640,
            uid: 4242,
            gid: 0,
            xattrs: vec![(b"user.bin".to_vec(), value.to_vec())],
            content: b"hello".to_vec(),
        }),
        "{got:?}"
    );
    assert!(!got.contains_key("short-name"), "{got:?}");
    match got.get("after") {
        Some(Got::File { uid, content, .. }) => assert_eq!((*uid, &content[..]), (0, &b"abc"[..])),
        other => panic!("{other:?}"),
    }

    // A record whose length does not end at its newline is refused, naming the member.
    let mut bad = std::fs::read(&tar_path).unwrap();
    let at = bad.windows(3).position(|w| w == b"SCH").unwrap() - 3;
    bad[at..at + 2].copy_from_slice(b"29");
    let sum: u32 = bad[..512]
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(c)
            }
        })
        .sum();
    bad[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    std::fs::write(&tar_path, bad).unwrap();
    let err = commit(&repo, &Source::Tar(tar_path), &opts("main"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PaxHeaders/f") && err.contains("malformed"),
        "{err}"
    );
}
