//! Pulling a commit chunk by chunk (docs/transport.md 4.3 and 6.4): fetch the missing
//! metadata and walk the verified trees, plan the missing files' headers and chunks from
//! the chunk index, then fetch them in bounded batches of Range requests, rebuild each
//! file, check it against its id and store it.
//!
//! Files are committed to the store every few batches (no ref names them yet), and a pull
//! that fails commits what it stored whole, so a pull cut off midway keeps what it
//! finished and the next one starts from there. The repository
//! lock is held shared for the whole pull, so a prune cannot remove the files of earlier
//! batches before the ref names them. The commit object and its trees are written last, in
//! one transaction with the ref, so a commit is never present without all it names.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use crate::pack::{BlobKind, ChunkIndex, FileChunks, PackIndex};
use crate::summary::RefEntry;
use rayon::prelude::*;
use store::id::ObjectId;
use store::object::{Commit, DirMeta, DirTree, FileHeader, ObjectKind, Signatures};
use store::{CommitId, DirTreeId, FileId, Repo};

use super::pipe::{produce, Pipe};
use super::source::{self, fetch_locs, locate, ContentReader, Loc, Piece, Remote, Take};
use super::{Event, PullCtx, PullError};

fn locate_or_err(packs: &[PackIndex], kind: BlobKind, id: &ObjectId) -> Result<Loc, PullError> {
    locate(packs, kind, id).ok_or_else(|| PullError::Plan {
        reason: format!("no published pack holds {} {id}", kind.name()),
    })
}

/// Blobs fetched in one go, by kind and id, with their stored bytes.
type Fetched = HashMap<(BlobKind, ObjectId), (Loc, Vec<u8>)>;

/// Fetch `locs` (grouped per pack, coalesced by the fetcher) and return their stored bytes.
fn fetch_blobs(ctx: &PullCtx<'_>, locs: &[Loc]) -> Result<Fetched, PullError> {
    let mut locs = locs.to_vec();
    locs.sort_by_key(|l| (l.pack, l.entry.offset));
    locs.dedup_by_key(|l| (l.pack, l.entry.offset));
    let parts = fetch_locs(ctx.fetcher, &ctx.packs, &locs)?;
    Ok(locs
        .into_iter()
        .zip(parts)
        .map(|(loc, bytes)| ((loc.entry.kind, loc.entry.id), (loc, bytes)))
        .collect())
}

/// Stored bytes fetched between two commits of the files a pull stored (each commit is a
/// `syncfs`; a batch reading chunks back from files of the open transaction commits it
/// first). A pull that fails keeps what it stored; a power cut may lose up to this much.
const COMMIT_BYTES: u64 = 16 << 20;

/// Closes every pipe when dropped, so producers stop once the pull stops taking blobs.
struct CloseOnDrop<'p>(&'p [Pipe]);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        for pipe in self.0 {
            pipe.close();
        }
    }
}

/// The blobs of `batch` fetched up front, in the order the pack streams send them.
fn up_front<'b>(batch: &'b Batch<'_>) -> Vec<&'b Loc> {
    let mut locs: Vec<&Loc> = batch.blobs.iter().collect();
    locs.sort_by_key(|l| (l.pack, l.entry.offset));
    locs.dedup_by_key(|l| (l.pack, l.entry.offset));
    locs
}

/// The chunks of `file` taken from the streams while it is written, each once, in the
/// order first used.
fn streamed<'f>(file: &'f Planned<'_>) -> Vec<&'f Loc> {
    let mut seen = HashSet::new();
    file.chunks
        .iter()
        .filter_map(|c| match c {
            ChunkFrom::Stream(loc) if seen.insert((loc.pack, loc.entry.offset)) => Some(loc),
            _ => None,
        })
        .collect()
}

