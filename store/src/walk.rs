//! Walking a commit's tree: an iterative depth-first [`Walker`] and [`resolve_path`].
//!
//! The walk never recurses, so a deep tree cannot overflow the stack, and it is bounded:
//! deeper than [`MAX_DEPTH`] levels or more than [`MAX_ENTRIES`] entries is a
//! [`Error::TreeLimit`]. Content addressing rules out cycles, but not a small dirtree that
//! names the same subtree a thousand times at each of twenty levels; the entry budget stops
//! that.
//!
//! Entries come in path order: a directory, then its children sorted by name (files and
//! subdirectories merged), each subdirectory followed by its own children. Paths are
//! relative to the commit root and `/`-separated (`usr/bin/ls`); the root itself is `""`.
//!
//! File headers cost a read of the file object (an `open` and `fstat` in a bare
//! repository), so they are only loaded with [`WalkOptions::metadata`]; otherwise
//! [`Entry::header`] loads one on demand.
//!
//! ```no_run
//! # fn main() -> store::Result<()> {
//! use store::walk::{Walker, WalkOptions};
//! let repo = store::Repo::open("repo")?;
//! let commit = repo.resolve_rev("os/stable")?;
//! for entry in Walker::commit(&repo, &commit, WalkOptions::default())? {
//!     println!("{}", entry?.path);
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use crate::object::{DirMeta, DirTree, FileHeader};
use crate::repo::Repo;

/// Deepest directory nesting a walk accepts (the root is depth 0).
pub const MAX_DEPTH: usize = 256;
/// Most entries one walk yields.
pub const MAX_ENTRIES: u64 = 10_000_000;

/// How a walk behaves.
#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// Load each file's [`FileHeader`] and each directory's [`DirMeta`] as the walk goes.
    pub metadata: bool,
    /// Descend into subdirectories. When false, only the start and its direct children
    /// are yielded.
    pub recursive: bool,
    /// Fail with [`Error::TreeLimit`] below this depth.
    pub max_depth: usize,
    /// Fail with [`Error::TreeLimit`] after this many entries.
    pub max_entries: u64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            metadata: false,
            recursive: true,
            max_depth: MAX_DEPTH,
            max_entries: MAX_ENTRIES,
        }
    }
}

/// What an entry is, with its ids and (when loaded) its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir {
        /// Its listing.
        tree: DirTreeId,
        /// Its metadata's id.
        meta_id: DirMetaId,
        /// Its metadata, when loaded.
        meta: Option<DirMeta>,
    },
    /// A regular file or a symlink.
    File {
        /// The file object.
        id: FileId,
        /// Its header, when loaded.
        header: Option<FileHeader>,
    },
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path from the commit root, `/`-separated; `""` for the root.
    pub path: String,
    /// Number of components in `path`.
    pub depth: usize,
    /// What it is.
    pub node: Node,
}

impl Entry {
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.node, Node::Dir { .. })
    }

    /// A file's header: the loaded one, or read from the repository now.
    /// `None` for a directory.
    pub fn header(&self, repo: &Repo) -> Result<Option<FileHeader>> {
        match &self.node {
            Node::Dir { .. } => Ok(None),
            Node::File {
                header: Some(h), ..
            } => Ok(Some(h.clone())),
            Node::File { id, header: None } => Ok(Some(repo.read_file(id)?.0)),
        }
    }

    /// A directory's metadata: the loaded one, or read from the repository now.
    /// `None` for a file.
    pub fn dir_meta(&self, repo: &Repo) -> Result<Option<DirMeta>> {
        match &self.node {
            Node::File { .. } => Ok(None),
            Node::Dir { meta: Some(m), .. } => Ok(Some(m.clone())),
            Node::Dir {
                meta_id,
                meta: None,
                ..
            } => Ok(Some(repo.read_dirmeta(meta_id)?)),
        }
    }
}

/// One open directory on the walk's stack.
struct Frame {
    path: String,
    depth: usize,
    tree: DirTree,
    next_file: usize,
    next_dir: usize,
}

enum Child {
    File(String, FileId),
    Dir(String, DirTreeId, DirMetaId),
}

impl Frame {
    /// The next child in name order, merging the file and directory lists.
    fn next_child(&mut self) -> Option<Child> {
        let f = self.tree.files.get(self.next_file);
        let d = self.tree.dirs.get(self.next_dir);
        match (f, d) {
            (Some(f), Some(d)) if f.0 < d.0 => {
                self.next_file += 1;
                Some(Child::File(f.0.to_string(), f.1))
            }
            (Some(f), None) => {
                self.next_file += 1;
                Some(Child::File(f.0.to_string(), f.1))
            }
            (_, Some(d)) => {
                self.next_dir += 1;
                Some(Child::Dir(d.0.to_string(), d.1, d.2))
            }
            (None, None) => None,
        }
    }
}

