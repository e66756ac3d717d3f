//! Building a commit's chunk index and packing what a published repository lacks.
//!
//! One iterative walk serves both: it reads each reachable dirtree and dirmeta once (a
//! visited set, so a tree naming the same subtree many times costs nothing more), reads each
//! distinct file once, chunks its content with FastCDC as it streams and checks that the
//! header and content hash to the file id, handing every blob to a visitor.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::chunk_index::{ChunkIndex, ChunkRef, FileChunks};
use super::write::{PackInfo, PackWriter, PackWriterOptions};
use super::{BlobKind, MAX_ENTRIES};
use crate::chunk::chunk_reader;
use crate::error::{Error, Result};
use store::durable;
use store::id::{CommitId, DirTreeId, FileId, ObjectId};
use store::object::{Commit, DirTree, FileHasher, ObjectKind};
use store::repo::{FileContent, Repo};
use store::IoResultExt;

/// What [`pack_commit`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackOutcome {
    /// The packs written (none when everything was already packed).
    pub packs: Vec<PackInfo>,
    /// The commit's chunk index, also written to `chunks/<commit-id>.cidx`.
    pub chunk_index: ChunkIndex,
    /// Blobs added to the new packs.
    pub blobs_written: u64,
    /// Distinct blobs skipped because `already_packed` said an existing pack holds them.
    pub blobs_skipped: u64,
}

enum Blob<'a> {
    Meta(ObjectKind, &'a ObjectId, &'a [u8]),
    Header(&'a FileId, &'a [u8]),
    Chunk(&'a ObjectId, &'a [u8]),
}

impl Blob<'_> {
    fn key(&self) -> (BlobKind, ObjectId) {
        match self {
            Blob::Meta(k, id, _) => (BlobKind::of_object(*k).expect("metadata kind"), **id),
            Blob::Header(id, _) => (BlobKind::FileHeader, id.0),
            Blob::Chunk(id, _) => (BlobKind::Chunk, **id),
        }
    }
}

/// The chunk index of `commit`: every reachable file with its header and chunks, every
/// reachable dirtree and dirmeta. Reads every file in full and checks it against its id.
pub fn build_chunk_index(repo: &Repo, commit: &CommitId) -> Result<ChunkIndex> {
    walk(repo, commit, &mut |_| Ok(()))
}

/// [`pack_commit_with`] with the default [`PackWriterOptions`].
pub fn pack_commit(
    repo: &Repo,
    commit: &CommitId,
    out_dir: &Path,
    already_packed: &dyn Fn(BlobKind, &ObjectId) -> bool,
) -> Result<PackOutcome> {
    pack_commit_with(
        repo,
        commit,
        out_dir,
        already_packed,
        PackWriterOptions::default(),
    )
}

/// Pack `commit` into the published repository at `out_dir`: every blob it needs (the
/// commit, its dirtrees and dirmetas, file headers, chunks) for which `already_packed` is
/// false goes into new packs under `out_dir/packs/`; then its chunk index is written to
/// `out_dir/chunks/<commit-id>.cidx`. Both directories are created if missing. Packs are
/// durable before the chunk index is written, so the index never names a missing blob.
pub fn pack_commit_with(
    repo: &Repo,
    commit: &CommitId,
    out_dir: &Path,
    already_packed: &dyn Fn(BlobKind, &ObjectId) -> bool,
    opts: PackWriterOptions,
) -> Result<PackOutcome> {
    let root = rustix::fs::open(
        out_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(out_dir)?;
    let packs_path = out_dir.join("packs");
    let chunks_path = out_dir.join("chunks");
    let packs_fd = durable::mkdir_all_at(root.as_fd(), Path::new("packs"), &packs_path)?;
    let chunks_fd = durable::mkdir_all_at(root.as_fd(), Path::new("chunks"), &chunks_path)?;
    let mut writer = PackWriter::in_dir(packs_fd, packs_path, opts);
    let mut written = 0u64;
    let mut skipped: HashSet<(BlobKind, ObjectId)> = HashSet::new();
    let chunk_index = walk(repo, commit, &mut |blob| {
        let (kind, id) = blob.key();
        if writer.contains(kind, &id) {
            return Ok(());
        }
        if skipped.contains(&(kind, id)) {
            return Ok(());
        }
        if already_packed(kind, &id) {
            skipped.insert((kind, id));
            return Ok(());
        }
        let added = match blob {
            Blob::Meta(k, id, bytes) => writer.add_metadata(k, id, bytes)?,
            Blob::Header(id, bytes) => writer.add_file_header(id, bytes)?,
            Blob::Chunk(id, raw) => writer.add_chunk(id, raw)?,
        };
        written += u64::from(added);
        Ok(())
    })?;
    let packs = writer.finish()?;
    let name = format!("{commit}.cidx");
    durable::write_atomic(
        chunks_fd.as_fd(),
        &name,
        &chunk_index.encode(),
        0o644,
        &chunks_path.join(&name),
    )?;
    Ok(PackOutcome {
        packs,
        chunk_index,
        blobs_written: written,
        blobs_skipped: skipped.len() as u64,
    })
}

fn corrupt<E: std::fmt::Display>(kind: ObjectKind, id: &ObjectId) -> impl Fn(E) -> Error + '_ {
    move |e| {
        Error::Store(store::Error::Corrupt {
            kind,
            id: *id,
            reason: e.to_string(),
        })
    }
}

