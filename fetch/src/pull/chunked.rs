//! Pulling a commit chunk by chunk (docs/transport.md 4.3): plan from the chunk index,
//! fetch the missing metadata and walk the verified trees, then fetch the missing files'
//! headers and chunks in bounded batches of Range requests, rebuild each file, check it
//! against its id and store it.
//!
//! Files are committed to the store batch by batch (no ref names them yet), so a pull cut
//! off midway keeps what it finished and the next one starts from there. The commit object
//! and its trees are written last, in one transaction with the ref, so a commit is never
//! present without all it names.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use store::id::ObjectId;
use store::object::{Commit, DirMeta, DirTree, FileHeader, ObjectKind, Signatures};
use store::pack::{verify_blob, BlobKind, ChunkIndex, FileChunks, IndexEntry, PackIndex};
use store::summary::RefEntry;
use store::{CommitId, FileId, Repo};

use super::source::{ContentReader, Piece};
use super::{Event, PullCtx, PullError};

/// Where a blob is: which pack (index into the summary's list) and its entry.
#[derive(Clone, Copy)]
struct Loc {
    pack: usize,
    entry: IndexEntry,
}

fn locate(packs: &[PackIndex], kind: BlobKind, id: &ObjectId) -> Option<Loc> {
    packs.iter().enumerate().find_map(|(pack, index)| {
        index.find(kind, id).map(|entry| Loc {
            pack,
            entry: *entry,
        })
    })
}

fn locate_or_err(packs: &[PackIndex], kind: BlobKind, id: &ObjectId) -> Result<Loc, PullError> {
    locate(packs, kind, id).ok_or_else(|| PullError::Plan {
        reason: format!("no published pack holds {} {id}", kind.name()),
    })
}

/// Blobs fetched in one go, by kind and id, with their stored bytes.
type Fetched = HashMap<(BlobKind, ObjectId), (Loc, Vec<u8>)>;

/// Fetch `locs` (grouped per pack, coalesced by the fetcher) and return their stored bytes.
fn fetch_blobs(ctx: &PullCtx<'_>, locs: &[Loc]) -> Result<Fetched, PullError> {
    let mut by_pack: BTreeMap<usize, Vec<Loc>> = BTreeMap::new();
    for loc in locs {
        by_pack.entry(loc.pack).or_default().push(*loc);
    }
    let mut out = HashMap::with_capacity(locs.len());
    for (pack, mut locs) in by_pack {
        locs.sort_by_key(|l| l.entry.offset);
        locs.dedup_by_key(|l| l.entry.offset);
        let ranges: Vec<(u64, u64)> = locs
            .iter()
            .map(|l| (l.entry.offset, u64::from(l.entry.stored_len)))
            .collect();
        let total = ranges.iter().map(|r| r.1).sum();
        let path = format!("packs/{}.pack", ctx.packs[pack].pack_id());
        let parts = ctx.fetcher.get_ranges(&path, &ranges, total)?;
        for (loc, bytes) in locs.into_iter().zip(parts) {
            out.insert((loc.entry.kind, loc.entry.id), (loc, bytes));
        }
    }
    Ok(out)
}

/// A file to fetch, with where each of its chunks comes from.
struct Planned<'c> {
    file: &'c FileChunks,
    header: Loc,
    chunks: Vec<ChunkFrom>,
}

#[derive(Clone, Copy)]
enum ChunkFrom {
    /// Fetched in the batch of this file.
    Batch(Loc),
    /// Held locally (before the pull or from an earlier batch) at this file and offset.
    Local(FileId, u64),
}

/// The files of one batch and the blobs to fetch for them.
struct Batch<'c> {
    files: Vec<Planned<'c>>,
    blobs: Vec<Loc>,
    bytes: u64,
}

/// What [`pull_commit`] did.
pub(super) struct Outcome {
    pub(super) files: u64,
}

