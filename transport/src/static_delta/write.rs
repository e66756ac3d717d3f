//! Writing a static delta from a repository that holds both commits.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use rayon::prelude::*;

use super::base::BaseIndex;
use super::{
    max_frame_len, record, HashingWriter, DELTA_TAG, DELTA_VERSION, MAX_DELTA_FILE_SIZE,
    RECORDS_LEVEL, RECORDS_WINDOW_LOG,
};
use crate::compress::{encode_delta_with, DeltaParams, MAX_DELTA_WINDOW};
use crate::error::{Error, Result};
use store::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId};
use store::object::{Commit, DirTree, FileHasher, FileHeader, ObjectKind};
use store::repo::{FileContent, Repo};
use store::walk::{join, Node, WalkOptions, Walker};

/// Files up to this size are read into memory and their frame kept until it is written;
/// larger ones are compressed twice (once to learn the frame's length, once into the
/// output), so memory stays bounded whatever the file sizes.
const IN_MEMORY_MAX: u64 = 64 * 1024 * 1024;
/// Most files compressed in one parallel batch.
const MAX_BATCH_FILES: usize = 4096;
/// A patch-from frame at most 1/8 of the content is kept without also trying a plain
/// frame; above that, both are made and the smaller is kept.
const GOOD_PATCH_RATIO: u64 = 8;

/// zstd level of the cheap first pass over each file when [`StaticDeltaOptions::tuned`].
const PROBE_LEVEL: i32 = 3;
/// A first-pass patch frame at most 1/80 of the content is kept as it is: the file
/// barely changed, and a slow pass would save a few bytes at most.
const NEAR_RATIO: u64 = 80;
/// zstd `targetLength` of the tuned final frame: a match at least this long is taken as
/// it is. Patch frames are mostly long matches into the base; weighing each of them
/// against shorter ones (level 19 sets 256) costs a quarter of the time and, on the
/// transport bench's hop, saves no bytes.
const TUNED_TARGET_LENGTH: u32 = 32;

/// How [`write_static_delta`] compresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticDeltaOptions {
    /// zstd level of the frames (default 19).
    pub level: i32,
    /// Uncompressed bytes of new files compressed in one parallel batch; their frames are
    /// held in memory until the batch is written (default 256 MiB).
    pub batch_bytes: u64,
    /// Spend the compression time where it pays (default true): each file with a base is
    /// first compressed at zstd level 3; that frame is kept when it is at most 1/80 of
    /// the content (a patch against a barely changed file) or when the content does not
    /// compress (at least 9/10 of it), and it decides between patch and plain, so only
    /// one frame is made at `level`. At levels 16 and above (zstd's optimal parsers),
    /// that frame uses a shallow search (`searchLog` 1), match-finder tables of at most
    /// 2^16 entries, long-distance matches from 16 bytes and a `targetLength` of 32:
    /// about a fifth of the time of the plain level for a few percent more bytes. The
    /// smaller of the two frames is written. False: every frame at `level` as zstd
    /// chooses, a plain frame made too when the patch is over 1/8 of the content.
    ///
    /// Either way a file without a base is sent raw, compressed only by the frame around
    /// the records, where it shares one window with the files sent before it.
    pub tuned: bool,
}

impl Default for StaticDeltaOptions {
    fn default() -> Self {
        StaticDeltaOptions {
            level: 19,
            batch_bytes: 256 * 1024 * 1024,
            tuned: true,
        }
    }
}

impl StaticDeltaOptions {
    /// The zstd parameters of the final frame of each file.
    fn params(&self) -> DeltaParams {
        if self.tuned && self.level >= 16 {
            DeltaParams {
                level: self.level,
                search_log: Some(1),
                table_log: Some(16),
                ldm_min_match: Some(16),
                target_length: Some(TUNED_TARGET_LENGTH),
            }
        } else {
            DeltaParams::level(self.level)
        }
    }
}

/// What [`write_static_delta`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticDeltaStats {
    /// BLAKE3 of the delta file: its id (`deltas/<id>.delta`).
    pub id: ObjectId,
    /// Its size in bytes.
    pub size: u64,
    /// Metadata records (the commit, dirtrees, dirmetas).
    pub metadata_objects: u64,
    /// File records.
    pub files: u64,
    /// Files sent as a patch-from frame against a file of `from`.
    pub patched_files: u64,
    /// Files sent as a plain zstd frame.
    pub plain_files: u64,
    /// Files sent raw, compressed only by the frame around the records: those without a
    /// base.
    pub raw_files: u64,
    /// Symlinks and empty files (a header only).
    pub empty_files: u64,
    /// Content bytes of the new files, uncompressed.
    pub content_bytes: u64,
    /// Bytes of the zstd frames of the patched and plain files (raw files have none).
    pub compressed_bytes: u64,
}

