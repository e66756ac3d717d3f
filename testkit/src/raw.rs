//! Writing objects straight into a repository's `objects/`, bypassing every check, to build
//! the hostile and corrupt repositories of the bad-input tests.
//!
//! Valid objects use the store's own encoders; names and headers that the store's
//! constructors refuse are hand-encoded here following `docs/format.md`: a 4-byte tag, the
//! format version byte (1), little-endian u32/u64 integers, byte strings as a u32 length
//! then the bytes, ids as 32 raw bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use store::object::{Commit, ObjectKind};
use store::{CommitId, DirMetaId, DirTreeId, ObjectId, RefName, Repo};

/// Format version byte written after every tag.
pub const VERSION: u8 = 1;

/// A dirtree's bytes, exactly as given: no sorting, no validation.
pub fn dirtree_bytes(files: &[(&[u8], ObjectId)], dirs: &[(&[u8], ObjectId, ObjectId)]) -> Vec<u8> {
    let mut v = b"UDTR".to_vec();
    v.push(VERSION);
    v.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for (name, id) in files {
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(id.as_bytes());
    }
    v.extend_from_slice(&(dirs.len() as u32).to_le_bytes());
    for (name, tree, meta) in dirs {
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(tree.as_bytes());
        v.extend_from_slice(meta.as_bytes());
    }
    v
}

/// A file header's bytes, exactly as given (any mode, any size, any target).
pub fn file_header_bytes(mode: u32, uid: u32, gid: u32, size: u64, target: &[u8]) -> Vec<u8> {
    let mut v = b"UFIL".to_vec();
    v.push(VERSION);
    v.extend_from_slice(&mode.to_le_bytes());
    v.extend_from_slice(&uid.to_le_bytes());
    v.extend_from_slice(&gid.to_le_bytes());
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&(target.len() as u32).to_le_bytes());
    v.extend_from_slice(target);
    v.extend_from_slice(&0u32.to_le_bytes()); // no xattrs
    v
}

/// Where an object of `kind` with `id` lives in the repository at `repo`.
pub fn object_path(repo: &Path, kind: ObjectKind, id: &ObjectId) -> Result<PathBuf> {
    let r = Repo::open(repo).with_context(|| format!("open {}", repo.display()))?;
    Ok(repo.join(r.object_path(kind, id)))
}

/// Store `bytes` as a metadata object of `kind` under the id they hash to.
pub fn put_metadata(repo: &Path, kind: ObjectKind, bytes: &[u8]) -> Result<ObjectId> {
    let id = ObjectId::of(bytes);
    put_at(&object_path(repo, kind, &id)?, bytes)?;
    Ok(id)
}

/// Store an archive-mode file object: u32 LE header length, header, then `stored` (the
/// zstd frame of the content, or anything else). Its id is the hash of header + `content`.
pub fn put_archive_file(
    repo: &Path,
    header: &[u8],
    content: &[u8],
    stored: &[u8],
) -> Result<ObjectId> {
    let id = ObjectId::of(&[header, content].concat());
    let mut bytes = (header.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(stored);
    put_at(&object_path(repo, ObjectKind::File, &id)?, &bytes)?;
    Ok(id)
}

/// Write `bytes` at `path`, replacing what is there (root may write read-only objects).
pub fn put_at(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("object has a fan-out dir"))?;
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// Store a commit of `root_tree` + `root_meta` (no parent) and point `branch` at it.
pub fn put_commit(
    repo: &Path,
    root_tree: ObjectId,
    root_meta: ObjectId,
    branch: &str,
) -> Result<CommitId> {
    let c = Commit {
        parent: None,
        timestamp: 1_700_000_000,
        subject: format!("hostile: {branch}"),
        body: String::new(),
        metadata: Vec::new(),
        root_tree: DirTreeId(root_tree),
        root_meta: DirMetaId(root_meta),
    };
    let id = CommitId(put_metadata(repo, ObjectKind::Commit, &c.encode())?);
    let r = Repo::open(repo)?;
    r.write_ref(&RefName::new(branch)?, &id)?;
    Ok(id)
}