fn walk(
    repo: &Repo,
    commit: &CommitId,
    visit: &mut dyn FnMut(Blob<'_>) -> Result<()>,
) -> Result<ChunkIndex> {
    let bytes = repo.read_metadata_bytes(ObjectKind::Commit, &commit.0)?;
    let c = Commit::decode(&bytes).map_err(corrupt(ObjectKind::Commit, &commit.0))?;
    visit(Blob::Meta(ObjectKind::Commit, &commit.0, &bytes))?;
    let too_many = || {
        Error::Store(store::Error::TreeLimit {
            tree: c.root_tree.0,
            what: "entry count",
            limit: MAX_ENTRIES as u64,
        })
    };
    let mut meta: BTreeSet<(BlobKind, ObjectId)> = BTreeSet::new();
    let mut files: BTreeMap<FileId, FileChunks> = BTreeMap::new();
    let mut seen_files: HashSet<FileId> = HashSet::new();
    let mut order: Vec<FileId> = Vec::new();
    meta.insert((BlobKind::DirMeta, c.root_meta.0));
    visit_metadata(repo, ObjectKind::DirMeta, &c.root_meta.0, visit)?;
    meta.insert((BlobKind::DirTree, c.root_tree.0));
    let mut children: HashMap<DirTreeId, Vec<DirTreeId>> = HashMap::new();
    let mut stack = vec![c.root_tree];
    while let Some(t) = stack.pop() {
        let bytes = repo.read_metadata_bytes(ObjectKind::DirTree, &t.0)?;
        let tree = DirTree::decode(&bytes).map_err(corrupt(ObjectKind::DirTree, &t.0))?;
        visit(Blob::Meta(ObjectKind::DirTree, &t.0, &bytes))?;
        children.insert(t, tree.dirs.iter().map(|d| d.1).collect());
        for (_, sub, m) in &tree.dirs {
            if meta.insert((BlobKind::DirMeta, m.0)) {
                visit_metadata(repo, ObjectKind::DirMeta, &m.0, visit)?;
            }
            if meta.insert((BlobKind::DirTree, sub.0)) {
                stack.push(*sub);
            }
        }
        if meta.len() > MAX_ENTRIES {
            return Err(too_many());
        }
        for (_, fid) in &tree.files {
            if !seen_files.insert(*fid) {
                continue;
            }
            if seen_files.len() > MAX_ENTRIES {
                return Err(too_many());
            }
            order.push(*fid);
        }
    }
    // The depth limit every reader applies: a tree no device could check out is not
    // published.
    store::walk::check_depth(c.root_tree, &mut |t| Ok(children.get(t).cloned()))?;
    // All metadata first, then the files in walk order: a client fetches the trees it
    // lacks in one contiguous range, and each file's chunks and header in another.
    for fid in order {
        files.insert(fid, chunk_file(repo, &fid, visit)?);
    }
    let ci = ChunkIndex {
        commit: *commit,
        metadata: meta.into_iter().collect(),
        files: files.into_values().collect(),
    };
    ci.validate()?;
    Ok(ci)
}

fn visit_metadata(
    repo: &Repo,
    kind: ObjectKind,
    id: &ObjectId,
    visit: &mut dyn FnMut(Blob<'_>) -> Result<()>,
) -> Result<()> {
    let bytes = repo.read_metadata_bytes(kind, id)?;
    visit(Blob::Meta(kind, id, &bytes))
}

/// Read one file object, chunk its content, check it against its id, and hand its chunks
/// and header to `visit`.
fn chunk_file(
    repo: &Repo,
    id: &FileId,
    visit: &mut dyn FnMut(Blob<'_>) -> Result<()>,
) -> Result<FileChunks> {
    let (header, content) = repo.read_file(id)?;
    let mut hasher = FileHasher::new(&header);
    let mut chunks = Vec::new();
    let mut total = 0u64;
    if let FileContent::Regular(r) = content {
        for item in chunk_reader(r) {
            let (c, data) = item.map_err(corrupt(ObjectKind::File, &id.0))?;
            hasher.update(&data);
            total += u64::from(c.len);
            visit(Blob::Chunk(&c.id, &data))?;
            chunks.push(ChunkRef {
                id: c.id,
                len: c.len,
            });
        }
    }
    if total != header.size || hasher.finish() != *id {
        return Err(Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason: "content does not hash to its id".into(),
        }));
    }
    let header = header.encode();
    visit(Blob::Header(id, &header))?;
    Ok(FileChunks {
        id: *id,
        header,
        chunks,
    })
}