impl Default for StaticDeltaStats {
    fn default() -> Self {
        StaticDeltaStats {
            id: ObjectId::from_bytes([0; store::id::ID_LEN]),
            size: 0,
            metadata_objects: 0,
            files: 0,
            patched_files: 0,
            plain_files: 0,
            raw_files: 0,
            empty_files: 0,
            content_bytes: 0,
            compressed_bytes: 0,
        }
    }
}

/// What `from` holds: its objects (not to be sent) and its files by path (the bases).
struct OldTree {
    trees: HashSet<DirTreeId>,
    metas: HashSet<DirMetaId>,
    files: HashSet<FileId>,
    bases: BaseIndex,
}

impl OldTree {
    fn load(repo: &Repo, from: &CommitId) -> Result<Self> {
        let mut old = OldTree {
            trees: HashSet::new(),
            metas: HashSet::new(),
            files: HashSet::new(),
            bases: BaseIndex::default(),
        };
        for entry in Walker::commit(repo, from, WalkOptions::default())? {
            let entry = entry?;
            match entry.node {
                Node::Dir { tree, meta_id, .. } => {
                    old.trees.insert(tree);
                    old.metas.insert(meta_id);
                }
                Node::File { id, .. } => {
                    old.files.insert(id);
                    old.bases.add(&entry.path, id);
                }
            }
        }
        Ok(old)
    }
}

/// One new file to send.
struct Job {
    path: String,
    id: FileId,
    header: FileHeader,
}

enum Content {
    /// A symlink or an empty file.
    None,
    /// A file without a base: its bytes, read again from the repository when written.
    Raw,
    /// A frame made in memory, against `base` if given.
    Frame {
        base: Option<FileId>,
        frame: Vec<u8>,
    },
    /// A large file: the frame is made again, with these parameters and of this length,
    /// while it is written.
    Deferred {
        base: Option<FileId>,
        params: DeltaParams,
        len: u64,
    },
}

struct Encoded {
    id: FileId,
    header: FileHeader,
    content: Content,
}

fn write_err(source: io::Error) -> Error {
    Error::Stream {
        what: "writing a static delta",
        source,
    }
}

fn put(w: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    w.write_all(bytes).map_err(write_err)
}

fn put_bytes(w: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::invalid("static delta record", "longer than 4 GiB"))?;
    put(w, &len.to_le_bytes())?;
    put(w, bytes)
}

/// Write the static delta `from → to` of `repo` to `out` (`docs/transport.md`, section 5):
/// the header, then in one zstd frame every metadata object reachable from `to` and not
/// from `from` (parents before children, starting with the commit `to`), every file object
/// reachable from `to` and not from `from` (in path order, each once) and the end record.
///
/// Each new regular file is compressed against a base from `from` when one is found (the
/// same path; else the same path up to digit runs, as when a version number in a directory
/// or file name changed; else the same file name) and that is smaller than compressing it
/// alone; a file without a base is sent raw, for the frame around the records to compress
/// together with the others. Files are compressed in parallel on the current rayon pool, in batches of about
/// [`StaticDeltaOptions::batch_bytes`], and written in a fixed order: the output depends
/// only on the two commits and the options.
pub fn write_static_delta(
    repo: &Repo,
    from: &CommitId,
    to: &CommitId,
    out: &mut dyn Write,
    opts: &StaticDeltaOptions,
) -> Result<StaticDeltaStats> {
    if from == to {
        return Err(Error::invalid(
            format!("static delta {from} → {to}"),
            "a delta needs two different commits",
        ));
    }
    let old = OldTree::load(repo, from)?;
    let mut w = HashingWriter::new(out);
    let mut stats = StaticDeltaStats::default();
    put(&mut w, DELTA_TAG)?;
    put(&mut w, &[DELTA_VERSION])?;
    put(&mut w, from.0.as_bytes())?;
    put(&mut w, to.0.as_bytes())?;

    // Every record goes through one zstd frame (`docs/transport.md` 5.2).
    let mut records =
        zstd::stream::write::Encoder::new(&mut w, RECORDS_LEVEL).map_err(write_err)?;
    records.window_log(RECORDS_WINDOW_LOG).map_err(write_err)?;
    records.include_checksum(true).map_err(write_err)?;
    let new_files = write_metadata(repo, &old, to, &mut records, &mut stats)?;

    let mut next = 0;
    while next < new_files.len() {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        while next < new_files.len()
            && (batch.is_empty() || (bytes < opts.batch_bytes && batch.len() < MAX_BATCH_FILES))
        {
            let (path, id) = &new_files[next];
            let header = repo.read_file(id)?.0;
            if header.size <= IN_MEMORY_MAX {
                bytes += header.size;
            }
            batch.push(Job {
                path: path.clone(),
                id: *id,
                header,
            });
            next += 1;
        }
        let encoded: Vec<Result<Encoded>> = batch
            .par_iter()
            .map(|job| encode_job(repo, &old.bases, job, opts))
            .collect();
        for e in encoded {
            write_file_record(repo, &mut records, e?, &mut stats)?;
        }
    }

    put(&mut records, &[record::END])?;
    put(&mut records, &stats.metadata_objects.to_le_bytes())?;
    put(&mut records, &stats.files.to_le_bytes())?;
    records.finish().map_err(write_err)?;
    w.flush().map_err(write_err)?;
    (stats.size, stats.id) = w.finish();
    Ok(stats)
}

