//! Tests of the `/etc` merge: a table of one-path states on the three sides (plus a sweep
//! of every combination against the two-line policy), nested trees, metadata preservation,
//! real copies, special files and limits. The symlink escapes are in `escape_tests.rs`.
#![allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid, XattrFlags};

use super::{merge, ChangeKind, LocalChange, MergeReport};
use crate::error::Error;

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A scratch directory, in memory where possible: the sweep creates thousands of entries
/// and should not wait on a busy disk.
pub(super) fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Whether the filesystem of the temp dir holds `user.*` xattrs.
fn user_xattrs() -> bool {
    let t = tempdir();
    let f = t.path().join("f");
    fs::write(&f, "").unwrap();
    rustix::fs::setxattr(&f, "user.probe", b"1", XattrFlags::empty()).is_ok()
}

/// Deep snapshot of an entry: everything the merge promises to keep.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Snap {
    File {
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(Vec<u8>, Vec<u8>)>,
        entries: BTreeMap<String, Snap>,
    },
    Link {
        target: PathBuf,
        uid: u32,
        gid: u32,
    },
    Other,
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let mut v = vec![0u8; 4096];
        let k = rustix::fs::lgetxattr(p, name, &mut v[..]).unwrap();
        out.push((name.as_bytes().to_vec(), v[..k].to_vec()));
    }
    out.sort();
    out
}

pub(super) fn snap(p: &Path) -> Option<Snap> {
    let md = fs::symlink_metadata(p).ok()?;
    let (mode, uid, gid) = (md.mode() & 0o7777, md.uid(), md.gid());
    let ft = md.file_type();
    Some(if ft.is_symlink() {
        Snap::Link {
            target: fs::read_link(p).unwrap(),
            uid,
            gid,
        }
    } else if ft.is_file() {
        Snap::File {
            data: fs::read(p).unwrap(),
            mode,
            uid,
            gid,
            xattrs: xattrs(p),
        }
    } else if ft.is_dir() {
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            entries.insert(name, snap(&e.path()).unwrap());
        }
        Snap::Dir {
            mode,
            uid,
            gid,
            xattrs: xattrs(p),
            entries,
        }
    } else {
        Snap::Other
    })
}

pub(super) fn file(p: &Path, data: &str, mode: u32) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

pub(super) fn dir(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        rustix::fs::CWD,
        p,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// One state of the path `p` in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Absent,
    /// "A\n", 0644.
    FileA,
    /// "B\n", 0644.
    FileB,
    /// "A\n", 0600.
    FileMode,
    /// "A\n", 0644, owned by 1000:1000.
    FileOwner,
    /// "A\n", 0644, `user.note=1`.
    FileXattr,
    /// 0755, holding `d`.
    Dir,
    /// 0700, holding `d`.
    DirMode,
    /// 0755, holding `d`, `user.note=1`.
    DirXattr,
    /// 0755, holding `e` (only in the explicit rows: its change is below the path).
    DirB,
    /// Symlink to `target-a`.
    Link,
    /// Symlink to `target-b`.
    LinkB,
    /// Symlink to `target-a`, owned by 1000:1000.
    LinkOwner,
}

use St::*;

fn put(p: &Path, st: St) {
    match st {
        Absent => {}
        FileA => file(p, "A\n", 0o644),
        FileB => file(p, "B\n", 0o644),
        FileMode => file(p, "A\n", 0o600),
        FileOwner => {
            file(p, "A\n", 0o644);
            chown(p, 1000, 1000);
        }
        FileXattr => {
            file(p, "A\n", 0o644);
            rustix::fs::setxattr(p, "user.note", b"1", XattrFlags::empty()).unwrap();
        }
        Dir | DirMode | DirB | DirXattr => {
            dir(p, if st == DirMode { 0o700 } else { 0o755 });
            let inner = if st == DirB { "e" } else { "d" };
            file(&p.join(inner), "inner\n", 0o644);
            if st == DirXattr {
                rustix::fs::setxattr(p, "user.note", b"1", XattrFlags::empty()).unwrap();
            }
        }
        Link => symlink("target-a", p).unwrap(),
        LinkOwner => {
            symlink("target-a", p).unwrap();
            chown(p, 1000, 1000);
        }
        LinkB => symlink("target-b", p).unwrap(),
    }
}

