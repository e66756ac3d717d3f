//! What changed between two commits: every added, removed and modified path, with sizes.
//!
//! Like `ostree diff`, each changed path is listed: a directory that appears lists itself
//! and everything in it as added. Subtrees whose [`DirTreeId`] and [`DirMetaId`] are the
//! same on both sides are skipped without reading them, so the cost follows the size of
//! the change, not of the tree. A path whose type changes (file ↔ directory) is listed as
//! modified, and the directory side's contents as added or removed.
//!
//! ```no_run
//! # fn main() -> store::Result<()> {
//! let repo = store::Repo::open("repo")?;
//! let a = repo.resolve_rev("os/stable")?;
//! let b = repo.resolve_rev("os/testing")?;
//! for change in store::diff::diff(&repo, &a, &b)?.changes {
//!     println!("{} {}", change.kind.letter(), change.path);
//! }
//! # Ok(()) }
//! ```

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use crate::object::FileHeader;
use crate::repo::Repo;
use crate::walk::{join, Node, WalkOptions, Walker, MAX_DEPTH, MAX_ENTRIES};

/// How a path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// Only in the new commit.
    Added,
    /// Only in the old commit.
    Removed,
    /// In both, with different content, metadata or type.
    Modified,
}

impl ChangeKind {
    /// `A`, `D` or `M`, as `ostree diff` and `git diff --name-status` print.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Removed => 'D',
            ChangeKind::Modified => 'M',
        }
    }
}

/// What a path is on one side of the diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A directory.
    Dir {
        /// Its listing.
        tree: DirTreeId,
        /// Its metadata.
        meta: DirMetaId,
    },
    /// A regular file.
    File {
        /// The file object.
        id: FileId,
        /// Content length in bytes.
        size: u64,
    },
    /// A symlink.
    Symlink {
        /// The file object.
        id: FileId,
    },
}

impl Side {
    /// Bytes of content: a regular file's size, 0 otherwise.
    pub fn size(&self) -> u64 {
        match self {
            Side::File { size, .. } => *size,
            _ => 0,
        }
    }

    /// `dir`, `file` or `symlink`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Side::Dir { .. } => "dir",
            Side::File { .. } => "file",
            Side::Symlink { .. } => "symlink",
        }
    }

    fn of_file(id: FileId, header: &FileHeader) -> Side {
        if header.is_symlink() {
            Side::Symlink { id }
        } else {
            Side::File {
                id,
                size: header.size,
            }
        }
    }
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Path from the root, `/`-separated.
    pub path: String,
    /// Added, removed or modified.
    pub kind: ChangeKind,
    /// What it was in the old commit (`None` when added).
    pub old: Option<Side>,
    /// What it is in the new commit (`None` when removed).
    pub new: Option<Side>,
}

/// Totals over a [`Diff`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Paths added.
    pub added: u64,
    /// Paths removed.
    pub removed: u64,
    /// Paths modified.
    pub modified: u64,
    /// Content bytes of added files.
    pub added_bytes: u64,
    /// Content bytes of removed files.
    pub removed_bytes: u64,
    /// Content bytes of modified paths in the old commit.
    pub modified_old_bytes: u64,
    /// Content bytes of modified paths in the new commit.
    pub modified_new_bytes: u64,
}

/// Every change from one commit to another, in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// The changes, sorted by path (component by component).
    pub changes: Vec<Change>,
}

impl Diff {
    /// Counts and byte totals.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            let old = c.old.map_or(0, |s| s.size());
            let new = c.new.map_or(0, |s| s.size());
            match c.kind {
                ChangeKind::Added => {
                    s.added += 1;
                    s.added_bytes += new;
                }
                ChangeKind::Removed => {
                    s.removed += 1;
                    s.removed_bytes += old;
                }
                ChangeKind::Modified => {
                    s.modified += 1;
                    s.modified_old_bytes += old;
                    s.modified_new_bytes += new;
                }
            }
        }
        s
    }
}