/// Join a directory path and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// An iterative depth-first walk over a tree. Yields `Result<Entry>`; after the first
/// error it yields nothing more.
pub struct Walker<'r> {
    repo: &'r Repo,
    opts: WalkOptions,
    start: ObjectId,
    pending: Option<Entry>,
    stack: Vec<Frame>,
    yielded: u64,
    meta_cache: HashMap<DirMetaId, DirMeta>,
    done: bool,
}

impl<'r> Walker<'r> {
    /// Walk a commit's whole tree, starting with the root (path `""`).
    pub fn commit(repo: &'r Repo, commit: &CommitId, opts: WalkOptions) -> Result<Self> {
        let c = repo.read_commit(commit)?;
        Ok(Self::new(
            repo,
            c.root_tree,
            c.root_meta,
            String::new(),
            opts,
        ))
    }

    /// Walk the directory `tree` found at `path` (which names its depth).
    pub fn new(
        repo: &'r Repo,
        tree: DirTreeId,
        meta: DirMetaId,
        path: String,
        opts: WalkOptions,
    ) -> Self {
        let depth = if path.is_empty() {
            0
        } else {
            path.split('/').count()
        };
        Self::from_entry(
            repo,
            Entry {
                path,
                depth,
                node: Node::Dir {
                    tree,
                    meta_id: meta,
                    meta: None,
                },
            },
            opts,
        )
    }

    /// Walk from an entry (as [`resolve_path`] returns). A file entry yields only itself.
    pub fn from_entry(repo: &'r Repo, entry: Entry, opts: WalkOptions) -> Self {
        let start = match &entry.node {
            Node::Dir { tree, .. } => tree.0,
            Node::File { id, .. } => id.0,
        };
        Walker {
            repo,
            opts,
            start,
            pending: Some(entry),
            stack: Vec::new(),
            yielded: 0,
            meta_cache: HashMap::new(),
            done: false,
        }
    }

    fn limit(&self, what: &'static str, limit: u64) -> Error {
        Error::TreeLimit {
            tree: self.start,
            what,
            limit,
        }
    }

    fn load_meta(&mut self, id: &DirMetaId) -> Result<DirMeta> {
        if let Some(m) = self.meta_cache.get(id) {
            return Ok(m.clone());
        }
        let m = self.repo.read_dirmeta(id)?;
        self.meta_cache.insert(*id, m.clone());
        Ok(m)
    }

    /// Fill in metadata, open a directory's listing, and count the entry.
    fn visit(&mut self, mut entry: Entry, is_start: bool) -> Result<Entry> {
        self.yielded += 1;
        if self.yielded > self.opts.max_entries {
            return Err(self.limit("entry count", self.opts.max_entries));
        }
        if entry.depth > self.opts.max_depth {
            return Err(self.limit("depth", self.opts.max_depth as u64));
        }
        match &entry.node {
            Node::File { id, header } => {
                if self.opts.metadata && header.is_none() {
                    let id = *id;
                    let h = self.repo.read_file(&id)?.0;
                    entry.node = Node::File {
                        id,
                        header: Some(h),
                    };
                }
            }
            Node::Dir {
                tree,
                meta_id,
                meta,
            } => {
                let (tree, meta_id) = (*tree, *meta_id);
                if self.opts.metadata && meta.is_none() {
                    let m = self.load_meta(&meta_id)?;
                    entry.node = Node::Dir {
                        tree,
                        meta_id,
                        meta: Some(m),
                    };
                }
                self.push(tree, &entry, is_start)?;
            }
        }
        Ok(entry)
    }

    fn push(&mut self, tree: DirTreeId, entry: &Entry, is_start: bool) -> Result<()> {
        if is_start || self.opts.recursive {
            self.stack.push(Frame {
                path: entry.path.clone(),
                depth: entry.depth,
                tree: self.repo.read_dirtree(&tree)?,
                next_file: 0,
                next_dir: 0,
            });
        }
        Ok(())
    }

