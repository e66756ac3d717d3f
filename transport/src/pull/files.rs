//! The small files a pull reads besides packs, each pinned by the summary with its BLAKE3
//! and size: signature sets, chunk indexes, pack indexes. Indexes are cached per remote,
//! named by what pins them, and checked again when read back.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::pack::{ChunkIndex, PackIndex};
use crate::summary::{PackEntry, RefEntry};
use rustix::fs::AtFlags;
use store::durable;
use store::id::ObjectId;
use store::object::ObjectKind;
use store::{CommitId, Repo};

use super::PullError;
use fetch::Fetcher;

/// Largest signature set file fetched (a set holds a few 96-byte entries).
pub(super) const MAX_SIGNATURES_FILE: u64 = 1 << 20;
/// Largest chunk index fetched.
pub(super) const MAX_CHUNK_INDEX_FILE: u64 = 1 << 30;
/// Largest pack index fetched: the most entries an index may have.
pub(super) const MAX_PACK_INDEX_FILE: u64 = 49 + 49 * crate::pack::MAX_ENTRIES as u64;

/// Fetch `path`, which the summary says is `size` bytes hashing to `id`; refuse a size over
/// `cap` before any request, and anything else than the pinned bytes before it is decoded.
pub(super) fn get_pinned(
    fetcher: &Fetcher,
    path: &str,
    size: u64,
    id: &ObjectId,
    cap: u64,
) -> Result<Vec<u8>, PullError> {
    if size > cap {
        return Err(PullError::Pinned {
            file: path.to_owned(),
            reason: format!("the summary says it is {size} bytes, over the {cap}-byte cap"),
        });
    }
    let bytes = fetcher.get(path, size)?;
    check_pinned(path, &bytes, size, id)?;
    Ok(bytes)
}

fn check_pinned(what: &str, bytes: &[u8], size: u64, id: &ObjectId) -> Result<(), PullError> {
    if bytes.len() as u64 != size {
        return Err(PullError::Pinned {
            file: what.to_owned(),
            reason: format!("{} bytes, the summary says {size}", bytes.len()),
        });
    }
    if ObjectId::of(bytes) != *id {
        return Err(PullError::Pinned {
            file: what.to_owned(),
            reason: format!("its BLAKE3 is not {id}, the one the summary pins"),
        });
    }
    Ok(())
}

/// A remote's cache directory: `packs/<pack-id>.<index-id>.idx` and
/// `chunks/<commit>.<index-id>.cidx`, each written after it was verified. Everything in it
/// is reached through its handle, never following a symlink.
pub(super) struct Cache {
    dir: PathBuf,
    fd: OwnedFd,
}

/// The open file `rel` (`sub/name`) below `dir`, never following a symlink.
fn open_rel(dir: BorrowedFd<'_>, rel: &str) -> Option<std::fs::File> {
    let (sub, name) = rel.split_once('/')?;
    let sub = durable::open_dir_at(dir, sub).ok()?;
    durable::open_read_at(sub.as_fd(), name).ok()
}

