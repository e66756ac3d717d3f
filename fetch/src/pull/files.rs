//! The small files a pull reads besides packs, each pinned by the summary with its BLAKE3
//! and size: signature sets, chunk indexes, pack indexes. Indexes are cached per remote,
//! named by what pins them, and checked again when read back.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use store::id::ObjectId;
use store::pack::{ChunkIndex, PackIndex};
use store::summary::{PackEntry, RefEntry};
use store::CommitId;

use super::PullError;
use crate::Fetcher;

/// Fetch `path`, which the summary says is `size` bytes hashing to `id`; refuse anything
/// else before it is decoded.
pub(super) fn get_pinned(
    fetcher: &Fetcher,
    path: &str,
    size: u64,
    id: &ObjectId,
) -> Result<Vec<u8>, PullError> {
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
            Some(b) => b,
            None => {
                let path = format!("packs/{}.idx", entry.id);
                let b = get_pinned(fetcher, &path, entry.index_size, &entry.index_id)?;
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
            Some(b) => b,
            None => {
                let b = get_pinned(
                    fetcher,
                    &path,
                    entry.chunk_index_size,
                    &entry.chunk_index_id,
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

    /// A cached chunk index of `commit` (one pulled earlier), to find chunks the device
    /// already holds. Only decoded, not trusted: a chunk taken from it is checked by hash.
    pub(super) fn local_chunk_index(&self, commit: &CommitId) -> Option<ChunkIndex> {
        let dir = self.dir.join("chunks");
        let prefix = format!("{commit}.");
        let name = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&prefix) && n.ends_with(".cidx"))?;
        let bytes = std::fs::read(dir.join(name)).ok()?;
        ChunkIndex::decode(&bytes)
            .ok()
            .filter(|ci| ci.commit == *commit)
    }

    /// Drop cached indexes of packs the summary no longer lists and of commits no ref
    /// names any more. Best effort.
    pub(super) fn tidy(&self, packs: &[PackEntry], keep_commits: &BTreeSet<CommitId>) {
        let keep_packs: BTreeSet<String> = packs
            .iter()
            .map(|p| Self::pack_rel(p)["packs/".len()..].to_owned())
            .collect();
        remove_unless(&self.dir.join("packs"), |n| keep_packs.contains(n));
        remove_unless(&self.dir.join("chunks"), |n| {
            keep_commits.iter().any(|c| n.starts_with(&format!("{c}.")))
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