/// A pair of directories at the same path that differ.
struct Pending {
    path: String,
    depth: usize,
    old: DirTreeId,
    new: DirTreeId,
}

/// One entry of a directory listing, files and subdirectories merged.
enum Item {
    File(FileId),
    Dir(DirTreeId, DirMetaId),
}

struct Differ<'r> {
    repo: &'r Repo,
    root: ObjectId,
    changes: Vec<Change>,
    visited: u64,
}

/// Compare commit `a` (old) with commit `b` (new).
pub fn diff(repo: &Repo, a: &CommitId, b: &CommitId) -> Result<Diff> {
    let ca = repo.read_commit(a)?;
    let cb = repo.read_commit(b)?;
    let mut d = Differ {
        repo,
        root: cb.root_tree.0,
        changes: Vec::new(),
        visited: 0,
    };
    if ca.root_meta != cb.root_meta {
        d.changes.push(Change {
            path: String::new(),
            kind: ChangeKind::Modified,
            old: Some(Side::Dir {
                tree: ca.root_tree,
                meta: ca.root_meta,
            }),
            new: Some(Side::Dir {
                tree: cb.root_tree,
                meta: cb.root_meta,
            }),
        });
    }
    let mut stack = Vec::new();
    if ca.root_tree != cb.root_tree {
        stack.push(Pending {
            path: String::new(),
            depth: 0,
            old: ca.root_tree,
            new: cb.root_tree,
        });
    }
    while let Some(p) = stack.pop() {
        d.compare(p, &mut stack)?;
    }
    let mut changes = d.changes;
    changes.sort_by(|x, y| path_order(&x.path, &y.path));
    Ok(Diff { changes })
}

/// Order paths component by component, so `a/b` sorts before `a-b` (as in a listing).
fn path_order(x: &str, y: &str) -> Ordering {
    x.split('/').cmp(y.split('/'))
}

fn listing(tree: &crate::object::DirTree) -> Vec<(&str, Item)> {
    let mut v: Vec<(&str, Item)> = tree
        .files
        .iter()
        .map(|(n, id)| (n.as_str(), Item::File(*id)))
        .chain(
            tree.dirs
                .iter()
                .map(|(n, t, m)| (n.as_str(), Item::Dir(*t, *m))),
        )
        .collect();
    v.sort_by(|x, y| x.0.cmp(y.0));
    v
}