/// Three roots set up with `p` in the given states, and where the merge goes.
pub(super) struct Setup {
    pub(super) tmp: tempfile::TempDir,
}

impl Setup {
    pub(super) fn new() -> Setup {
        let s = Setup { tmp: tempdir() };
        for d in ["old", "local", "new"] {
            dir(&s.path(d), 0o755);
        }
        s
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub(super) fn merge(&self) -> crate::Result<MergeReport> {
        merge(
            Some(&self.path("old")),
            Some(&self.path("local")),
            &self.path("new"),
            &self.path("dest"),
        )
    }
}

/// Merge one path in states (old, local, new); check the result against `expect` and the
/// reported conflict against `conflict`.
fn check(name: &str, old: St, local: St, new: St, expect: St, conflict: bool) {
    let s = Setup::new();
    put(&s.path("old/p"), old);
    put(&s.path("local/p"), local);
    put(&s.path("new/p"), new);
    let report = s.merge().unwrap_or_else(|e| panic!("{name}: {e}"));
    dir(&s.path("expect"), 0o755);
    put(&s.path("expect/p"), expect);
    assert_eq!(
        snap(&s.path("dest")),
        snap(&s.path("expect")),
        "{name}: {report:?}"
    );
    assert_eq!(!report.conflicts.is_empty(), conflict, "{name}: {report:?}");
    assert_eq!(
        report.carried.is_empty(),
        old == local,
        "{name}: {report:?}"
    );
    assert!(report.skipped.is_empty(), "{name}: {report:?}");
    for p in [s.path("dest/p"), s.path("dest/p/d"), s.path("dest/p/e")] {
        if let Ok(md) = fs::symlink_metadata(&p) {
            if md.is_file() {
                assert_eq!(md.nlink(), 1, "{name}: {} is a hardlink", p.display());
            }
        }
    }
}

/// Whether a row can run here (owner changes need root, xattrs a filesystem for them).
fn runnable(states: &[St], root: bool, xattrs: bool) -> bool {
    states.iter().all(|s| match s {
        FileOwner | LinkOwner => root,
        FileXattr | DirXattr => xattrs,
        _ => true,
    })
}

/// (what, old default, local, new default, expected result, conflict reported)
#[rustfmt::skip]
const ROWS: &[(&str, St, St, St, St, bool)] = &[
    // Local unchanged: the new default wins, whatever it did.
    ("unchanged / unchanged",            FileA,    FileA,     FileA,    FileA,     false),
    ("unchanged / modified",             FileA,    FileA,     FileB,    FileB,     false),
    ("unchanged / mode changed",         FileA,    FileA,     FileMode, FileMode,  false),
    ("unchanged / added",                Absent,   Absent,    FileB,    FileB,     false),
    ("unchanged / deleted",              FileA,    FileA,     Absent,   Absent,    false),
    ("unchanged / file to dir",          FileA,    FileA,     Dir,      Dir,       false),
    ("unchanged / dir to symlink",       Dir,      Dir,       Link,     Link,      false),
    ("unchanged dir / dir mode changed", Dir,      Dir,       DirMode,  DirMode,   false),
    ("unchanged dir / child changed",    Dir,      Dir,       DirB,     DirB,      false),
    // Local added.
    ("added / absent",                   Absent,   FileA,     Absent,   FileA,     false),
    ("added / same added",               Absent,   FileA,     FileA,    FileA,     false),
    ("added / other added",              Absent,   FileA,     FileB,    FileA,     true),
    ("added dir / file added",           Absent,   Dir,       FileB,    Dir,       true),
    ("added symlink / dir added",        Absent,   Link,      Dir,      Link,      true),
    // Local modified.
    ("content / unchanged",              FileA,    FileB,     FileA,    FileB,     false),
    ("mode / unchanged",                 FileA,    FileMode,  FileA,    FileMode,  false),
    ("owner / unchanged",                FileA,    FileOwner, FileA,    FileOwner, false),
    ("xattr / unchanged",                FileA,    FileXattr, FileA,    FileXattr, false),
    ("symlink target / unchanged",       Link,     LinkB,     Link,     LinkB,     false),
    ("symlink owner / unchanged",        Link,     LinkOwner, Link,     LinkOwner, false),
    ("dir mode / unchanged",             Dir,      DirMode,   Dir,      DirMode,   false),
    ("dir xattr added / unchanged",      Dir,      DirXattr,  Dir,      DirXattr,  false),
    ("dir xattr removed / unchanged",    DirXattr, Dir,       DirXattr, Dir,       false),
    ("dir xattr removed / dir mode",     DirXattr, Dir,       DirMode,  Dir,       true),
    ("dir child / unchanged",            Dir,      DirB,      Dir,      DirB,      false),
    ("content / same change",            FileA,    FileB,     FileB,    FileB,     false),
    ("content / other change",           FileA,    FileB,     FileMode, FileB,     true),
    ("content / owner change",           FileA,    FileB,     FileOwner, FileB,    true),
    ("content / deleted",                FileA,    FileB,     Absent,   FileB,     true),
    ("content / file to dir",            FileA,    FileB,     Dir,      FileB,     true),
    ("mode / content change",            FileA,    FileMode,  FileB,    FileMode,  true),
    ("symlink target / link to file",    Link,     LinkB,     FileA,    LinkB,     true),
    ("dir mode / deleted",               Dir,      DirMode,   Absent,   DirMode,   true),
    ("dir mode / dir to file",           Dir,      DirMode,   FileA,    DirMode,   true),
    ("dir child / dir deleted",          Dir,      DirB,      Absent,   DirB,      true),
    ("dir child / dir to symlink",       Dir,      DirB,      Link,     DirB,      true),
    ("dir child / dir to file",          Dir,      DirB,      FileA,    DirB,      true),
    // Local deleted.
    ("deleted / unchanged",              FileA,    Absent,    FileA,    Absent,    false),
    ("deleted / deleted",                FileA,    Absent,    Absent,   Absent,    false),
    ("deleted / modified",               FileA,    Absent,    FileB,    Absent,    true),
    ("deleted / file to symlink",        FileA,    Absent,    Link,     Absent,    true),
    ("deleted dir / unchanged",          Dir,      Absent,    Dir,      Absent,    false),
    ("deleted dir / child changed",      Dir,      Absent,    DirB,     Absent,    true),
    ("deleted symlink / other target",   Link,     Absent,    LinkB,    Absent,    true),
    // Local type change.
    ("file to dir / unchanged",          FileA,    Dir,       FileA,    Dir,       false),
    ("file to symlink / unchanged",      FileA,    Link,      FileA,    Link,      false),
    ("dir to file / unchanged",          Dir,      FileA,     Dir,      FileA,     false),
    ("dir to symlink / unchanged",       Dir,      Link,      Dir,      Link,      false),
    ("symlink to dir / unchanged",       Link,     Dir,       Link,     Dir,       false),
    ("file to dir / modified",           FileA,    Dir,       FileB,    Dir,       true),
    ("file to dir / deleted",            FileA,    Dir,       Absent,   Dir,       true),
    ("file to symlink / file to dir",    FileA,    Link,      Dir,      Link,      true),
    ("dir to file / child changed",      Dir,      FileA,     DirB,     FileA,     true),
    ("dir to file / same type change",   Dir,      FileA,     FileA,    FileA,     false),
    ("dir to symlink / dir mode",        Dir,      Link,      DirMode,  Link,      true),
];

#[test]
fn table() {
    let (root, xattrs) = (is_root(), user_xattrs());
    for &(name, old, local, new, expect, conflict) in ROWS {
        if runnable(&[old, local, new], root, xattrs) {
            check(name, old, local, new, expect, conflict);
        }
    }
}

/// Every combination of states on the three sides against the policy: an unchanged path
/// takes the new default; a changed one keeps the local version, and conflicts when the
/// new defaults changed it to something else. All combinations sit side by side in one
/// tree (`/etc/OLD-LOCAL-NEW`), merged at once.
#[test]
fn every_combination() {
    let (root, xattrs) = (is_root(), user_xattrs());
    let all = [
        Absent, FileA, FileB, FileMode, FileOwner, FileXattr, Dir, DirMode, DirXattr, Link, LinkB,
        LinkOwner,
    ];
    let s = Setup::new();
    dir(&s.path("expect"), 0o755);
    let (mut carried, mut conflicts) = (Vec::new(), Vec::new());
    for old in all {
        for local in all {
            for new in all {
                if !runnable(&[old, local, new], root, xattrs) {
                    continue;
                }
                let name = format!("{old:?}-{local:?}-{new:?}");
                put(&s.path(&format!("old/{name}")), old);
                put(&s.path(&format!("local/{name}")), local);
                put(&s.path(&format!("new/{name}")), new);
                let expect = if old == local { new } else { local };
                put(&s.path(&format!("expect/{name}")), expect);
                if old != local {
                    carried.push(format!("/etc/{name}"));
                    if new != old && new != local {
                        conflicts.push(format!("/etc/{name}"));
                    }
                }
            }
        }
    }
    assert!(
        carried.len() >= 6 * 6 * 6,
        "{} combinations ran",
        carried.len()
    );
    let report = s.merge().unwrap();
    let mut got: Vec<_> = report.carried.iter().map(|c| c.path.clone()).collect();
    let mut got_conflicts: Vec<_> = report.conflicts.iter().map(|c| c.path.clone()).collect();
    got.sort();
    got_conflicts.sort();
    carried.sort();
    conflicts.sort();
    assert_eq!(got, carried);
    assert_eq!(got_conflicts, conflicts);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let (Some(Snap::Dir { entries: got, .. }), Some(Snap::Dir { entries: want, .. })) =
        (snap(&s.path("dest")), snap(&s.path("expect")))
    else {
        panic!("no dest");
    };
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, want) in &want {
        assert_eq!(&got[name], want, "{name}");
    }
}

