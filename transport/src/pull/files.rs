//! The small files a pull reads besides packs, each pinned by the summary with its BLAKE3
//! and size: signature sets, chunk indexes, pack indexes. Indexes are cached per remote,
//! named by what pins them, and checked again when read back.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pack::{ChunkIndex, PackIndex};
use crate::summary::{PackEntry, RefEntry};
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
/// `chunks/<commit>.<index-id>.cidx`, each written after it was verified.
pub(super) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(super) fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    fn read(&self, rel: &str, size: u64, id: &ObjectId) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.dir.join(rel)).ok()?;
        check_pinned(rel, &bytes, size, id).ok()?;
        Some(bytes)
    }

    /// Best effort: a cache that cannot be written only costs a download next time.
    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.dir.join(rel);
        let Some(parent) = path.parent() else { return };
        let tmp = parent.join(format!(".tmp-{}", std::process::id()));
        let written = std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
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
        let dir = self.dir.join("chunks");
        let mut cached: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let time = e.metadata().and_then(|m| m.modified()).ok()?;
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
        let bytes = std::fs::read(dir.join(name)).ok()?;
        if ObjectId::of(&bytes) != id {
            let _ = std::fs::remove_file(dir.join(name));
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
        remove_unless(&self.dir.join("packs"), |n| keep_packs.contains(n));
        // Chunk indexes of commits a ref names or the store still holds: the latter tell a
        // later pull which chunks the device has, whichever way the commit came.
        remove_unless(&self.dir.join("chunks"), |n| {
            let commit = n.split('.').next().and_then(|c| c.parse::<CommitId>().ok());
            commit.is_some_and(|c| {
                keep_commits.contains(&c)
                    || repo.has_object(ObjectKind::Commit, &c.0).unwrap_or(true)
            })
        });
    }

    /// Where a resumable download of `name` is kept.
    pub(super) fn partial(&self, name: &str) -> Result<PathBuf, PullError> {
        let dir = self.dir.join("partial");
        std::fs::create_dir_all(&dir).map_err(|e| PullError::Local {
            path: dir.clone(),
            source: e,
        })?;
        Ok(dir.join(name))
    }
}

fn remove_unless(dir: &Path, keep: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