/// What the batches take from the pack streams, worked out once before the pull.
struct Streams<'b> {
    /// For each pack, the blobs the batches take from it, in the order they take them:
    /// each batch's up-front blobs, then the chunks its files stream.
    seqs: Vec<Vec<&'b Loc>>,
    /// For each batch, its up-front blobs in the order the streams send them.
    up_front: Vec<Vec<&'b Loc>>,
    /// For each batch, the packs it is the first to need (their producers start then).
    starts: Vec<Vec<usize>>,
}

fn plan_streams<'b>(batches: &'b [Batch<'_>], packs: usize) -> Streams<'b> {
    let mut streams = Streams {
        seqs: vec![Vec::new(); packs],
        up_front: Vec::with_capacity(batches.len()),
        starts: Vec::with_capacity(batches.len()),
    };
    for batch in batches {
        let first = up_front(batch);
        let mut starts = Vec::new();
        let streamed = batch.files.iter().flat_map(|f| streamed(f));
        for loc in first.iter().copied().chain(streamed) {
            let seq = &mut streams.seqs[loc.pack];
            if seq.is_empty() {
                starts.push(loc.pack);
            }
            seq.push(loc);
        }
        streams.up_front.push(first);
        streams.starts.push(starts);
    }
    streams
}

/// Take the up-front blobs of a batch, `locs`, from the pipes.
fn take_batch(pipes: &[Pipe], locs: &[&Loc]) -> Result<Fetched, PullError> {
    locs.iter()
        .map(|&loc| {
            let bytes = pipes[loc.pack].recv(loc)?;
            Ok(((loc.entry.kind, loc.entry.id), (*loc, bytes)))
        })
        .collect()
}

/// Takes the streamed chunks of `file` from the pipes as it is written; a chunk the file
/// uses again later is kept until its last use.
fn streamed_take<'p>(
    pipes: &'p [Pipe],
    file: &Planned<'_>,
) -> impl FnMut(&Loc) -> std::io::Result<Vec<u8>> + 'p {
    let mut uses: HashMap<(usize, u64), usize> = HashMap::new();
    for c in &file.chunks {
        if let ChunkFrom::Stream(loc) = c {
            *uses.entry((loc.pack, loc.entry.offset)).or_default() += 1;
        }
    }
    let mut kept: HashMap<(usize, u64), Vec<u8>> = HashMap::new();
    move |loc: &Loc| {
        let key = (loc.pack, loc.entry.offset);
        let bytes = match kept.remove(&key) {
            Some(bytes) => bytes,
            None => pipes[loc.pack].recv(loc).map_err(std::io::Error::other)?,
        };
        let left = uses.entry(key).or_default();
        *left = left.saturating_sub(1);
        if *left > 0 {
            kept.insert(key, bytes.clone());
        }
        Ok(bytes)
    }
}

/// A file to fetch, with where each of its chunks comes from.
struct Planned<'c> {
    file: &'c FileChunks,
    header: Loc,
    chunks: Vec<ChunkFrom>,
}

#[derive(Clone, Copy)]
enum ChunkFrom {
    /// Fetched with the batch of this file.
    Batch(Loc),
    /// Taken from the pack streams while the file is read (a file too large for one
    /// batch).
    Stream(Loc),
    /// Held locally (before the pull or from an earlier batch) at this file and offset.
    Local(FileId, u64),
}

/// The files of one batch and the blobs to fetch for them up front.
struct Batch<'c> {
    files: Vec<Planned<'c>>,
    blobs: Vec<Loc>,
    /// Stored bytes of the batch, streamed chunks included.
    bytes: u64,
}

impl Batch<'_> {
    fn new() -> Self {
        Batch {
            files: Vec::new(),
            blobs: Vec::new(),
            bytes: 0,
        }
    }
}

/// What [`pull_commit`] did.
pub(super) struct Outcome {
    pub(super) files: u64,
}

