//! Committing a tree from a git repository, read with gix (no git binary).
//!
//! Git keeps no owners, xattrs or full modes, so the tree maps as: blobs → regular files
//! 0644, or 0755 when git marks them executable; symlinks (mode 120000) → symlinks whose
//! target is the blob's content; trees → directories 0755; everything owned by the owner
//! override or 0:0. Submodules (gitlinks) are refused: their content is not in the
//! repository.
//!
//! The trees are read first, then every distinct (blob, kind) is read once, on the calling
//! thread (without gix's `parallel` feature a repository handle cannot cross threads),
//! and handed to worker threads that hash and store it; blobs over
//! [`super::tar::SMALL_FILE`] are written on the calling thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gix::objs::tree::EntryKind;

use super::memtree::{default_dirmeta, MemDir, MemNode};
use super::queue::{fill_slots, with_workers, Job, Queue};
use super::tar::SMALL_FILE;
use super::{at_entry, entry_name, Counters, Ctx, SourceRead, MAX_DEPTH};
use crate::error::{Error, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{FileHeader, Xattrs};

/// One distinct file object to write.
struct Blob {
    oid: gix::ObjectId,
    kind: EntryKind,
    /// The first path it was found at, for errors.
    shown: PathBuf,
}

struct Walk<'a> {
    ctx: &'a Ctx<'a>,
    repo: &'a gix::Repository,
    path: &'a Path,
    blobs: Vec<Blob>,
    slots: HashMap<(gix::ObjectId, EntryKind), usize>,
}

/// Commit the tree at `rev` (default `HEAD`) of the git repository at `path`.
pub(crate) fn commit_git(
    ctx: &Ctx<'_>,
    path: &Path,
    rev: Option<&str>,
    jobs: usize,
) -> Result<(DirTreeId, DirMetaId)> {
    let repo = gix::open(path).map_err(|e| git_error(path, e))?;
    let tree = resolve(&repo, path, rev)?;
    let mut walk = Walk {
        ctx,
        repo: &repo,
        path,
        blobs: Vec::new(),
        slots: HashMap::new(),
    };
    let mut root = MemDir {
        meta: Some(default_dirmeta(ctx)?),
        ..MemDir::default()
    };
    walk.tree(tree, &mut root, Path::new(""), 0)?;
    let blobs = walk.blobs;
    let (inline, queued) = with_workers(ctx, jobs, |queue| {
        let mut inline = Vec::new();
        for (slot, b) in blobs.iter().enumerate() {
            if queue.failed() {
                break;
            }
            if let Some(id) = read_blob(ctx, &repo, slot, b, queue)? {
                inline.push((slot, id));
            }
        }
        Ok(inline)
    })?;
    let ids = fill_slots(blobs.len(), queued.into_iter().chain(inline));
    root.write(ctx, &ids)
}

/// The tree a revision names: a full object id, or a reference (`HEAD`, `main`,
/// `refs/tags/v1`), peeled through tags and commits.
fn resolve(repo: &gix::Repository, path: &Path, rev: Option<&str>) -> Result<gix::ObjectId> {
    let shown = rev.unwrap_or("HEAD");
    let bad = |reason: String| {
        Error::invalid(
            format!("revision '{shown}' of git repository {}", path.display()),
            reason,
        )
    };
    let id = match rev {
        None => repo.head_id().map_err(|e| bad(e.to_string()))?.detach(),
        Some(r) if r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()) => {
            gix::ObjectId::from_hex(r.as_bytes()).map_err(|e| bad(e.to_string()))?
        }
        Some(r) => repo
            .find_reference(r)
            .map_err(|e| bad(e.to_string()))?
            .peel_to_id()
            .map_err(|e| bad(e.to_string()))?
            .detach(),
    };
    let object = repo.find_object(id).map_err(|e| bad(e.to_string()))?;
    let tree = object.peel_to_tree().map_err(|e| bad(e.to_string()))?;
    Ok(tree.id)
}

impl Walk<'_> {
    fn tree(
        &mut self,
        id: gix::ObjectId,
        dir: &mut MemDir,
        rel: &Path,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                format!("{}", self.shown(rel).display()),
                format!("deeper than {MAX_DEPTH} directories"),
            ));
        }
        let tree = self
            .repo
            .find_tree(id)
            .map_err(|e| git_error(&self.shown(rel), e))?;
        let decoded = tree.decode().map_err(|e| git_error(&self.shown(rel), e))?;
        let counters = &self.ctx.counters;
        for entry in &decoded.entries {
            let name_bytes: &[u8] = entry.filename;
            let child_rel = rel.join(String::from_utf8_lossy(name_bytes).as_ref());
            let name = entry_name(name_bytes, &self.shown(&child_rel).display())?;
            let kind = entry.mode.kind();
            let oid = entry.oid.to_owned();
            let node = match kind {
                EntryKind::Tree => {
                    let mut sub = MemDir {
                        meta: Some(default_dirmeta(self.ctx)?),
                        ..MemDir::default()
                    };
                    self.tree(oid, &mut sub, &child_rel, depth + 1)?;
                    MemNode::Dir(sub)
                }
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    if kind == EntryKind::Link {
                        Counters::add(&counters.symlinks, 1);
                    } else {
                        Counters::add(&counters.files, 1);
                    }
                    let next = self.blobs.len();
                    let slot = *self.slots.entry((oid, kind)).or_insert(next);
                    if slot == next {
                        self.blobs.push(Blob {
                            oid,
                            kind,
                            shown: self.shown(&child_rel),
                        });
                    }
                    MemNode::File(slot)
                }
                EntryKind::Commit => {
                    return Err(Error::invalid(
                        format!("git tree entry {}", self.shown(&child_rel).display()),
                        format!("is a submodule (commit {oid}); submodules cannot be committed"),
                    ))
                }
            };
            if dir.entries.insert(name, node).is_some() {
                return Err(Error::invalid(
                    format!("git tree entry {}", self.shown(&child_rel).display()),
                    "listed twice in its tree",
                ));
            }
        }
        Ok(())
    }

    /// How an entry is named in errors: `REPO:PATH`-like, the path inside the tree.
    fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }
}

/// Read one blob and queue it, or write it here when it is big (then return its id).
fn read_blob(
    ctx: &Ctx<'_>,
    repo: &gix::Repository,
    slot: usize,
    b: &Blob,
    queue: &Queue<'_>,
) -> Result<Option<FileId>> {
    let data = repo
        .find_blob(b.oid)
        .map_err(|e| git_error(&b.shown, e))?
        .take_data();
    let (uid, gid) = ctx.opts.owner(0, 0);
    let size = data.len() as u64;
    let header = match b.kind {
        EntryKind::Link => FileHeader::symlink(data.clone(), uid, gid, Xattrs::empty()),
        EntryKind::BlobExecutable => FileHeader::regular(0o755, uid, gid, size, Xattrs::empty()),
        _ => FileHeader::regular(0o644, uid, gid, size, Xattrs::empty()),
    }
    .map_err(|e| at_entry(e, &b.shown.display()))?;
    if header.is_symlink() {
        queue.send(Job {
            slot,
            header,
            data: Vec::new(),
            shown: b.shown.clone(),
        });
        return Ok(None);
    }
    Counters::add(&ctx.counters.bytes, size);
    if size > SMALL_FILE {
        let id = SourceRead::new(data.as_slice(), size).write(ctx, &header, &b.shown.display())?;
        return Ok(Some(id));
    }
    queue.send(Job {
        slot,
        header,
        data,
        shown: b.shown.clone(),
    });
    Ok(None)
}

fn git_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("git source {}", path.display()), e.to_string())
}