impl Differ<'_> {
    fn count(&mut self, n: u64) -> Result<()> {
        self.visited += n;
        if self.visited > MAX_ENTRIES {
            return Err(Error::TreeLimit {
                tree: self.root,
                what: "entry count",
                limit: MAX_ENTRIES,
            });
        }
        Ok(())
    }

    fn file_side(&self, id: FileId) -> Result<Side> {
        let header = self.repo.read_file(&id)?.0;
        Ok(Side::of_file(id, &header))
    }

    fn push(&mut self, path: String, kind: ChangeKind, old: Option<Side>, new: Option<Side>) {
        self.changes.push(Change {
            path,
            kind,
            old,
            new,
        });
    }

    /// List a whole subtree (not its root, which the caller lists) as added or removed.
    fn subtree(
        &mut self,
        path: &str,
        tree: DirTreeId,
        meta: DirMetaId,
        kind: ChangeKind,
    ) -> Result<()> {
        let opts = WalkOptions {
            metadata: false,
            recursive: true,
            max_depth: MAX_DEPTH,
            max_entries: MAX_ENTRIES.saturating_sub(self.visited),
        };
        for entry in Walker::new(self.repo, tree, meta, path.to_owned(), opts).skip(1) {
            let entry = entry?;
            self.count(1)?;
            let side = match entry.node {
                Node::Dir { tree, meta_id, .. } => Side::Dir {
                    tree,
                    meta: meta_id,
                },
                Node::File { id, .. } => self.file_side(id)?,
            };
            let (old, new) = match kind {
                ChangeKind::Added => (None, Some(side)),
                _ => (Some(side), None),
            };
            self.push(entry.path, kind, old, new);
        }
        Ok(())
    }

    /// An entry only on one side: list it, and everything under it when a directory.
    fn one_side(&mut self, path: String, item: Item, kind: ChangeKind) -> Result<()> {
        let side = match item {
            Item::File(id) => self.file_side(id)?,
            Item::Dir(tree, meta) => Side::Dir { tree, meta },
        };
        let (old, new) = match kind {
            ChangeKind::Added => (None, Some(side)),
            _ => (Some(side), None),
        };
        self.push(path.clone(), kind, old, new);
        if let Item::Dir(tree, meta) = item {
            self.subtree(&path, tree, meta, kind)?;
        }
        Ok(())
    }

    fn compare(&mut self, p: Pending, stack: &mut Vec<Pending>) -> Result<()> {
        if p.depth >= MAX_DEPTH {
            return Err(Error::TreeLimit {
                tree: self.root,
                what: "depth",
                limit: MAX_DEPTH as u64,
            });
        }
        let ta = self.repo.read_dirtree(&p.old)?;
        let tb = self.repo.read_dirtree(&p.new)?;
        let (la, lb) = (listing(&ta), listing(&tb));
        self.count((la.len() + lb.len()) as u64)?;
        let depth = p.depth + 1;
        let (mut ia, mut ib) = (la.into_iter().peekable(), lb.into_iter().peekable());
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.0.cmp(y.0),
            };
            match order {
                Ordering::Less => {
                    let (name, item) = ia.next().expect("peeked");
                    self.one_side(join(&p.path, name), item, ChangeKind::Removed)?;
                }
                Ordering::Greater => {
                    let (name, item) = ib.next().expect("peeked");
                    self.one_side(join(&p.path, name), item, ChangeKind::Added)?;
                }
                Ordering::Equal => {
                    let (name, old) = ia.next().expect("peeked");
                    let (_, new) = ib.next().expect("peeked");
                    let path = join(&p.path, name);
                    match (old, new) {
                        (Item::File(x), Item::File(y)) => {
                            if x != y {
                                let (o, n) = (self.file_side(x)?, self.file_side(y)?);
                                self.push(path, ChangeKind::Modified, Some(o), Some(n));
                            }
                        }
                        (Item::Dir(ta, ma), Item::Dir(tb, mb)) => {
                            if ma != mb {
                                let o = Side::Dir { tree: ta, meta: ma };
                                let n = Side::Dir { tree: tb, meta: mb };
                                self.push(path.clone(), ChangeKind::Modified, Some(o), Some(n));
                            }
                            if ta != tb {
                                stack.push(Pending {
                                    path,
                                    depth,
                                    old: ta,
                                    new: tb,
                                });
                            }
                        }
                        (Item::File(x), Item::Dir(tb, mb)) => {
                            let o = self.file_side(x)?;
                            let n = Side::Dir { tree: tb, meta: mb };
                            self.push(path.clone(), ChangeKind::Modified, Some(o), Some(n));
                            self.subtree(&path, tb, mb, ChangeKind::Added)?;
                        }
                        (Item::Dir(ta, ma), Item::File(y)) => {
                            let o = Side::Dir { tree: ta, meta: ma };
                            let n = self.file_side(y)?;
                            self.push(path.clone(), ChangeKind::Modified, Some(o), Some(n));
                            self.subtree(&path, ta, ma, ChangeKind::Removed)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[allow(clippy::disallowed_methods)] // tests: paths into their own temp dirs are fine
#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectKind;
    use crate::walk::test_tree::{commit, dir, file, meta, repo, symlink};

    fn lines(d: &Diff) -> Vec<String> {
        d.changes
            .iter()
            .map(|c| {
                let size = |s: &Option<Side>| {
                    s.map_or("-".to_owned(), |s| {
                        format!("{}:{}", s.type_name(), s.size())
                    })
                };
                format!(
                    "{} {} {} {}",
                    c.kind.letter(),
                    c.path,
                    size(&c.old),
                    size(&c.new)
                )
            })
            .collect()
    }

    #[test]
    fn lists_added_removed_modified_and_type_changes() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let (one, two, three) = (file(&txn, b"1"), file(&txn, b"22"), file(&txn, b"333"));
        let link = symlink(&txn, "one");
        let shared = dir(&txn, &[("s", one)], &[]);
        let old_sub = dir(&txn, &[("gone", two), ("same", one)], &[]);
        let new_sub = dir(&txn, &[("fresh", three), ("same", one)], &[]);
        let a = dir(
            &txn,
            &[
                ("edit", one),
                ("kept", one),
                ("to-dir", two),
                ("link", link),
            ],
            &[
                ("shared", shared),
                ("sub", old_sub),
                ("to-file", shared),
                ("old-dir", shared),
            ],
        );
        let b = dir(
            &txn,
            &[
                ("edit", three),
                ("kept", one),
                ("to-file", one),
                ("link", link),
            ],
            &[
                ("shared", shared),
                ("sub", new_sub),
                ("to-dir", shared),
                ("new-dir", new_sub),
            ],
        );
        let (ca, cb) = (commit(&txn, a, None), commit(&txn, b, None));
        txn.commit().unwrap();

        let d = diff(&repo, &ca, &cb).unwrap();
        assert_eq!(
            lines(&d),
            [
                "M edit file:1 file:3",
                "A new-dir - dir:0",
                "A new-dir/fresh - file:3",
                "A new-dir/same - file:1",
                "D old-dir dir:0 -",
                "D old-dir/s file:1 -",
                "A sub/fresh - file:3",
                "D sub/gone file:2 -",
                "M to-dir file:2 dir:0",
                "A to-dir/s - file:1",
                "M to-file dir:0 file:1",
                "D to-file/s file:1 -",
            ]
        );
        let s = d.summary();
        assert_eq!((s.added, s.removed, s.modified), (5, 4, 3));
        assert_eq!((s.added_bytes, s.removed_bytes), (3 + 3 + 1 + 1, 1 + 2 + 1));
        assert_eq!((s.modified_old_bytes, s.modified_new_bytes), (1 + 2, 3 + 1));

        // The reverse diff swaps added and removed.
        let r = diff(&repo, &cb, &ca).unwrap().summary();
        assert_eq!((r.added, r.removed, r.modified), (4, 5, 3));
        assert!(diff(&repo, &ca, &ca).unwrap().changes.is_empty());
    }

    #[test]
    fn directory_metadata_changes_are_modifications() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let t = dir(&txn, &[], &[]);
        let a = dir(&txn, &[], &[("d", t)]);
        let m = meta(&txn, 0o700);
        let b = txn
            .write_dirtree(
                &crate::object::DirTree::new(
                    vec![],
                    vec![(crate::object::EntryName::new("d").unwrap(), t, m)],
                )
                .unwrap(),
            )
            .unwrap();
        let (ca, cb) = (commit(&txn, a, None), commit(&txn, b, None));
        txn.commit().unwrap();
        assert_eq!(lines(&diff(&repo, &ca, &cb).unwrap()), ["M d dir:0 dir:0"]);
    }

    #[test]
    fn identical_subtrees_are_never_read() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let f = file(&txn, b"x");
        let big = dir(&txn, &[("f", f)], &[]);
        let a = dir(&txn, &[("one", f)], &[("big", big)]);
        let b = dir(&txn, &[("two", f)], &[("big", big)]);
        let (ca, cb) = (commit(&txn, a, None), commit(&txn, b, None));
        txn.commit().unwrap();
        // Remove the shared subtree: a diff that read it would fail.
        let rel = repo.object_path(ObjectKind::DirTree, &big.0);
        std::fs::remove_file(repo.path().join(rel)).unwrap();
        assert_eq!(
            lines(&diff(&repo, &ca, &cb).unwrap()),
            ["D one file:1 -", "A two - file:1"]
        );
    }
}