/// Write the metadata records and return the new files, each once, with the first path
/// it was found at, in walk order.
fn write_metadata(
    repo: &Repo,
    old: &OldTree,
    to: &CommitId,
    w: &mut dyn Write,
    stats: &mut StaticDeltaStats,
) -> Result<Vec<(String, FileId)>> {
    let commit_bytes = repo.read_metadata_bytes(ObjectKind::Commit, &to.0)?;
    let commit = Commit::decode(&commit_bytes).map_err(|e| {
        Error::Store(store::Error::Corrupt {
            kind: ObjectKind::Commit,
            id: to.0,
            reason: e.to_string(),
        })
    })?;
    put(w, &[record::COMMIT])?;
    put_bytes(w, &commit_bytes)?;
    stats.metadata_objects += 1;

    let mut sent_trees = HashSet::new();
    let mut sent_metas = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut new_files = Vec::new();
    let mut stack: Vec<(String, DirTree)> = Vec::new();
    let mut visit = |path: String,
                     tree: DirTreeId,
                     meta: DirMetaId,
                     w: &mut dyn Write,
                     stack: &mut Vec<(String, DirTree)>,
                     stats: &mut StaticDeltaStats|
     -> Result<()> {
        if !old.metas.contains(&meta) && sent_metas.insert(meta) {
            let bytes = repo.read_metadata_bytes(ObjectKind::DirMeta, &meta.0)?;
            put(w, &[record::DIRMETA])?;
            put_bytes(w, &bytes)?;
            stats.metadata_objects += 1;
        }
        if !old.trees.contains(&tree) && sent_trees.insert(tree) {
            let bytes = repo.read_metadata_bytes(ObjectKind::DirTree, &tree.0)?;
            let decoded = DirTree::decode(&bytes).map_err(|e| {
                Error::Store(store::Error::Corrupt {
                    kind: ObjectKind::DirTree,
                    id: tree.0,
                    reason: e.to_string(),
                })
            })?;
            put(w, &[record::DIRTREE])?;
            put_bytes(w, &bytes)?;
            stats.metadata_objects += 1;
            stack.push((path, decoded));
        }
        Ok(())
    };
    visit(
        String::new(),
        commit.root_tree,
        commit.root_meta,
        w,
        &mut stack,
        stats,
    )?;
    while let Some((path, tree)) = stack.pop() {
        for (name, id) in &tree.files {
            if !old.files.contains(id) && seen_files.insert(*id) {
                new_files.push((join(&path, name.as_str()), *id));
            }
        }
        // Pushed in reverse, so subdirectories are taken in name order.
        let mut children = Vec::new();
        for (name, sub, meta) in &tree.dirs {
            visit(
                join(&path, name.as_str()),
                *sub,
                *meta,
                w,
                &mut children,
                stats,
            )?;
        }
        stack.extend(children.into_iter().rev());
    }
    Ok(new_files)
}

