//! Checking a tree before anything is written. Every dirtree and dirmeta of the checkout
//! is read (and so verified) once, and the tree's expanded size, depth and longest path
//! are computed per unique dirtree, bottom-up, so a small hostile tree that names the
//! same subtree twice at each of thirty levels is refused after reading thirty objects,
//! not two billion entries. The walk is iterative with a bounded stack.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{DirMeta, DirTree};
use crate::repo::Repo;
use crate::walk::{MAX_DEPTH, MAX_ENTRIES};

/// Longest path accepted inside a checkout, counted from its root with a leading `/`
/// (PATH_MAX - 1), so every path of the tree still works once it is booted as `/`.
pub const MAX_PATH: u64 = 4095;

/// What one unique dirtree expands to.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Summary {
    /// Entries below it, all levels, counting a shared subtree once per place it appears.
    pub entries: u64,
    /// Levels of directories below it (0 for a directory without subdirectories).
    pub depth: u64,
    /// Length of its longest relative path (`a/b/c`), 0 when empty.
    pub path_len: u64,
}

/// What gets checked out at the destination.
pub(super) enum Root {
    /// A directory: its listing and metadata.
    Dir(DirTreeId, DirMetaId),
    /// A single file (a `--subpath` naming a file).
    File(FileId),
}

/// A checked tree: every dirtree and dirmeta it uses, decoded.
pub(super) struct Plan {
    pub root: Root,
    pub trees: HashMap<DirTreeId, (Arc<DirTree>, Summary)>,
    pub metas: HashMap<DirMetaId, DirMeta>,
}

impl Plan {
    /// A dirtree of the plan (all were loaded while checking).
    pub fn tree(&self, id: &DirTreeId) -> &Arc<DirTree> {
        &self.trees[id].0
    }
}

/// One directory on the checking walk's stack.
struct Frame {
    id: DirTreeId,
    tree: Arc<DirTree>,
    next: usize,
    name: String,
}

fn stack_path(stack: &[Frame], last: &str) -> String {
    let mut p = String::new();
    for f in stack.iter().skip(1) {
        p.push('/');
        p.push_str(&f.name);
    }
    if !last.is_empty() {
        p.push('/');
        p.push_str(last);
    }
    if p.is_empty() {
        p.push('/');
    }
    p
}

/// Read and check the whole tree below `root` before anything is written.
pub(super) fn check(repo: &Repo, root: Root) -> Result<Plan> {
    let mut plan = Plan {
        root,
        trees: HashMap::new(),
        metas: HashMap::new(),
    };
    let Root::Dir(root_tree, root_meta) = plan.root else {
        return Ok(plan);
    };
    plan.metas.insert(root_meta, repo.read_dirmeta(&root_meta)?);
    let limit = |what: &'static str, limit: u64| Error::TreeLimit {
        tree: root_tree.0,
        what,
        limit,
    };
    // Entries of unique dirtrees read so far: never more than the expanded count, so it
    // bounds the reading a hostile tree can cause before the bottom-up sums catch it.
    let mut unique_entries = 0u64;
    let mut load = |id: &DirTreeId| -> Result<Arc<DirTree>> {
        let tree = repo.read_dirtree(id)?;
        unique_entries += (tree.files.len() + tree.dirs.len()) as u64;
        if unique_entries > MAX_ENTRIES {
            return Err(limit("entry count", MAX_ENTRIES));
        }
        Ok(Arc::new(tree))
    };
    let mut in_progress = HashSet::from([root_tree]);
    let mut stack = vec![Frame {
        id: root_tree,
        tree: load(&root_tree)?,
        next: 0,
        name: String::new(),
    }];
    while let Some(top) = stack.last_mut() {
        if let Some((name, child, meta)) = top.tree.dirs.get(top.next) {
            top.next += 1;
            let (name, child, meta) = (name.as_str().to_owned(), *child, *meta);
            if let std::collections::hash_map::Entry::Vacant(e) = plan.metas.entry(meta) {
                e.insert(repo.read_dirmeta(&meta)?);
            }
            if plan.trees.contains_key(&child) {
                continue;
            }
            if in_progress.contains(&child) {
                return Err(Error::Checkout {
                    path: stack_path(&stack, &name).into(),
                    reason: format!("dirtree {child} contains itself (a cycle: corrupt store)"),
                });
            }
            if stack.len() > MAX_DEPTH {
                return Err(limit("depth", MAX_DEPTH as u64));
            }
            let tree = load(&child)?;
            in_progress.insert(child);
            stack.push(Frame {
                id: child,
                tree,
                next: 0,
                name,
            });
            continue;
        }
        let frame = stack.pop().expect("non-empty");
        let mut s = Summary {
            entries: frame.tree.files.len() as u64,
            depth: 0,
            path_len: frame
                .tree
                .files
                .iter()
                .map(|f| f.0.as_str().len() as u64)
                .max()
                .unwrap_or(0),
        };
        for (name, child, _) in &frame.tree.dirs {
            let c = plan.trees[child].1;
            s.entries = s.entries.saturating_add(1).saturating_add(c.entries);
            s.depth = s.depth.max(c.depth + 1);
            let below = if c.path_len > 0 { c.path_len + 1 } else { 0 };
            s.path_len = s.path_len.max(name.as_str().len() as u64 + below);
        }
        if s.entries > MAX_ENTRIES {
            return Err(limit("entry count", MAX_ENTRIES));
        }
        if s.depth > MAX_DEPTH as u64 {
            return Err(limit("depth", MAX_DEPTH as u64));
        }
        if s.path_len + 1 > MAX_PATH {
            return Err(Error::Checkout {
                path: stack_path(&stack, &frame.name).into(),
                reason: format!(
                    "a path below is {} bytes long, more than the {MAX_PATH}-byte limit",
                    s.path_len + 1
                ),
            });
        }
        in_progress.remove(&frame.id);
        plan.trees.insert(frame.id, (frame.tree, s));
    }
    Ok(plan)
}