pub(super) fn changes(report: &MergeReport) -> Vec<(&str, ChangeKind)> {
    report
        .carried
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect()
}

#[test]
fn nested_changes_merge_per_path() {
    let s = Setup::new();
    for side in ["old", "local", "new"] {
        dir(&s.path(&format!("{side}/a/b")), 0o755);
        file(&s.path(&format!("{side}/a/b/c.conf")), "1", 0o644);
        file(&s.path(&format!("{side}/a/b/d.conf")), "1", 0o644);
        file(&s.path(&format!("{side}/a/x")), "1", 0o644);
    }
    file(&s.path("local/a/b/c.conf"), "2", 0o644);
    fs::remove_file(s.path("local/a/b/d.conf")).unwrap();
    file(&s.path("local/a/new.conf"), "mine", 0o640);
    dir(&s.path("local/a/b/e/f"), 0o750);
    file(&s.path("local/a/b/e/f/g"), "deep", 0o600);
    symlink("../c.conf", s.path("local/a/b/e/l")).unwrap();
    file(&s.path("new/a/x"), "3", 0o644);
    file(&s.path("new/a/y"), "new", 0o644);

    let report = s.merge().unwrap();
    assert_eq!(
        changes(&report),
        [
            ("/etc/a/b/c.conf", ChangeKind::Modified),
            ("/etc/a/b/d.conf", ChangeKind::Deleted),
            ("/etc/a/b/e", ChangeKind::Added),
            ("/etc/a/new.conf", ChangeKind::Added),
        ]
    );
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert_eq!(fs::read(s.path("dest/a/b/c.conf")).unwrap(), b"2");
    assert!(!s.path("dest/a/b/d.conf").exists());
    assert_eq!(snap(&s.path("dest/a/b/e")), snap(&s.path("local/a/b/e")));
    assert_eq!(
        snap(&s.path("dest/a/new.conf")),
        snap(&s.path("local/a/new.conf"))
    );
    assert_eq!(fs::read(s.path("dest/a/x")).unwrap(), b"3");
    assert_eq!(fs::read(s.path("dest/a/y")).unwrap(), b"new");
}

