//! THREATS D9/D10: symlinks escaping the root in the running `/etc` or in the new
//! defaults. The merge must never read or write through them; a canary directory outside
//! and a marker name looked up in every directory above the merge prove nothing leaked.
#![allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::tests::{changes, dir, file, snap, Setup, Snap};
use super::ChangeKind;

/// Names of entries that must not appear anywhere outside the merge's destination.
const MARK: &str = "etc-merge-escape-canary-3f9c";

/// Directories an escaping symlink below `dest` could reach.
fn outside(s: &Setup) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/"), s.path("canary")];
    let mut p = s.tmp.path().to_path_buf();
    while let Some(parent) = p.parent() {
        v.push(p.clone());
        p = parent.to_path_buf();
    }
    v
}

fn assert_nothing_outside(s: &Setup, canary_before: &Option<Snap>) {
    assert_eq!(&snap(&s.path("canary")), canary_before, "canary changed");
    for d in outside(s) {
        assert!(!d.join(MARK).exists(), "{} written", d.join(MARK).display());
    }
}

fn canary(s: &Setup) -> Option<Snap> {
    dir(&s.path("canary"), 0o755);
    file(&s.path("canary/keep"), "keep", 0o644);
    snap(&s.path("canary"))
}

/// THREATS D9/D10: a local symlink `x -> /` (or relative, or to a directory outside)
/// replaces the new default directory `x/`; nothing of `x/` is written through it.
#[test]
fn local_symlink_escape_is_kept_as_symlink() {
    for x in ["x", "d/x"] {
        for target in ["/", "../../../../../../..", "CANARY"] {
            let s = Setup::new();
            let before = canary(&s);
            let target = target.replace("CANARY", &s.path("canary").to_string_lossy());
            for side in ["old", "local", "new"] {
                dir(&s.path(&format!("{side}/d")), 0o755);
            }
            for side in ["old", "new"] {
                dir(&s.path(&format!("{side}/{x}/sub")), 0o755);
                file(&s.path(&format!("{side}/{x}/keep")), "default", 0o644);
            }
            file(&s.path(&format!("new/{x}/{MARK}")), "new default", 0o644);
            file(
                &s.path(&format!("new/{x}/sub/{MARK}")),
                "new default",
                0o644,
            );
            symlink(&target, s.path(&format!("local/{x}"))).unwrap();

            let report = s.merge().unwrap();
            let got = fs::read_link(s.path(&format!("dest/{x}"))).unwrap();
            assert_eq!(got, Path::new(&target));
            let path = format!("/etc/{x}");
            assert_eq!(changes(&report), [(path.as_str(), ChangeKind::Modified)]);
            assert_eq!(report.conflicts.len(), 1, "{report:?}");
            assert_nothing_outside(&s, &before);
        }
    }
}

/// THREATS D9/D10: a new default symlink escaping the root, with local changes below the
/// path: the local directory comes back as a real directory, nothing goes through the link.
#[test]
fn new_default_symlink_escape_is_not_written_through() {
    for target in ["../canary", "CANARY", "/"] {
        let s = Setup::new();
        let before = canary(&s);
        let target = target.replace("CANARY", &s.path("canary").to_string_lossy());
        for side in ["old", "local"] {
            dir(&s.path(&format!("{side}/x")), 0o755);
            file(&s.path(&format!("{side}/x/keep")), "1", 0o644);
        }
        file(&s.path("local/x/keep"), "2", 0o644);
        file(&s.path(&format!("local/x/{MARK}")), "mine", 0o644);
        dir(&s.path("local/x/sub"), 0o700);
        file(&s.path(&format!("local/x/sub/{MARK}")), "mine", 0o644);
        symlink(&target, s.path("new/x")).unwrap();

        let report = s.merge().unwrap();
        assert_eq!(snap(&s.path("dest/x")), snap(&s.path("local/x")));
        let conflicts: Vec<_> = report.conflicts.iter().map(|c| c.path.as_str()).collect();
        assert!(conflicts.contains(&"/etc/x"), "{report:?}");
        assert_nothing_outside(&s, &before);
    }
}

/// A local deletion below a path the new defaults turned into an escaping symlink deletes
/// nothing through the link.
#[test]
fn deletion_below_new_default_symlink_removes_nothing_outside() {
    let s = Setup::new();
    let before = canary(&s);
    for side in ["old", "local"] {
        dir(&s.path(&format!("{side}/x")), 0o755);
    }
    file(&s.path("old/x/keep"), "1", 0o644);
    symlink(s.path("canary"), s.path("new/x")).unwrap();
    let report = s.merge().unwrap();
    assert_eq!(changes(&report), [("/etc/x/keep", ChangeKind::Deleted)]);
    assert_eq!(fs::read_link(s.path("dest/x")).unwrap(), s.path("canary"));
    assert_nothing_outside(&s, &before);
}

/// A local permission change of a directory the new defaults made an escaping symlink:
/// the canary's permissions stay.
#[test]
fn dir_mode_change_below_new_default_symlink() {
    let s = Setup::new();
    let before = canary(&s);
    dir(&s.path("old/x"), 0o755);
    dir(&s.path("local/x"), 0o700);
    file(&s.path("old/x/keep"), "1", 0o644);
    file(&s.path("local/x/keep"), "1", 0o644);
    symlink(s.path("canary"), s.path("new/x")).unwrap();
    let report = s.merge().unwrap();
    assert_eq!(snap(&s.path("dest/x")), snap(&s.path("local/x")));
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_nothing_outside(&s, &before);
}

/// A local directory added where the new defaults put an escaping symlink replaces the
/// symlink; its files land in the merge, not at the symlink's target.
#[test]
fn added_dir_over_new_default_symlink() {
    let s = Setup::new();
    let before = canary(&s);
    dir(&s.path("local/x/sub"), 0o755);
    file(&s.path(&format!("local/x/{MARK}")), "mine", 0o644);
    file(&s.path(&format!("local/x/sub/{MARK}")), "mine", 0o644);
    symlink(s.path("canary"), s.path("new/x")).unwrap();
    let report = s.merge().unwrap();
    assert_eq!(snap(&s.path("dest/x")), snap(&s.path("local/x")));
    assert_eq!(changes(&report), [("/etc/x", ChangeKind::Added)]);
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert_nothing_outside(&s, &before);
}

/// An escaping symlink that is the same in the old defaults and the running `/etc` is an
/// unchanged path: the merge neither follows it nor reports it.
#[test]
fn unchanged_escaping_symlink_is_not_followed() {
    let s = Setup::new();
    let before = canary(&s);
    for side in ["old", "local"] {
        symlink(s.path("canary"), s.path(&format!("{side}/x"))).unwrap();
    }
    dir(&s.path("new/x"), 0o755);
    file(&s.path(&format!("new/x/{MARK}")), "default", 0o644);
    let report = s.merge().unwrap();
    assert_eq!(report.carried, []);
    assert_eq!(snap(&s.path("dest")), snap(&s.path("new")));
    assert!(s.path(&format!("dest/x/{MARK}")).is_file());
    assert_nothing_outside(&s, &before);
}
