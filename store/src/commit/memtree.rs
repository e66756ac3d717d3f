//! An in-memory directory tree, for sources that list entries in an order of their own
//! (a tar archive, a git tree). Files are referred to by a *slot*: the index of their
//! file id in a table filled by the workers that write the file objects. Once every slot
//! is filled, [`MemDir::write`] writes the dirmetas and dirtrees bottom-up.

use std::collections::BTreeMap;

use super::Ctx;
use crate::error::Result;
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{DirMeta, DirTree, EntryName, Xattrs};

/// One entry of a directory.
pub(crate) enum MemNode {
    /// A file or symlink object, by slot.
    File(usize),
    /// A subdirectory.
    Dir(MemDir),
}

/// A directory: its metadata (default when the source never gave it) and its entries.
#[derive(Default)]
pub(crate) struct MemDir {
    pub(crate) meta: Option<DirMeta>,
    pub(crate) entries: BTreeMap<EntryName, MemNode>,
}

impl MemDir {
    /// Write this directory and everything below it, children first.
    pub(crate) fn write(&self, ctx: &Ctx<'_>, ids: &[FileId]) -> Result<(DirTreeId, DirMetaId)> {
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (name, node) in &self.entries {
            match node {
                MemNode::File(slot) => files.push((name.clone(), ids[*slot])),
                MemNode::Dir(d) => {
                    let (t, m) = d.write(ctx, ids)?;
                    dirs.push((name.clone(), t, m));
                }
            }
        }
        let meta = match &self.meta {
            Some(m) => m.clone(),
            None => default_dirmeta(ctx)?,
        };
        let tree = DirTree::new(files, dirs)?;
        ctx.write_dir(&tree, &meta)
    }
}

/// The metadata of a directory the source implies but does not describe: 0755, owned by
/// the owner override or root.
pub(crate) fn default_dirmeta(ctx: &Ctx<'_>) -> Result<DirMeta> {
    let (uid, gid) = ctx.opts.owner(0, 0);
    DirMeta::new(0o755, uid, gid, Xattrs::empty())
}