#[test]
fn conflict_text_names_where_the_new_default_is() {
    let s = Setup::new();
    file(&s.path("old/f"), "1", 0o644);
    file(&s.path("local/f"), "2", 0o644);
    file(&s.path("new/f"), "3", 0o644);
    file(&s.path("old/gone"), "1", 0o644);
    file(&s.path("new/gone"), "3", 0o644);
    let report = s.merge().unwrap();
    let texts: Vec<_> = report
        .conflicts
        .iter()
        .map(|c| format!("{} {}: {}", c.path, c.local, c.resolution))
        .collect();
    assert_eq!(
        texts,
        [
            "/etc/f modified: kept your version; the new default is in /usr/etc/f",
            "/etc/gone deleted: kept it deleted; the new default is in /usr/etc/gone",
        ]
    );
}

/// A change below a directory the new defaults made a file: the directory comes back with
/// the local metadata, and both it and the change are reported.
#[test]
fn parent_dir_turned_file_is_recreated() {
    let s = Setup::new();
    for side in ["old", "local"] {
        dir(&s.path(&format!("{side}/a")), 0o750);
        file(&s.path(&format!("{side}/a/k")), "1", 0o644);
        file(&s.path(&format!("{side}/a/other")), "1", 0o644);
    }
    file(&s.path("local/a/k"), "2", 0o644);
    file(&s.path("new/a"), "now a file", 0o644);
    let report = s.merge().unwrap();
    let texts: Vec<_> = report
        .conflicts
        .iter()
        .map(|c| format!("{}: {}", c.path, c.resolution))
        .collect();
    assert_eq!(
        texts,
        [
            "/etc/a: kept your directory, which holds changes of yours; \
             the new default (a file) is in /usr/etc/a",
            "/etc/a/k: kept your version; the new defaults removed it",
        ]
    );
    // Only the changed entry comes back: `other` was a default the new defaults dropped.
    let names: Vec<_> = fs::read_dir(s.path("dest/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["k"]);
    assert_eq!(
        fs::metadata(s.path("dest/a")).unwrap().mode() & 0o7777,
        0o750
    );
}

#[test]
fn root_metadata_change_is_carried() {
    let s = Setup::new();
    fs::set_permissions(s.path("local"), fs::Permissions::from_mode(0o750)).unwrap();
    let report = s.merge().unwrap();
    assert_eq!(changes(&report), [("/etc", ChangeKind::Modified)]);
    assert_eq!(fs::metadata(s.path("dest")).unwrap().mode() & 0o7777, 0o750);
}

/// Merged files are real copies: the new defaults are hardlinks into the content store.
#[test]
fn files_are_copies_not_hardlinks() {
    let s = Setup::new();
    file(&s.path("store-object"), "shared", 0o644);
    fs::hard_link(s.path("store-object"), s.path("new/f")).unwrap();
    let report = s.merge().unwrap();
    assert_eq!(report, MergeReport::default());
    let (new, dest) = (
        fs::metadata(s.path("new/f")).unwrap(),
        fs::metadata(s.path("dest/f")).unwrap(),
    );
    assert_eq!(new.nlink(), 2);
    assert_eq!(dest.nlink(), 1);
    assert_ne!((new.dev(), new.ino()), (dest.dev(), dest.ino()));
    fs::write(s.path("dest/f"), "edited").unwrap();
    assert_eq!(fs::read(s.path("store-object")).unwrap(), b"shared");
}

#[test]
fn metadata_is_preserved() {
    let s = Setup::new();
    file(&s.path("new/suid"), "x", 0o4755);
    dir(&s.path("new/sticky"), 0o1777);
    file(&s.path("new/sticky/secret"), "s", 0o600);
    symlink("suid", s.path("new/link")).unwrap();
    if is_root() {
        chown(&s.path("new/suid"), 1234, 5678);
        chown(&s.path("new/sticky"), 42, 43);
        chown(&s.path("new/link"), 7, 8);
        // chown clears set-id bits; put them back.
        fs::set_permissions(s.path("new/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    if user_xattrs() {
        rustix::fs::setxattr(s.path("new/suid"), "user.a", b"1", XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(s.path("new/sticky"), "user.b", b"", XattrFlags::empty()).unwrap();
    }
    fs::set_permissions(s.path("new"), fs::Permissions::from_mode(0o751)).unwrap();
    s.merge().unwrap();
    assert_eq!(snap(&s.path("dest")), snap(&s.path("new")));
    assert_eq!(
        fs::metadata(s.path("dest/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn first_deployment_takes_the_new_defaults() {
    let s = Setup::new();
    file(&s.path("local/mine"), "1", 0o644);
    file(&s.path("new/f"), "1", 0o644);
    let report = merge(
        None,
        Some(&s.path("local")),
        &s.path("new"),
        &s.path("dest"),
    )
    .unwrap();
    assert_eq!(report, MergeReport::default());
    assert_eq!(snap(&s.path("dest")), snap(&s.path("new")));
    let report = merge(Some(&s.path("old")), None, &s.path("new"), &s.path("dest2")).unwrap();
    assert_eq!(report, MergeReport::default());
    assert_eq!(snap(&s.path("dest2")), snap(&s.path("new")));
}

#[test]
fn special_files_are_skipped() {
    let s = Setup::new();
    let mkfifo = |p: PathBuf| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap()
    };
    mkfifo(s.path("new/fifo"));
    mkfifo(s.path("local/mine"));
    dir(&s.path("local/d"), 0o755);
    mkfifo(s.path("local/d/pipe"));
    let report = s.merge().unwrap();
    let skipped: Vec<_> = report.skipped.iter().map(|(p, _)| p.as_str()).collect();
    // The new defaults are copied first, then the local changes are found and applied.
    assert_eq!(skipped, ["/etc/fifo", "/etc/mine", "/etc/d/pipe"]);
    assert!(
        report.skipped[0].1.starts_with("FIFO in /usr/etc"),
        "{report:?}"
    );
    assert_eq!(
        report.carried,
        [LocalChange {
            path: "/etc/d".into(),
            kind: ChangeKind::Added
        }]
    );
    assert_eq!(fs::read_dir(s.path("dest/d")).unwrap().count(), 0);
    assert!(!s.path("dest/fifo").exists() && !s.path("dest/mine").exists());
}

#[test]
fn existing_destination_is_refused_and_left_alone() {
    let s = Setup::new();
    dir(&s.path("dest"), 0o755);
    file(&s.path("dest/precious"), "1", 0o644);
    let err = s.merge().unwrap_err();
    assert!(
        matches!(err, Error::Io { ref path, .. } if path == &s.path("dest")),
        "{err}"
    );
    assert_eq!(fs::read(s.path("dest/precious")).unwrap(), b"1");
}

#[test]
fn too_deep_tree_is_refused_and_cleaned_up() {
    let s = Setup::new();
    let mut p = s.path("local");
    for _ in 0..300 {
        p.push("d");
    }
    fs::create_dir_all(&p).unwrap();
    let err = s.merge().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Invalid { .. }), "{text}");
    assert!(
        text.contains("deeper than 256") && text.contains("/local/d/d/"),
        "{text}"
    );
    assert!(!s.path("dest").exists());
}

/// An `/etc` of 1,000 files with 100 local changes; prints the time taken (the bench
/// measures it properly).
#[test]
fn thousand_files() {
    let s = Setup::new();
    for side in ["old", "local", "new"] {
        for d in 0..10 {
            dir(&s.path(&format!("{side}/d{d}")), 0o755);
            for f in 0..100 {
                file(
                    &s.path(&format!("{side}/d{d}/f{f}.conf")),
                    &format!("key = {f}\n"),
                    0o644,
                );
            }
        }
    }
    for f in 0..50 {
        file(&s.path(&format!("local/d3/f{f}.conf")), "changed\n", 0o644);
        file(
            &s.path(&format!("local/d4/added{f}.conf")),
            "added\n",
            0o644,
        );
        file(
            &s.path(&format!("new/d5/f{f}.conf")),
            "new default\n",
            0o644,
        );
    }
    let start = Instant::now();
    let report = s.merge().unwrap();
    eprintln!("etc merge of 1000 files: {:?}", start.elapsed());
    assert_eq!(report.carried.len(), 100);
    assert!(report.conflicts.is_empty());
}