/// Read a regular file object into memory, checking it against its id.
fn read_verified(repo: &Repo, id: &FileId) -> Result<(FileHeader, Vec<u8>)> {
    let (header, content) = repo.read_file(id)?;
    let FileContent::Regular(mut r) = content else {
        return Ok((header, Vec::new()));
    };
    let mut data = Vec::with_capacity(usize::try_from(header.size).unwrap_or(0));
    r.read_to_end(&mut data).map_err(|e| read_failed(id, e))?;
    let mut h = FileHasher::new(&header);
    h.update(&data);
    check_content(id, &header, h, data.len() as u64)?;
    Ok((header, data))
}

fn read_failed(id: &FileId, e: io::Error) -> Error {
    Error::Store(store::Error::Corrupt {
        kind: ObjectKind::File,
        id: id.0,
        reason: e.to_string(),
    })
}

/// Check `len` bytes of content read from the repository, hashed into `h`, against the
/// file's id.
fn check_content(id: &FileId, header: &FileHeader, h: FileHasher, len: u64) -> Result<()> {
    if len != header.size || h.finish() != *id {
        return Err(Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason: "content does not hash to its id".into(),
        }));
    }
    Ok(())
}

/// Copy a regular file's content from the repository to `w`, checking it against its id
/// (the bytes are written before the check; a mismatch fails the whole delta).
fn copy_verified(repo: &Repo, id: &FileId, header: &FileHeader, w: &mut dyn Write) -> Result<()> {
    let mut r = open_content(repo, id)?;
    let mut h = FileHasher::new(header);
    let mut buf = vec![0u8; 128 * 1024];
    let mut len = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failed(id, e)),
        };
        h.update(&buf[..n]);
        put(w, &buf[..n])?;
        len += n as u64;
    }
    check_content(id, header, h, len)
}

/// The first usable base among the candidates for `path`: a non-empty regular file no
/// larger than the delta window, with its content.
fn choose_base(repo: &Repo, bases: &BaseIndex, path: &str) -> Result<Option<(FileId, Vec<u8>)>> {
    for cand in bases.candidates(path) {
        let header = repo.read_file(&cand)?.0;
        if header.is_symlink() || header.size == 0 || header.size > MAX_DELTA_WINDOW {
            continue;
        }
        let (_, data) = read_verified(repo, &cand)?;
        return Ok(Some((cand, data)));
    }
    Ok(None)
}

fn open_content(repo: &Repo, id: &FileId) -> Result<Box<dyn Read + Send>> {
    match repo.read_file(id)?.1 {
        FileContent::Regular(r) => Ok(r),
        FileContent::Symlink => Err(Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason: "changed from a regular file to a symlink while a delta was written".into(),
        })),
    }
}

/// One frame made by [`encode_job`]: in memory, or only counted (a large file).
struct Made {
    base: Option<FileId>,
    params: DeltaParams,
    frame: Option<Vec<u8>>,
    len: u64,
}

impl Made {
    fn into_content(self) -> Content {
        match self.frame {
            Some(frame) => Content::Frame {
                base: self.base,
                frame,
            },
            None => Content::Deferred {
                base: self.base,
                params: self.params,
                len: self.len,
            },
        }
    }
}

