//! A tree on disk as a comparable model.
//!
//! Each entry is reduced to what the store's object model keeps: relative path, type,
//! permission bits (setuid/setgid/sticky included), owner, size, a BLAKE3 of the content,
//! the symlink target and the sorted xattrs. Modification times are not part of the model
//! (a commit does not record per-file times, and a checkout gives them no meaning), so they
//! are left out. Link counts are left out too: a hardlink checkout shares inodes with the
//! store. Which paths share an inode is kept separately, in [`Snapshot::links`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An entry's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink.
    Symlink,
    /// Anything else (FIFO, socket, device): never expected in a checkout.
    Other,
}

/// One entry of a tree, as far as the store models it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Type.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (0o7777).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file; 0 otherwise.
    pub size: u64,
    /// BLAKE3 of a regular file's content, in hex.
    pub content: Option<String>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// Every xattr, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A whole tree: path (relative, raw bytes, "" for the root) → node.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every entry, the root included.
    pub nodes: BTreeMap<Vec<u8>, Node>,
    /// (device, inode) of every non-directory.
    pub inodes: BTreeMap<Vec<u8>, (u64, u64)>,
}

impl Snapshot {
    /// Walk `root` without following symlinks.
    pub fn take(root: &Path) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        let mut stack = vec![(root.to_path_buf(), Vec::new())];
        while let Some((path, rel)) = stack.pop() {
            let md = std::fs::symlink_metadata(&path)
                .with_context(|| format!("lstat {}", path.display()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            };
            let content = if kind == Kind::File {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
                Some(store::ObjectId::of(&bytes).to_hex())
            } else {
                None
            };
            let target = if kind == Kind::Symlink {
                Some(std::fs::read_link(&path)?.into_os_string().into_vec())
            } else {
                None
            };
            let node = Node {
                kind,
                perm: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                size: if kind == Kind::File { md.size() } else { 0 },
                content,
                target,
                xattrs: xattrs(&path).with_context(|| format!("xattrs of {}", path.display()))?,
            };
            if kind == Kind::Dir {
                for e in std::fs::read_dir(&path)? {
                    let e = e?;
                    let name = e.file_name();
                    let child_rel = if rel.is_empty() {
                        name.as_bytes().to_vec()
                    } else {
                        [rel.as_slice(), b"/", name.as_bytes()].concat()
                    };
                    stack.push((e.path(), child_rel));
                }
            } else {
                snap.inodes.insert(rel.clone(), (md.dev(), md.ino()));
            }
            snap.nodes.insert(rel, node);
        }
        Ok(snap)
    }

    /// Groups of two or more paths sharing an inode, each sorted, in sorted order.
    pub fn links(&self) -> BTreeSet<Vec<Vec<u8>>> {
        let mut by_ino: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
        for (p, ino) in &self.inodes {
            by_ino.entry(*ino).or_default().push(p.clone());
        }
        by_ino.into_values().filter(|g| g.len() > 1).collect()
    }

    /// The differences between `self` (expected) and `actual`, one line each (empty when
    /// they are the same tree).
    pub fn diff(&self, actual: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (p, n) in &self.nodes {
            match actual.nodes.get(p) {
                None => out.push(format!("missing: {}", show(p))),
                Some(a) if a != n => out.push(describe_change(p, n, a)),
                Some(_) => {}
            }
        }
        for p in actual.nodes.keys() {
            if !self.nodes.contains_key(p) {
                out.push(format!("unexpected: {}", show(p)));
            }
        }
        out
    }

    /// Panic with a readable list of differences unless `actual` is the same tree.
    #[track_caller]
    pub fn assert_same(&self, actual: &Snapshot, context: &str) {
        let d = self.diff(actual);
        if !d.is_empty() {
            let n = d.len();
            let shown: Vec<_> = d.into_iter().take(30).collect();
            panic!(
                "{context}: trees differ in {n} entries (mtime and link counts are not compared):\n  {}",
                shown.join("\n  ")
            );
        }
    }

    /// Panic unless every group of hardlinked paths in `self` is still one inode in
    /// `actual` (a hardlink checkout of a bare repo links every path of a file object to
    /// that object, so paths that were one file must stay one file).
    #[track_caller]
    pub fn assert_links_kept(&self, actual: &Snapshot, context: &str) {
        for group in self.links() {
            let inos: BTreeSet<_> = group.iter().map(|p| actual.inodes.get(p)).collect();
            assert!(
                inos.len() == 1 && !inos.contains(&None),
                "{context}: hardlinked paths {:?} are not one inode any more",
                group.iter().map(|p| show(p)).collect::<Vec<_>>()
            );
        }
        // Paths sharing an inode in the result must be the same in the model.
        for group in actual.links() {
            let first = &actual.nodes[&group[0]];
            for p in &group[1..] {
                assert_eq!(&actual.nodes[p], first, "{context}: linked paths differ");
            }
        }
    }
}

fn describe_change(p: &[u8], want: &Node, got: &Node) -> String {
    let mut s = format!("changed: {}:", show(p));
    if want.kind != got.kind {
        let _ = write!(s, " kind {:?} -> {:?}", want.kind, got.kind);
    }
    if want.perm != got.perm {
        let _ = write!(s, " mode {:04o} -> {:04o}", want.perm, got.perm);
    }
    if (want.uid, want.gid) != (got.uid, got.gid) {
        let _ = write!(
            s,
            " owner {}:{} -> {}:{}",
            want.uid, want.gid, got.uid, got.gid
        );
    }
    if want.size != got.size {
        let _ = write!(s, " size {} -> {}", want.size, got.size);
    }
    if want.content != got.content {
        s.push_str(" content differs");
    }
    if want.target != got.target {
        let _ = write!(
            s,
            " target {:?} -> {:?}",
            want.target.as_deref().map(String::from_utf8_lossy),
            got.target.as_deref().map(String::from_utf8_lossy)
        );
    }
    if want.xattrs != got.xattrs {
        let names = |n: &Node| -> Vec<String> {
            n.xattrs
                .iter()
                .map(|(k, v)| format!("{}({}B)", String::from_utf8_lossy(k), v.len()))
                .collect()
        };
        let _ = write!(s, " xattrs {:?} -> {:?}", names(want), names(got));
    }
    s
}

/// A path for messages.
pub fn show(p: &[u8]) -> String {
    if p.is_empty() {
        "<root>".into()
    } else {
        format!("{:?}", String::from_utf8_lossy(p))
    }
}

/// Every xattr of `path` (not following a symlink), sorted by name.
pub fn xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..])?;
        value.truncate(len);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// The paths (below `root`) of every object file in a repository's `objects/`, with
/// their (device, inode): a `--copy` checkout must share none of them.
pub fn object_inodes(repo: &Path) -> Result<BTreeMap<(u64, u64), PathBuf>> {
    let mut out = BTreeMap::new();
    for fan in std::fs::read_dir(repo.join("objects"))? {
        let fan = fan?;
        if !fan.file_type()?.is_dir() {
            continue;
        }
        for obj in std::fs::read_dir(fan.path())? {
            let obj = obj?;
            let md = std::fs::symlink_metadata(obj.path())?;
            out.insert((md.dev(), md.ino()), obj.path());
        }
    }
    Ok(out)
}