/// Pull `entry.commit` chunk by chunk. `sigs` are its already verified signatures;
/// `current` the commit the ref had, whose cached chunk index tells which chunks the
/// device holds.
pub(super) fn pull_commit(
    ctx: &mut PullCtx<'_>,
    entry: &RefEntry,
    sigs: Signatures,
    current: Option<&CommitId>,
) -> Result<Outcome, PullError> {
    let repo = ctx.repo;
    let commit_id = entry.commit;
    let ci = ctx
        .cache
        .chunk_index(ctx.fetcher, entry, &mut ctx.fetched)?;
    ctx.load_packs()?;
    let packs = ctx.packs.as_slice();

    // 1. The plan, from the chunk index: what is missing and how many bytes it is.
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
    let mut candidates: Vec<&FileChunks> = Vec::new();
    for f in &ci.files {
        if !have(ObjectKind::File, &f.id.0)? {
            candidates.push(f);
        }
    }
    let seeds = local_chunks(ctx, &ci, current, &candidates)?;
    let meta_bytes: u64 = meta_locs
        .iter()
        .map(|l| u64::from(l.entry.stored_len))
        .sum();
    let (batches, file_bytes) = plan_batches(packs, &candidates, &seeds, ctx.opts.batch_bytes)?;
    let total = meta_bytes + file_bytes;
    // What the store will hold: the content (stored compressed in an archive repository,
    // so this errs on the safe side) and the metadata.
    let content: u64 = candidates
        .iter()
        .map(|f| f.chunks.iter().map(|c| u64::from(c.len)).sum::<u64>() + f.header.len() as u64)
        .sum();
    super::check_space(repo, content + meta_bytes)?;
    (ctx.events)(&Event::Planned {
        name: entry.name.to_string(),
        commit: commit_id,
        bytes: total,
        files: candidates.len() as u64,
        delta: false,
    });

    // 2. The commit and its trees, each checked against its id, then walked.
    let mut done = 0u64;
    let mut meta = fetch_blobs(ctx, &meta_locs)?;
    let mut verified: HashMap<ObjectId, Vec<u8>> = HashMap::with_capacity(meta.len());
    for ((_, id), (loc, stored)) in meta.drain() {
        let index = &packs[loc.pack];
        done += stored.len() as u64;
        verified.insert(id, verify_blob(index, &loc.entry, &stored)?);
    }
    let commit = match verified.get(&commit_id.0) {
        Some(bytes) => Commit::decode(bytes)?,
        None => repo.read_commit(&commit_id)?,
    };
    ctx.check_downgrade(entry, current, commit.timestamp)?;
    let needed = walk(repo, &commit, &verified)?;
    for id in &needed {
        if ci.find(id).is_none() {
            return Err(PullError::Plan {
                reason: format!(
                    "commit {commit_id} has file {id}, which its chunk index does not list"
                ),
            });
        }
    }
    ctx.fetched += done;
    (ctx.events)(&Event::Progress {
        name: entry.name.to_string(),
        done,
        total,
    });

    // 3. Files, batch by batch. A file the index lists but the trees do not name is not
    //    fetched (a stale or lying index).
    let mut written = 0u64;
    for batch in batches {
        let files: Vec<&Planned<'_>> = batch
            .files
            .iter()
            .filter(|p| needed.contains(&p.file.id))
            .collect();
        if files.is_empty() {
            continue;
        }
        let fetched = fetch_blobs(ctx, &batch.blobs)?;
        let txn = repo.begin()?;
        ctx.writers.install(|| {
            files
                .par_iter()
                .try_for_each(|p| store_file(repo, &txn, packs, p, &fetched))
        })?;
        txn.commit()?;
        written += files.len() as u64;
        done += batch.bytes;
        ctx.fetched += batch.bytes;
        (ctx.events)(&Event::Progress {
            name: entry.name.to_string(),
            done,
            total,
        });
    }

    // 4. Trees and the commit last, with its signatures and the ref.
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
    txn.commit_and_set_remote_ref(&ctx.remote.name, &entry.name, &commit_id)?;
    Ok(Outcome { files: written })
}

/// Chunks the store already holds, of those the candidate files need: from the new
/// commit's own index (files present locally, e.g. stored by an interrupted pull) and from
/// the cached index of the commit the ref had.
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
    let old = current.and_then(|c| ctx.cache.local_chunk_index(c));
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
/// fetched once, in the batch of the first file that needs it; later files read it back
/// from that file in the store.
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
    let mut current = Batch {
        files: Vec::new(),
        blobs: Vec::new(),
        bytes: 0,
    };
    let mut total = 0u64;
    for (header, file) in located {
        let n = batches.len();
        let mut chunks = Vec::with_capacity(file.chunks.len());
        current.blobs.push(header);
        current.bytes += u64::from(header.entry.stored_len);
        let mut offset = 0u64;
        for c in &file.chunks {
            let from = if let Some(&(f, at)) = seeds.get(&c.id) {
                ChunkFrom::Local(f, at)
            } else if let Some(&(batch, f, at)) = first_owner.get(&c.id) {
                if batch == n {
                    let loc = locate_or_err(packs, BlobKind::Chunk, &c.id)?;
                    ChunkFrom::Batch(loc)
                } else {
                    ChunkFrom::Local(f, at)
                }
            } else {
                let loc = locate_or_err(packs, BlobKind::Chunk, &c.id)?;
                first_owner.insert(c.id, (n, file.id, offset));
                current.blobs.push(loc);
                current.bytes += u64::from(loc.entry.stored_len);
                ChunkFrom::Batch(loc)
            };
            chunks.push(from);
            offset += u64::from(c.len);
        }
        current.files.push(Planned {
            file,
            header,
            chunks,
        });
        if current.bytes >= batch_bytes {
            total += current.bytes;
            batches.push(std::mem::replace(
                &mut current,
                Batch {
                    files: Vec::new(),
                    blobs: Vec::new(),
                    bytes: 0,
                },
            ));
        }
    }
    if !current.files.is_empty() {
        total += current.bytes;
        batches.push(current);
    }
    Ok((batches, total))
}

/// Every file object reachable from `commit` that the store lacks. Trees come from the
/// verified fetched blobs or the store; every dirmeta must be in one of them too.
fn walk(
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
    }
    Ok(needed)
}

/// Rebuild one file from its header and chunks, and stage it if it hashes to its id.
fn store_file(
    repo: &Repo,
    txn: &store::Transaction<'_>,
    packs: &[PackIndex],
    planned: &Planned<'_>,
    fetched: &Fetched,
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
    let header_bytes = verify_blob(&packs[hloc.pack], &hloc.entry, blob(hloc)?)?;
    let header = FileHeader::decode(&header_bytes)?;
    let mut pieces = Vec::with_capacity(planned.chunks.len());
    for (c, from) in planned.file.chunks.iter().zip(&planned.chunks) {
        pieces.push(match from {
            ChunkFrom::Batch(loc) => Piece::Fetched {
                index: &packs[loc.pack],
                entry: &fetched[&(loc.entry.kind, loc.entry.id)].0.entry,
                stored: blob(loc)?,
            },
            ChunkFrom::Local(file, offset) => Piece::Local {
                file: *file,
                offset: *offset,
                len: c.len,
                id: c.id,
            },
        });
    }
    let mut reader = ContentReader::new(repo, pieces);
    let id = txn.write_file(&header, &mut reader)?;
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