    fn step(&mut self) -> Option<Result<Entry>> {
        if let Some(start) = self.pending.take() {
            return Some(self.visit(start, true));
        }
        loop {
            let frame = self.stack.last_mut()?;
            let Some(child) = frame.next_child() else {
                self.stack.pop();
                continue;
            };
            let depth = frame.depth + 1;
            let entry = match child {
                Child::File(name, id) => Entry {
                    path: join(&frame.path, &name),
                    depth,
                    node: Node::File { id, header: None },
                },
                Child::Dir(name, tree, meta_id) => Entry {
                    path: join(&frame.path, &name),
                    depth,
                    node: Node::Dir {
                        tree,
                        meta_id,
                        meta: None,
                    },
                },
            };
            return Some(self.visit(entry, false));
        }
    }
}

impl Iterator for Walker<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if matches!(item, None | Some(Err(_))) {
            self.done = true;
            self.stack.clear();
        }
        item
    }
}

/// Find the entry at `path` in a commit's tree. Leading, trailing and doubled `/` are
/// ignored; `""` and `"/"` name the root. `.` and `..` are refused. The entry's metadata
/// (file header or dirmeta) is loaded.
pub fn resolve_path(repo: &Repo, commit: &CommitId, path: &str) -> Result<Entry> {
    let c = repo.read_commit(commit)?;
    let not_found = |reason: String| Error::PathNotFound {
        commit: commit.0,
        path: path.to_owned(),
        reason,
    };
    let mut cur_path = String::new();
    let mut depth = 0;
    let mut node = Node::Dir {
        tree: c.root_tree,
        meta_id: c.root_meta,
        meta: None,
    };
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for (i, &comp) in comps.iter().enumerate() {
        if comp == "." || comp == ".." {
            return Err(Error::invalid(
                format!("path '{path}'"),
                "'.' and '..' are not allowed",
            ));
        }
        let Node::Dir { tree, .. } = &node else {
            return Err(not_found(format!(
                "'{cur_path}' is a file, not a directory"
            )));
        };
        let listing = repo.read_dirtree(tree)?;
        let next = join(&cur_path, comp);
        if let Ok(j) = listing.dirs.binary_search_by(|d| d.0.as_str().cmp(comp)) {
            let (_, tree, meta_id) = &listing.dirs[j];
            node = Node::Dir {
                tree: *tree,
                meta_id: *meta_id,
                meta: None,
            };
        } else if let Ok(j) = listing.files.binary_search_by(|f| f.0.as_str().cmp(comp)) {
            node = Node::File {
                id: listing.files[j].1,
                header: None,
            };
        } else {
            return Err(not_found(if i + 1 == comps.len() {
                "no such file or directory".to_owned()
            } else {
                format!("'{next}' does not exist")
            }));
        }
        cur_path = next;
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(Error::TreeLimit {
                tree: c.root_tree.0,
                what: "depth",
                limit: MAX_DEPTH as u64,
            });
        }
    }
    match &mut node {
        Node::Dir { meta_id, meta, .. } => *meta = Some(repo.read_dirmeta(meta_id)?),
        Node::File { id, header } => *header = Some(repo.read_file(id)?.0),
    }
    Ok(Entry {
        path: cur_path,
        depth,
        node,
    })
}

/// Check that no directory below `root` lies deeper than [`MAX_DEPTH`] levels (the root is
/// level 0): the one depth limit that commit, checkout, fsck, publish and pull all apply
/// (docs/format.md). `subdirs` lists a dirtree's subdirectories, or `None` when it is not
/// available (missing objects are reported by whoever walks the tree for content).
///
/// Each unique dirtree is listed once and its height computed bottom-up, so a small tree
/// that names the same subtree many times costs one visit per object; the explicit stack
/// never holds more than `MAX_DEPTH + 1` frames, so a hostile chain cannot grow it.
pub fn check_depth(
    root: DirTreeId,
    subdirs: &mut dyn FnMut(&DirTreeId) -> Result<Option<Vec<DirTreeId>>>,
) -> Result<()> {
    let too_deep = || Error::TreeLimit {
        tree: root.0,
        what: "depth",
        limit: MAX_DEPTH as u64,
    };
    // Levels of directories below each finished dirtree.
    let mut height: HashMap<DirTreeId, usize> = HashMap::new();
    // (dirtree, its subdirectories, next one to look at, tallest so far)
    let mut stack: Vec<(DirTreeId, Vec<DirTreeId>, usize, usize)> = Vec::new();
    stack.push((root, subdirs(&root)?.unwrap_or_default(), 0, 0));
    while let Some(top) = stack.last_mut() {
        if let Some(&child) = top.1.get(top.2) {
            top.2 += 1;
            if let Some(&h) = height.get(&child) {
                top.3 = top.3.max(h + 1);
                // The frame at stack index i is at level i; its child's subtree ends at
                // level i + 1 + h.
                if stack.len() + h > MAX_DEPTH {
                    return Err(too_deep());
                }
                continue;
            }
            // Pushing would put a directory at level stack.len().
            if stack.len() > MAX_DEPTH {
                return Err(too_deep());
            }
            let below = subdirs(&child)?.unwrap_or_default();
            stack.push((child, below, 0, 0));
            continue;
        }
        let (id, _, _, h) = stack.pop().expect("non-empty");
        height.insert(id, h);
        if let Some(parent) = stack.last_mut() {
            parent.3 = parent.3.max(h + 1);
        }
    }
    Ok(())
}