/// The whole file `rel` below `dir`, if it is there and at most `cap` bytes.
fn read_rel(dir: BorrowedFd<'_>, rel: &str, cap: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    open_rel(dir, rel)?
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

impl Cache {
    /// The cache of `remote` in `repo`, created if missing.
    pub(super) fn new(repo: &Repo, remote: &store::remote::Remote) -> Result<Cache, PullError> {
        let dir = remote.cache_dir();
        let rel = dir.strip_prefix(repo.path()).unwrap_or(&dir);
        let fd = durable::mkdir_all_at(repo.dir(), rel, &dir)?;
        Ok(Cache { dir, fd })
    }

    fn read(&self, rel: &str, size: u64, id: &ObjectId) -> Option<Vec<u8>> {
        let bytes = read_rel(self.fd.as_fd(), rel, size)?;
        check_pinned(rel, &bytes, size, id).ok()?;
        Some(bytes)
    }

    /// Best effort: a cache that cannot be written only costs a download next time.
    fn write(&self, rel: &str, bytes: &[u8]) {
        let Some((sub, name)) = rel.split_once('/') else {
            return;
        };
        let path = self.dir.join(rel);
        if let Ok(sub) = durable::mkdir_all_at(self.fd.as_fd(), Path::new(sub), &path) {
            let _ = durable::write_atomic(sub.as_fd(), name, bytes, 0o644, &path);
        }
    }

    fn pack_rel(entry: &PackEntry) -> String {
        format!("packs/{}.{}.idx", entry.id, entry.index_id)
    }

    fn chunks_rel(commit: &CommitId, id: &ObjectId) -> String {
        format!("chunks/{commit}.{id}.cidx")
    }

    /// The index of a listed pack, from the cache or fetched; it must describe that pack.
    pub(super) fn pack_index(
        &self,
        fetcher: &Fetcher,
        entry: &PackEntry,
        fetched: &mut u64,
    ) -> Result<PackIndex, PullError> {
        let rel = Self::pack_rel(entry);
        let bytes = match self.read(&rel, entry.index_size, &entry.index_id) {
            Some(b) => {
                tracing::debug!(pack = %entry.id, "pull: pack index from the cache");
                b
            }
            None => {
                let path = format!("packs/{}.idx", entry.id);
                let b = get_pinned(
                    fetcher,
                    &path,
                    entry.index_size,
                    &entry.index_id,
                    MAX_PACK_INDEX_FILE,
                )?;
                *fetched += b.len() as u64;
                self.write(&rel, &b);
                b
            }
        };
        let index = PackIndex::decode(&bytes)?;
        if *index.pack_id() != entry.id || index.pack_size() != entry.size {
            return Err(PullError::Pinned {
                file: format!("packs/{}.idx", entry.id),
                reason: format!(
                    "describes pack {} of {} bytes, not pack {} of {} bytes",
                    index.pack_id(),
                    index.pack_size(),
                    entry.id,
                    entry.size
                ),
            });
        }
        Ok(index)
    }

    /// The chunk index of a published ref's commit, from the cache or fetched.
    pub(super) fn chunk_index(
        &self,
        fetcher: &Fetcher,
        entry: &RefEntry,
        fetched: &mut u64,
    ) -> Result<ChunkIndex, PullError> {
        let rel = Self::chunks_rel(&entry.commit, &entry.chunk_index_id);
        let path = format!("chunks/{}.cidx", entry.commit);
        let bytes = match self.read(&rel, entry.chunk_index_size, &entry.chunk_index_id) {
            Some(b) => {
                tracing::debug!(commit = %entry.commit, "pull: chunk index from the cache");
                b
            }
            None => {
                let b = get_pinned(
                    fetcher,
                    &path,
                    entry.chunk_index_size,
                    &entry.chunk_index_id,
                    MAX_CHUNK_INDEX_FILE,
                )?;
                *fetched += b.len() as u64;
                self.write(&rel, &b);
                b
            }
        };
        let index = ChunkIndex::decode(&bytes)?;
        if index.commit != entry.commit {
            return Err(PullError::Pinned {
                file: path,
                reason: format!("describes commit {}, not {}", index.commit, entry.commit),
            });
        }
        Ok(index)
    }

    /// A cached chunk index of a commit pulled earlier and still in the store, to find
    /// chunks the device already holds: `current`'s if cached, else the newest cached one
    /// of a commit present in `repo`. It is checked against the id in its file name, then
    /// decoded; it is not trusted further, since every chunk taken through it is checked
    /// against its id (and fetched when the local copy does not match).
    pub(super) fn local_chunk_index(
        &self,
        repo: &Repo,
        current: Option<&CommitId>,
    ) -> Option<ChunkIndex> {
        let dir = durable::open_dir_at(self.fd.as_fd(), "chunks").ok()?;
        let mut cached: Vec<((i64, i64), String)> = rustix::fs::Dir::read_from(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let st = rustix::fs::statat(&dir, e.file_name(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
                let time = (st.st_mtime, st.st_mtime_nsec as i64);
                name.ends_with(".cidx").then_some((time, name))
            })
            .collect();
        cached.sort();
        let parse = |name: &str| -> Option<(CommitId, ObjectId)> {
            let (commit, rest) = name.strip_suffix(".cidx")?.split_once('.')?;
            Some((commit.parse().ok()?, rest.parse().ok()?))
        };
        let wanted = |c: &CommitId| match current {
            Some(cur) => c == cur,
            None => false,
        };
        let pick = cached
            .iter()
            .rev()
            .filter_map(|(_, n)| parse(n).map(|p| (n, p)))
            .find(|(_, (c, _))| wanted(c))
            .or_else(|| {
                cached
                    .iter()
                    .rev()
                    .filter_map(|(_, n)| parse(n).map(|p| (n, p)))
                    .find(|(_, (c, _))| repo.has_object(ObjectKind::Commit, &c.0).unwrap_or(false))
            })?;
        let (name, (commit, id)) = pick;
        let mut bytes = Vec::new();
        let cap = MAX_CHUNK_INDEX_FILE + 1;
        let file = durable::open_read_at(dir.as_fd(), name.as_str()).ok()?;
        file.take(cap).read_to_end(&mut bytes).ok()?;
        if ObjectId::of(&bytes) != id {
            let _ = rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty());
            return None;
        }
        ChunkIndex::decode(&bytes)
            .ok()
            .filter(|ci| ci.commit == commit)
    }

    /// Drop cached indexes of packs the summary no longer lists and of commits no ref
    /// names any more. Best effort.
    pub(super) fn tidy(&self, repo: &Repo, packs: &[PackEntry], keep_commits: &BTreeSet<CommitId>) {
        let keep_packs: BTreeSet<String> = packs
            .iter()
            .map(|p| Self::pack_rel(p)["packs/".len()..].to_owned())
            .collect();
        remove_unless(self.fd.as_fd(), "packs", |n| keep_packs.contains(n));
        // Chunk indexes of commits a ref names or the store still holds: the latter tell a
        // later pull which chunks the device has, whichever way the commit came.
        remove_unless(self.fd.as_fd(), "chunks", |n| {
            let commit = n.split('.').next().and_then(|c| c.parse::<CommitId>().ok());
            commit.is_some_and(|c| {
                keep_commits.contains(&c)
                    || repo.has_object(ObjectKind::Commit, &c.0).unwrap_or(true)
            })
        });
    }

    /// Where a resumable download of `name` is kept (the downloader takes a path), and the
    /// handle of the directory that holds it.
    pub(super) fn partial(&self, name: &str) -> Result<(PathBuf, OwnedFd), PullError> {
        let dir = self.dir.join("partial");
        let fd = durable::mkdir_all_at(self.fd.as_fd(), Path::new("partial"), &dir)?;
        Ok((dir.join(name), fd))
    }
}

fn remove_unless(cache: BorrowedFd<'_>, sub: &str, keep: impl Fn(&str) -> bool) {
    let Ok(dir) = durable::open_dir_at(cache, sub) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." && !keep(&name) {
            let _ = rustix::fs::unlinkat(&dir, entry.file_name(), AtFlags::empty());
        }
    }
}
