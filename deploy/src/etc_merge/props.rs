//! Property test of the merge rules on random nested trees: the local and the new `/etc`
//! are random mutations of the old defaults (files, symlinks escaping the root,
//! directories, type changes), merged, and checked against what the policy promises
//! path by path.
#![allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::tests::{snap, tempdir, Snap};
use super::{merge, ChangeKind};

/// One entry of a generated tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    /// Content byte, and whether the mode is 0600 instead of 0644.
    F(u8, bool),
    /// Index into [`TARGETS`].
    L(usize),
    /// Whether the mode is 0700 instead of 0755, and the entries.
    D(bool, Tree),
}

type Tree = BTreeMap<&'static str, E>;

const NAMES: [&str; 3] = ["a", "b", "c"];
const TARGETS: [&str; 4] = ["a", "/", "../../../..", "b/c"];

fn leaf(b: u8) -> E {
    match b % 5 {
        0 | 1 => E::F(b / 5 % 2, b / 10 % 2 == 1),
        2 => E::L(usize::from(b / 5) % TARGETS.len()),
        _ => E::D(b / 5 % 2 == 1, Tree::new()),
    }
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let leaf = any::<u8>().prop_map(leaf);
    let entry = leaf.prop_recursive(3, 24, 3, |inner| {
        (
            any::<bool>(),
            prop::collection::btree_map(prop::sample::select(&NAMES[..]), inner, 0..3),
        )
            .prop_map(|(m, t)| E::D(m, t))
    });
    prop::collection::btree_map(prop::sample::select(&NAMES[..]), entry, 0..4)
}

/// `tree` with changes driven by `ops`: per name, keep (recursing into directories),
/// delete, replace, or add.
fn mutate(tree: &Tree, ops: &mut impl Iterator<Item = u8>) -> Tree {
    let mut out = Tree::new();
    for name in NAMES {
        let op = ops.next().unwrap_or(0);
        let e = match (tree.get(name), op % 10) {
            (None, 9) => Some(leaf(op / 10)),
            (None, _) => None,
            (Some(_), 7) => None,
            (Some(_), 8) => Some(leaf(op / 10)),
            (Some(E::D(m, t)), 9) => Some(E::D(!m, mutate(t, ops))),
            (Some(E::D(m, t)), _) => Some(E::D(*m, mutate(t, ops))),
            (Some(e), _) => Some(e.clone()),
        };
        if let Some(e) = e {
            out.insert(name, e);
        }
    }
    out
}

fn write(dir: &Path, tree: &Tree) {
    for (name, e) in tree {
        let p = dir.join(name);
        match e {
            E::F(c, m) => {
                fs::write(&p, [*c]).unwrap();
                let mode = if *m { 0o600 } else { 0o644 };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
            E::L(t) => symlink(TARGETS[*t], &p).unwrap(),
            E::D(m, t) => {
                fs::create_dir(&p).unwrap();
                write(&p, t);
                let mode = if *m { 0o700 } else { 0o755 };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

/// The entry at `rel` below `root`, reached through real directories only.
fn at(root: &Path, rel: &Path) -> Option<Snap> {
    let mut p = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        p.push(c);
        if i + 1 < n && !fs::symlink_metadata(&p).ok()?.is_dir() {
            return None;
        }
    }
    snap(&p)
}

/// Every path of a tree on disk, not descending through symlinks.
fn paths(root: &Path, rel: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in rd {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            paths(root, &r, out);
        }
        out.insert(r);
    }
}

fn check(old: &Tree, local: &Tree, new: &Tree) {
    let t = tempdir();
    let root = t.path();
    for (name, tree) in [("old", old), ("local", local), ("new", new)] {
        fs::create_dir(root.join(name)).unwrap();
        write(&root.join(name), tree);
    }
    let (o, l, n, d) = (
        root.join("old"),
        root.join("local"),
        root.join("new"),
        root.join("dest"),
    );
    let report = merge(Some(&o), Some(&l), &n, &d).unwrap();

    let rel = |p: &str| PathBuf::from(p.strip_prefix("/etc/").unwrap_or(""));
    let carried: Vec<_> = report
        .carried
        .iter()
        .map(|c| (rel(&c.path), c.kind))
        .collect();
    for (p, kind) in &carried {
        match kind {
            ChangeKind::Deleted => assert_eq!(at(&d, p), None, "{p:?} still there"),
            // Added and replaced entries are the local ones; a directory whose metadata
            // changed may hold entries of the new defaults.
            _ => {
                let (got, want) = (at(&d, p), at(&l, p));
                match (&got, &want) {
                    (Some(Snap::Dir { mode: a, .. }), Some(Snap::Dir { mode: b, .. })) => {
                        assert_eq!(a, b, "{p:?}")
                    }
                    _ => assert_eq!(got, want, "{p:?}"),
                }
            }
        }
    }
    // A path the user did not touch, below no carried change, is the new default.
    let mut all = BTreeSet::new();
    for r in [&o, &l, &n, &d] {
        paths(r, Path::new(""), &mut all);
    }
    for p in &all {
        let touched = carried
            .iter()
            .any(|(c, _)| c.starts_with(p) || p.starts_with(c));
        if !touched {
            assert_eq!(at(&o, p), at(&l, p), "{p:?} changed but not reported");
            assert_eq!(at(&d, p), at(&n, p), "{p:?} is not the new default");
        }
    }
    for c in &report.conflicts {
        let p = rel(&c.path);
        assert!(carried.iter().any(|(q, _)| q.starts_with(&p)), "{c:?}");
    }
    // Real copies only, and nothing written beside the merge.
    for p in &all {
        if let Ok(md) = fs::symlink_metadata(d.join(p)) {
            assert!(!md.is_file() || md.nlink() == 1, "{p:?}");
        }
    }
    let names: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merge_keeps_local_changes_and_new_defaults(
        old in arb_tree(),
        local_ops in prop::collection::vec(any::<u8>(), 0..40),
        new_ops in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let local = mutate(&old, &mut local_ops.into_iter());
        let new = mutate(&old, &mut new_ops.into_iter());
        check(&old, &local, &new);
    }
}