/// Pull `entry.commit` chunk by chunk. `sigs` are its already verified signatures;
/// `current` the commit the ref had, whose cached chunk index tells which chunks the
/// device holds. Works as well for a commit already present with files missing.
pub(super) fn pull_commit(
    ctx: &mut PullCtx<'_>,
    entry: &RefEntry,
    sigs: Signatures,
    current: Option<&CommitId>,
) -> Result<Outcome, PullError> {
    let repo = ctx.repo;
    // Held until the ref is written: a prune must not remove what earlier batches stored.
    let _lock = repo.lock_shared()?;
    let commit_id = entry.commit;
    let ci = ctx
        .cache
        .chunk_index(ctx.fetcher, entry, &mut ctx.fetched)?;
    ctx.load_packs()?;
    let packs = ctx.packs.as_slice();

    // 1. The commit and the trees the store lacks, each checked against its id.
    let have = |kind: ObjectKind, id: &ObjectId| repo.has_object(kind, id);
    let mut meta_locs = Vec::new();
    if !have(ObjectKind::Commit, &commit_id.0)? {
        meta_locs.push(locate_or_err(packs, BlobKind::Commit, &commit_id.0)?);
    }
    for (kind, id) in &ci.metadata {
        let object_kind = match kind {
            BlobKind::DirTree => ObjectKind::DirTree,
            _ => ObjectKind::DirMeta,
        };
        if !have(object_kind, id)? {
            meta_locs.push(locate_or_err(packs, *kind, id)?);
        }
    }
    let meta_bytes: u64 = meta_locs
        .iter()
        .map(|l| u64::from(l.entry.stored_len))
        .sum();
    let mut meta = fetch_blobs(ctx, &meta_locs)?;
    ctx.fetched += meta_bytes;
    let mut verified: HashMap<ObjectId, Vec<u8>> = HashMap::with_capacity(meta.len());
    for ((_, id), (loc, stored)) in meta.drain() {
        verified.insert(
            id,
            source::verified(&ctx.remote.name, packs, &loc, &stored)?,
        );
    }
    let commit = match verified.get(&commit_id.0) {
        Some(bytes) => Commit::decode(bytes)?,
        None => repo.read_commit(&commit_id)?,
    };
    ctx.check_downgrade(entry, current, commit.timestamp)?;

    // 2. The files the verified trees name that the store lacks, planned from the index.
    let needed = walk(repo, &commit, &verified)?;
    let mut candidates: Vec<&FileChunks> = Vec::with_capacity(needed.len());
    for id in &needed {
        match ci.find(id) {
            Some(f) => candidates.push(f),
            None => {
                return Err(PullError::Plan {
                    reason: format!(
                        "commit {commit_id} has file {id}, which its chunk index does not list"
                    ),
                })
            }
        }
    }
    let seeds = local_chunks(ctx, &ci, current, &candidates)?;
    let (batches, file_bytes) = plan_batches(packs, &candidates, &seeds, ctx.opts.batch_bytes)?;
    let total = meta_bytes + file_bytes;
    // What the store will hold: the content (stored compressed in an archive repository,
    // so this errs on the safe side) and the trees.
    let content: u64 = candidates
        .iter()
        .map(|f| f.chunks.iter().map(|c| u64::from(c.len)).sum::<u64>() + f.header.len() as u64)
        .sum::<u64>()
        + verified.values().map(|v| v.len() as u64).sum::<u64>();
    super::check_space(repo, content)?;
    tracing::info!(
        r#ref = %entry.name,
        commit = %commit_id,
        bytes = total,
        files = candidates.len(),
        metadata = meta_locs.len(),
        batches = batches.len(),
        local_chunks = seeds.len(),
        "pull: planned"
    );
    (ctx.events)(&Event::Planned {
        name: entry.name.to_string(),
        commit: commit_id,
        bytes: total,
        files: candidates.len() as u64,
        delta: false,
    });
    let mut done = meta_bytes;
    (ctx.events)(&Event::Progress {
        name: entry.name.to_string(),
        done,
        total,
    });

    // 3. Files, batch by batch, committed every COMMIT_BYTES. Their blobs stream in, one
    //    producer per pack, in the order the batches use them.
    let extra = AtomicU64::new(0);
    let remote = Remote {
        name: &ctx.remote.name,
        fetcher: ctx.fetcher,
        packs,
        fetched: &extra,
    };
    let streams = plan_streams(&batches, packs.len());
    let pipes: Vec<Pipe> = streams.seqs.iter().map(|_| Pipe::new()).collect();
    let fetcher = ctx.fetcher;
    let mut written = 0u64;
    std::thread::scope(|scope| -> Result<(), PullError> {
        // On any exit, waiting producers give up (the scope then joins them).
        let _close = CloseOnDrop(&pipes);
        // Batches share a transaction until about COMMIT_BYTES were stored: each commit
        // costs a syncfs.
        let mut txn = repo.begin()?;
        let mut uncommitted = 0u64;
        // Files of the open transaction: not readable from the store until committed.
        let mut staged: HashSet<FileId> = HashSet::new();
        for (b, batch) in batches.iter().enumerate() {
            let reads_staged = batch
                .files
                .iter()
                .flat_map(|f| &f.chunks)
                .any(|c| matches!(c, ChunkFrom::Local(file, _) if staged.contains(file)));
            if reads_staged {
                std::mem::replace(&mut txn, repo.begin()?).commit_unsynced()?;
                (uncommitted, staged) = (0, HashSet::new());
            }
            // A pack's producer starts when a batch first needs it, so packs needed later
            // hold no buffered bytes meanwhile.
            for &pack in &streams.starts[b] {
                let (seq, pipe) = (&streams.seqs[pack], &pipes[pack]);
                tracing::debug!(pack = %packs[pack].pack_id(), blobs = seq.len(), "pull: streaming pack");
                scope.spawn(move || produce(fetcher, packs, pack, seq, pipe));
            }
            let stored = take_batch(&pipes, &streams.up_front[b]).and_then(|fetched| {
                if let [file] = batch.files.as_slice() {
                    let mut take = streamed_take(&pipes, file);
                    store_file(repo, &txn, &remote, file, &fetched, Some(&mut take))
                } else {
                    ctx.writers.install(|| {
                        batch
                            .files
                            .par_iter()
                            .try_for_each(|p| store_file(repo, &txn, &remote, p, &fetched, None))
                    })
                }
            });
            if let Err(e) = stored {
                // Keep every file stored whole (each checked against its id), so the next
                // pull resumes from here.
                let _ = txn.commit_unsynced();
                return Err(e);
            }
            written += batch.files.len() as u64;
            uncommitted += batch.bytes;
            staged.extend(batch.files.iter().map(|p| p.file.id));
            tracing::debug!(
                batch = b,
                files = batch.files.len(),
                bytes = batch.bytes,
                "pull: batch stored"
            );
            if uncommitted >= COMMIT_BYTES {
                // Durable content now; durable names with the sync before the ref (below).
                tracing::debug!(bytes = uncommitted, "pull: committing stored files");
                std::mem::replace(&mut txn, repo.begin()?).commit_unsynced()?;
                (uncommitted, staged) = (0, HashSet::new());
            }
            done += batch.bytes;
            (ctx.events)(&Event::Progress {
                name: entry.name.to_string(),
                done,
                total,
            });
        }
        txn.commit_unsynced()?;
        Ok(())
    })?;
    ctx.fetched += file_bytes + extra.into_inner();

    // 4. Trees and the commit last, with its signatures and the ref, once every batch's
    //    objects are durable under their names.
    if !batches.is_empty() {
        repo.sync()?;
    }
    let txn = repo.begin()?;
    for (id, bytes) in &verified {
        if *id == commit_id.0 {
            continue;
        }
        // Trees and dirmetas are told apart by their tag; both decoders are strict.
        if bytes.starts_with(ObjectKind::DirTree.tag()) {
            txn.write_dirtree(&DirTree::decode(bytes)?)?;
        } else {
            txn.write_dirmeta(&DirMeta::decode(bytes)?)?;
        }
    }
    txn.write_commit(&commit)?;
    txn.write_signatures(&commit_id, sigs)?;
    // The ref is written by the pull's commit point, once every ref is verified.
    txn.commit()?;
    tracing::info!(r#ref = %entry.name, commit = %commit_id, files = written, "pull: objects committed; the ref moves at the pull's commit point");
    Ok(Outcome { files: written })
}

/// Chunks the store already holds, of those the candidate files need: from the new
/// commit's own index (files present locally, e.g. stored by an interrupted pull) and from
/// cached indexes of commits pulled before.
fn local_chunks(
    ctx: &PullCtx<'_>,
    ci: &ChunkIndex,
    current: Option<&CommitId>,
    candidates: &[&FileChunks],
) -> Result<HashMap<ObjectId, (FileId, u64)>, PullError> {
    let wanted: HashSet<ObjectId> = candidates
        .iter()
        .flat_map(|f| f.chunks.iter().map(|c| c.id))
        .collect();
    let mut seeds = HashMap::new();
    let old = ctx.cache.local_chunk_index(ctx.repo, current);
    for index in std::iter::once(ci).chain(old.as_ref()) {
        for f in &index.files {
            if !f
                .chunks
                .iter()
                .any(|c| wanted.contains(&c.id) && !seeds.contains_key(&c.id))
            {
                continue;
            }
            if !ctx.repo.has_object(ObjectKind::File, &f.id.0)? {
                continue;
            }
            let mut offset = 0u64;
            for c in &f.chunks {
                if wanted.contains(&c.id) {
                    seeds.entry(c.id).or_insert((f.id, offset));
                }
                offset += u64::from(c.len);
            }
        }
    }
    Ok(seeds)
}

/// Order the files by where their header is packed (so their blobs are mostly contiguous)
/// and cut them into batches of about `batch_bytes` stored bytes. Each distinct chunk is
/// fetched once, with the first file that needs it; later files read it back from that
/// file in the store. A file whose own new chunks exceed `batch_bytes` gets a batch of its
/// own and its chunks are streamed in windows of that size, so memory does not grow with
/// file sizes. Returns the batches and the stored bytes they fetch.
fn plan_batches<'c>(
    packs: &[PackIndex],
    candidates: &[&'c FileChunks],
    seeds: &HashMap<ObjectId, (FileId, u64)>,
    batch_bytes: u64,
) -> Result<(Vec<Batch<'c>>, u64), PullError> {
    let mut located = Vec::with_capacity(candidates.len());
    for f in candidates {
        located.push((locate_or_err(packs, BlobKind::FileHeader, &f.id.0)?, *f));
    }
    located.sort_by_key(|(loc, _)| (loc.pack, loc.entry.offset));

    let mut first_owner: HashMap<ObjectId, (usize, FileId, u64)> = HashMap::new();
    let mut batches: Vec<Batch<'c>> = Vec::new();
    let mut current = Batch::new();
    let mut total = 0u64;
    for (header, file) in located {
        // The chunks this file is the first to need, and their stored size.
        let mut own: Vec<Option<Loc>> = Vec::with_capacity(file.chunks.len());
        let mut own_bytes = 0u64;
        let mut seen_here = HashSet::new();
        for c in &file.chunks {
            if seeds.contains_key(&c.id) || first_owner.contains_key(&c.id) {
                own.push(None);
            } else {
                let loc = locate_or_err(packs, BlobKind::Chunk, &c.id)?;
                if seen_here.insert(c.id) {
                    own_bytes += u64::from(loc.entry.stored_len);
                }
                own.push(Some(loc));
            }
        }
        let stream = own_bytes > batch_bytes;
        if stream && !current.files.is_empty() {
            total += current.bytes;
            batches.push(std::mem::replace(&mut current, Batch::new()));
        }
        let n = batches.len();
        current.blobs.push(header);
        current.bytes += u64::from(header.entry.stored_len) + own_bytes;
        let mut chunks = Vec::with_capacity(file.chunks.len());
        let mut offset = 0u64;
        for (c, own) in file.chunks.iter().zip(own) {
            let from = match (own, seeds.get(&c.id), first_owner.get(&c.id)) {
                (_, Some(&(f, at)), _) => ChunkFrom::Local(f, at),
                (_, None, Some(&(batch, f, at))) if batch != n => ChunkFrom::Local(f, at),
                (Some(loc), None, _) if stream => ChunkFrom::Stream(loc),
                // A chunk this batch fetches already (an earlier file of it, or earlier in
                // this file): fetched once, used twice.
                (_, None, Some(_)) => {
                    ChunkFrom::Batch(locate_or_err(packs, BlobKind::Chunk, &c.id)?)
                }
                (Some(loc), None, None) => {
                    current.blobs.push(loc);
                    ChunkFrom::Batch(loc)
                }
                (None, None, None) => unreachable_plan(&c.id)?,
            };
            if !first_owner.contains_key(&c.id) && !seeds.contains_key(&c.id) {
                first_owner.insert(c.id, (n, file.id, offset));
            }
            chunks.push(from);
            offset += u64::from(c.len);
        }
        current.files.push(Planned {
            file,
            header,
            chunks,
        });
        if stream || current.bytes >= batch_bytes {
            total += current.bytes;
            batches.push(std::mem::replace(&mut current, Batch::new()));
        }
    }
    if !current.files.is_empty() {
        total += current.bytes;
        batches.push(current);
    }
    Ok((batches, total))
}

/// A chunk neither local, nor owned, nor planned: cannot happen by construction; reported
/// rather than panicking.
fn unreachable_plan(id: &ObjectId) -> Result<ChunkFrom, PullError> {
    Err(PullError::Plan {
        reason: format!("chunk {id} has no source in the plan"),
    })
}

/// Every file object reachable from `commit` that the store lacks. Trees come from the
/// verified fetched blobs or the store; every dirmeta must be in one of them too.
pub(super) fn walk(
    repo: &Repo,
    commit: &Commit,
    fetched: &HashMap<ObjectId, Vec<u8>>,
) -> Result<HashSet<FileId>, PullError> {
    let check_meta = |id: &ObjectId| -> Result<(), PullError> {
        if fetched.contains_key(id) || repo.has_object(ObjectKind::DirMeta, id)? {
            Ok(())
        } else {
            Err(PullError::Plan {
                reason: format!("dirmeta {id} is neither local nor in the chunk index"),
            })
        }
    };
    check_meta(&commit.root_meta.0)?;
    let mut needed = HashSet::new();
    let mut seen = HashSet::new();
    let mut children: HashMap<DirTreeId, Vec<DirTreeId>> = HashMap::new();
    let mut stack = vec![commit.root_tree];
    while let Some(tree_id) = stack.pop() {
        if !seen.insert(tree_id) {
            continue;
        }
        let tree = match fetched.get(&tree_id.0) {
            Some(bytes) => DirTree::decode(bytes)?,
            None if repo.has_object(ObjectKind::DirTree, &tree_id.0)? => {
                repo.read_dirtree(&tree_id)?
            }
            None => {
                return Err(PullError::Plan {
                    reason: format!("dirtree {tree_id} is neither local nor in the chunk index"),
                })
            }
        };
        for (_, file) in &tree.files {
            if !repo.has_object(ObjectKind::File, &file.0)? {
                needed.insert(*file);
            }
        }
        for (_, sub, meta) in &tree.dirs {
            check_meta(&meta.0)?;
            stack.push(*sub);
        }
        children.insert(tree_id, tree.dirs.iter().map(|d| d.1).collect());
    }
    // The depth limit every reader applies: refused here, not first at checkout.
    store::walk::check_depth(commit.root_tree, &mut |t| Ok(children.get(t).cloned()))?;
    Ok(needed)
}

/// Rebuild one file from its header and chunks, and stage it if it hashes to its id.
fn store_file(
    repo: &Repo,
    txn: &store::Transaction<'_>,
    remote: &Remote<'_>,
    planned: &Planned<'_>,
    fetched: &Fetched,
    take: Option<Take<'_>>,
) -> Result<(), PullError> {
    let blob = |loc: &Loc| -> Result<&[u8], PullError> {
        fetched
            .get(&(loc.entry.kind, loc.entry.id))
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| PullError::Plan {
                reason: format!("{} {} was not fetched", loc.entry.kind.name(), loc.entry.id),
            })
    };
    let hloc = &planned.header;
    let header_bytes = source::verified(remote.name, remote.packs, hloc, blob(hloc)?)?;
    let header = FileHeader::decode(&header_bytes)?;
    let mut pieces = Vec::with_capacity(planned.chunks.len());
    for (c, from) in planned.file.chunks.iter().zip(&planned.chunks) {
        pieces.push(match *from {
            ChunkFrom::Batch(loc) => Piece::Fetched {
                loc,
                stored: blob(&loc)?,
            },
            ChunkFrom::Stream(loc) => Piece::Remote(loc),
            ChunkFrom::Local(file, offset) => Piece::Local {
                file,
                offset,
                len: c.len,
                id: c.id,
            },
        });
    }
    let mut reader = ContentReader::new(repo, remote, pieces, take);
    let id = txn
        .write_file(&header, &mut reader)
        .map_err(source::reader_error)?;
    if id != planned.file.id {
        return Err(PullError::Plan {
            reason: format!(
                "file {} rebuilt from its header and chunks hashes to {id}: the chunk index \
                 or a pack is wrong",
                planned.file.id
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use store::id::{DirMetaId, DirTreeId, ObjectId};
    use store::object::{Commit, DirMeta, DirTree, EntryName, Xattrs};
    use store::walk::MAX_DEPTH;
    use store::{Repo, RepoMode};

    /// A commit whose tree nests `levels` directories, with every tree and the dirmeta
    /// as verified fetched blobs.
    fn fetched_chain(levels: usize) -> (Commit, HashMap<ObjectId, Vec<u8>>) {
        let mut fetched = HashMap::new();
        let meta = DirMeta::new(0o755, 0, 0, Xattrs::empty()).unwrap().encode();
        let meta_id = DirMetaId(ObjectId::of(&meta));
        fetched.insert(meta_id.0, meta);
        let mut put = |tree: DirTree| {
            let bytes = tree.encode();
            let id = DirTreeId(ObjectId::of(&bytes));
            fetched.insert(id.0, bytes);
            id
        };
        let mut tree = put(DirTree::new(Vec::new(), Vec::new()).unwrap());
        for _ in 0..levels {
            let dirs = vec![(EntryName::new("d").unwrap(), tree, meta_id)];
            tree = put(DirTree::new(Vec::new(), dirs).unwrap());
        }
        let commit = Commit {
            parent: None,
            timestamp: 0,
            subject: String::new(),
            body: String::new(),
            metadata: Vec::new(),
            root_tree: tree,
            root_meta: meta_id,
        };
        (commit, fetched)
    }

    #[test]
    fn a_tree_deeper_than_checkout_accepts_is_refused_before_files_are_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path().join("repo"), RepoMode::Bare).unwrap();
        let (commit, fetched) = fetched_chain(MAX_DEPTH);
        assert!(super::walk(&repo, &commit, &fetched).unwrap().is_empty());
        let (commit, fetched) = fetched_chain(MAX_DEPTH + 1);
        let err = super::walk(&repo, &commit, &fetched).unwrap_err();
        assert!(err.to_string().contains("depth limit of 256"), "{err}");
    }
}