/// Compress one new file (on a rayon worker).
fn encode_job(
    repo: &Repo,
    bases: &BaseIndex,
    job: &Job,
    opts: &StaticDeltaOptions,
) -> Result<Encoded> {
    let size = job.header.size;
    let done = |content| {
        Ok(Encoded {
            id: job.id,
            header: job.header.clone(),
            content,
        })
    };
    if job.header.is_symlink() || size == 0 {
        return done(Content::None);
    }
    if size > MAX_DELTA_FILE_SIZE {
        return Err(Error::invalid(
            format!("file {} ({})", job.path, job.id),
            format!(
                "{size} bytes is over the {MAX_DELTA_FILE_SIZE}-byte content cap of a static delta"
            ),
        ));
    }
    // Without a base the records frame does better than a frame of the file's own: one
    // window over many files, and no tables per file.
    let Some((base_id, base)) = choose_base(repo, bases, &job.path)? else {
        return done(Content::Raw);
    };
    // Small files are compressed in memory; a large one is only counted now and
    // compressed again into the output, so memory stays bounded.
    let new = if size <= IN_MEMORY_MAX {
        Some(read_verified(repo, &job.id)?.1)
    } else {
        None
    };
    let make = |with_base: bool, params: DeltaParams| -> Result<Made> {
        let (bid, b): (Option<FileId>, &[u8]) = if with_base {
            (Some(base_id), &base)
        } else {
            (None, &[])
        };
        match &new {
            Some(new) => {
                let mut frame = Vec::new();
                let len = encode_delta_with(b, &mut &new[..], size, &mut frame, &params)?;
                Ok(Made {
                    base: bid,
                    params,
                    frame: Some(frame),
                    len,
                })
            }
            None => {
                let len = encode_delta_with(
                    b,
                    &mut open_content(repo, &job.id)?,
                    size,
                    &mut io::sink(),
                    &params,
                )?;
                Ok(Made {
                    base: bid,
                    params,
                    frame: None,
                    len,
                })
            }
        }
    };
    let good = |m: &Made| m.len.saturating_mul(GOOD_PATCH_RATIO) <= size;
    let params = opts.params();
    if !opts.tuned {
        let patch = make(true, params)?;
        if good(&patch) {
            return done(patch.into_content());
        }
        let plain = make(false, params)?;
        return done(if patch.len < plain.len {
            patch.into_content()
        } else {
            plain.into_content()
        });
    }
    // A cheap first pass decides what the slow one is spent on.
    let probe_params = DeltaParams::level(PROBE_LEVEL);
    let patch = make(true, probe_params)?;
    if patch.len.saturating_mul(NEAR_RATIO) <= size {
        return done(patch.into_content());
    }
    let probe = if good(&patch) {
        patch
    } else {
        let plain = make(false, probe_params)?;
        if patch.len < plain.len {
            patch
        } else {
            plain
        }
    };
    if probe.len.saturating_mul(10) >= size.saturating_mul(9) {
        // Incompressible (already compressed content): more effort gains nothing.
        return done(probe.into_content());
    }
    if params == probe.params {
        // `--delta-level 3`: the slow pass would make the same frame again.
        return done(probe.into_content());
    }
    let last = make(probe.base.is_some(), params)?;
    done(if last.len <= probe.len {
        last.into_content()
    } else {
        probe.into_content()
    })
}

fn write_file_record(
    repo: &Repo,
    w: &mut dyn Write,
    e: Encoded,
    stats: &mut StaticDeltaStats,
) -> Result<()> {
    put(w, &[record::FILE])?;
    put(w, e.id.0.as_bytes())?;
    put_bytes(w, &e.header.encode())?;
    let size = e.header.size;
    let (base, len) = match &e.content {
        Content::None => {
            put(w, &[record::CONTENT_NONE])?;
            stats.files += 1;
            stats.empty_files += 1;
            return Ok(());
        }
        Content::Raw => {
            put(w, &[record::CONTENT_RAW])?;
            copy_verified(repo, &e.id, &e.header, w)?;
            stats.files += 1;
            stats.raw_files += 1;
            stats.content_bytes += size;
            return Ok(());
        }
        Content::Frame { base, frame } => (*base, frame.len() as u64),
        Content::Deferred { base, len, .. } => (*base, *len),
    };
    if len > max_frame_len(size) {
        return Err(Error::invalid(
            format!("file {}", e.id),
            format!("its zstd frame of {len} bytes is over the cap for {size} bytes"),
        ));
    }
    match base {
        Some(b) => {
            put(w, &[record::CONTENT_PATCH])?;
            put(w, b.0.as_bytes())?;
            stats.patched_files += 1;
        }
        None => {
            put(w, &[record::CONTENT_ZSTD])?;
            stats.plain_files += 1;
        }
    }
    put(w, &len.to_le_bytes())?;
    match e.content {
        Content::Frame { frame, .. } => put(w, &frame)?,
        Content::Deferred { params, .. } => {
            let base_bytes = match base {
                Some(b) => read_verified(repo, &b)?.1,
                None => Vec::new(),
            };
            let mut counted = CountingWriter { inner: w, len: 0 };
            encode_delta_with(
                &base_bytes,
                &mut open_content(repo, &e.id)?,
                size,
                &mut counted,
                &params,
            )?;
            if counted.len != len {
                return Err(Error::invalid(
                    format!("file {}", e.id),
                    format!(
                        "compressed to {} bytes on the second pass, {len} on the first (zstd is not deterministic here?)",
                        counted.len
                    ),
                ));
            }
        }
        Content::None | Content::Raw => unreachable!("handled above"),
    }
    stats.files += 1;
    stats.content_bytes += size;
    stats.compressed_bytes += len;
    Ok(())
}

/// Passes bytes through, counting them.
struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    len: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