/// Building small trees directly from objects, for the tests of this module and of
/// [`crate::diff`].
#[cfg(test)]
pub(crate) mod test_tree {
    use crate::id::{CommitId, DirMetaId, DirTreeId, FileId};
    use crate::object::{Commit, DirMeta, DirTree, EntryName, FileHeader, Xattrs};
    use crate::repo::{Repo, RepoMode, Transaction};

    /// A fresh archive repository in a temp dir.
    pub fn repo() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path().join("repo"), RepoMode::Archive).unwrap();
        (dir, repo)
    }

    /// A regular file (mode 0644, root-owned).
    pub fn file(txn: &Transaction<'_>, content: &[u8]) -> FileId {
        let h = FileHeader::regular(0o644, 0, 0, content.len() as u64, Xattrs::empty()).unwrap();
        txn.write_file(&h, &mut &content[..]).unwrap()
    }

    /// A symlink.
    pub fn symlink(txn: &Transaction<'_>, target: &str) -> FileId {
        let h = FileHeader::symlink(target.as_bytes().to_vec(), 0, 0, Xattrs::empty()).unwrap();
        txn.write_file(&h, &mut std::io::empty()).unwrap()
    }

    /// Directory metadata with these permission bits.
    pub fn meta(txn: &Transaction<'_>, perm: u32) -> DirMetaId {
        txn.write_dirmeta(&DirMeta::new(perm, 0, 0, Xattrs::empty()).unwrap())
            .unwrap()
    }

    /// A dirtree; every subdirectory gets mode 0755.
    pub fn dir(
        txn: &Transaction<'_>,
        files: &[(&str, FileId)],
        dirs: &[(&str, DirTreeId)],
    ) -> DirTreeId {
        let m = meta(txn, 0o755);
        let files = files
            .iter()
            .map(|(n, id)| (EntryName::new(*n).unwrap(), *id))
            .collect();
        let dirs = dirs
            .iter()
            .map(|(n, t)| (EntryName::new(*n).unwrap(), *t, m))
            .collect();
        txn.write_dirtree(&DirTree::new(files, dirs).unwrap())
            .unwrap()
    }

    /// A commit of `root` (root mode 0755).
    pub fn commit(txn: &Transaction<'_>, root: DirTreeId, parent: Option<CommitId>) -> CommitId {
        let c = Commit {
            parent,
            timestamp: 0,
            subject: String::new(),
            body: String::new(),
            metadata: Vec::new(),
            root_tree: root,
            root_meta: meta(txn, 0o755),
        };
        txn.write_commit(&c).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_tree::{commit, dir, file, repo, symlink};
    use super::*;

    fn paths(w: Walker<'_>) -> Vec<String> {
        w.map(|e| e.unwrap().path).collect()
    }

    #[test]
    fn walks_in_path_order_with_files_and_dirs_merged() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let z = file(&txn, b"z");
        let a = dir(&txn, &[("z", z)], &[]);
        let root = dir(
            &txn,
            &[("a-x", z), ("b", z), ("l", symlink(&txn, "b"))],
            &[("a", a), ("c", a)],
        );
        let c = commit(&txn, root, None);
        txn.commit().unwrap();
        let w = Walker::commit(&repo, &c, WalkOptions::default()).unwrap();
        assert_eq!(paths(w), ["", "a", "a/z", "a-x", "b", "c", "c/z", "l"]);

        let flat = WalkOptions {
            recursive: false,
            ..Default::default()
        };
        assert_eq!(
            paths(Walker::commit(&repo, &c, flat).unwrap()),
            ["", "a", "a-x", "b", "c", "l"]
        );

        let with_meta = WalkOptions {
            metadata: true,
            ..Default::default()
        };
        for e in Walker::commit(&repo, &c, with_meta).unwrap() {
            match e.unwrap().node {
                Node::Dir { meta, .. } => assert_eq!(meta.unwrap().mode & 0o777, 0o755),
                Node::File { header, .. } => assert!(header.is_some()),
            }
        }
    }

    #[test]
    fn resolve_path_finds_files_and_dirs_and_explains_misses() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let f = file(&txn, b"hello");
        let bin = dir(&txn, &[("ls", f)], &[]);
        let usr = dir(&txn, &[], &[("bin", bin)]);
        let root = dir(&txn, &[], &[("usr", usr)]);
        let c = commit(&txn, root, None);
        txn.commit().unwrap();

        let e = resolve_path(&repo, &c, "/usr//bin/ls").unwrap();
        assert_eq!((e.path.as_str(), e.depth), ("usr/bin/ls", 3));
        assert_eq!(e.header(&repo).unwrap().unwrap().size, 5);
        let e = resolve_path(&repo, &c, "usr/bin/").unwrap();
        assert!(matches!(e.node, Node::Dir { tree, meta: Some(_), .. } if tree == bin));
        assert_eq!(resolve_path(&repo, &c, "/").unwrap().path, "");

        let err = resolve_path(&repo, &c, "usr/nope/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'usr/nope' does not exist"), "{err}");
        let err = resolve_path(&repo, &c, "usr/bin/ls/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'usr/bin/ls' is a file"), "{err}");
        assert!(resolve_path(&repo, &c, "usr/../usr").is_err());
    }

    #[test]
    fn a_dag_bomb_hits_the_entry_budget() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let f = file(&txn, b"x");
        let mut t = dir(&txn, &[("f", f)], &[]);
        let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        for _ in 0..5 {
            let dirs: Vec<(&str, DirTreeId)> = names.iter().map(|n| (n.as_str(), t)).collect();
            t = dir(&txn, &[], &dirs);
        }
        let c = commit(&txn, t, None);
        txn.commit().unwrap();
        let opts = WalkOptions {
            max_entries: 10_000,
            ..Default::default()
        };
        let last = Walker::commit(&repo, &c, opts).unwrap().last().unwrap();
        assert!(
            matches!(
                last,
                Err(Error::TreeLimit {
                    what: "entry count",
                    ..
                })
            ),
            "{last:?}"
        );
    }

    #[test]
    fn a_too_deep_tree_is_refused() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        let mut t = dir(&txn, &[], &[]);
        for _ in 0..MAX_DEPTH + 1 {
            t = dir(&txn, &[], &[("d", t)]);
        }
        let c = commit(&txn, t, None);
        txn.commit().unwrap();
        let results: Vec<_> = Walker::commit(&repo, &c, WalkOptions::default())
            .unwrap()
            .collect();
        assert_eq!(
            results.len(),
            MAX_DEPTH + 2,
            "root, {MAX_DEPTH} levels, then the error"
        );
        assert!(matches!(
            results.last(),
            Some(Err(Error::TreeLimit { what: "depth", .. }))
        ));
        let subdirs = |t: &DirTreeId| -> Result<Option<Vec<DirTreeId>>> {
            Ok(Some(
                repo.read_dirtree(t)?.dirs.iter().map(|d| d.1).collect(),
            ))
        };
        let root = repo.read_commit(&c).unwrap().root_tree;
        assert!(matches!(
            check_depth(root, &mut { subdirs }),
            Err(Error::TreeLimit { what: "depth", .. })
        ));
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(matches!(
            resolve_path(&repo, &c, &deep),
            Err(Error::TreeLimit { what: "depth", .. })
        ));
    }

    #[test]
    fn depth_is_checked_once_per_tree_and_exactly_at_the_limit() {
        let (_d, repo) = repo();
        let txn = repo.begin().unwrap();
        // A chain of MAX_DEPTH - 1 levels, then one tree naming it twice: MAX_DEPTH levels,
        // the limit itself, is accepted; one more level is not.
        let mut t = dir(&txn, &[], &[]);
        for _ in 0..MAX_DEPTH - 1 {
            t = dir(&txn, &[], &[("d", t)]);
        }
        let at_limit = dir(&txn, &[], &[("a", t), ("b", t)]);
        let over = dir(&txn, &[], &[("x", at_limit)]);
        txn.commit().unwrap();
        let mut listed = 0;
        let mut subdirs = |t: &DirTreeId| -> Result<Option<Vec<DirTreeId>>> {
            listed += 1;
            Ok(Some(
                repo.read_dirtree(t)?.dirs.iter().map(|d| d.1).collect(),
            ))
        };
        check_depth(at_limit, &mut subdirs).unwrap();
        assert!(matches!(
            check_depth(over, &mut subdirs),
            Err(Error::TreeLimit { what: "depth", .. })
        ));
        assert!(listed <= 2 * (MAX_DEPTH + 2), "{listed} listings");
    }
}
