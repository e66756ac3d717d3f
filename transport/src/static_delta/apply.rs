//! Reading a static delta into a transaction, checking everything on the way.

use std::collections::HashSet;
use std::io::{self, Read};

use super::frame::{read_err, FrameReader, RecordsReader};
use super::{
    max_frame_len, record, DELTA_TAG, DELTA_VERSION, DELTA_VERSION_FRAMED, DELTA_VERSION_PLAIN,
    MAX_DELTA_FILE_SIZE,
};
use crate::compress::MAX_DELTA_WINDOW;
use crate::error::{Error, Result};
use crate::pack::MAX_HEADER_LEN;
use store::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId, ID_LEN};
use store::object::{Commit, DirMeta, DirTree, FileHeader, ObjectKind, MAX_METADATA_SIZE};
use store::repo::{FileContent, Transaction};
use store::walk::{Node, WalkOptions, Walker};

/// What [`apply_static_delta`] read and staged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyStats {
    /// BLAKE3 of every byte read: compare it with the summary's `delta_id`.
    pub id: ObjectId,
    /// Bytes read.
    pub size: u64,
    /// Metadata records (the commit, dirtrees, dirmetas).
    pub metadata_objects: u64,
    /// File records.
    pub files: u64,
    /// Files rebuilt from a patch-from frame against a file of `from`.
    pub patched_files: u64,
    /// Content bytes decoded.
    pub content_bytes: u64,
}

impl Default for ApplyStats {
    fn default() -> Self {
        ApplyStats {
            id: ObjectId::from_bytes([0; ID_LEN]),
            size: 0,
            metadata_objects: 0,
            files: 0,
            patched_files: 0,
            content_bytes: 0,
        }
    }
}

/// The delta file's bytes, hashed and counted as they are read.
struct Hashed<'a> {
    r: &'a mut dyn Read,
    hasher: blake3::Hasher,
    pos: u64,
}

impl Read for Hashed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// The bytes of the header and the records (decoded from their zstd frame in version 2),
/// counted for error messages.
struct Input<'a> {
    r: &'a mut dyn Read,
    pos: u64,
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::decode("static delta", reason)
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Input<'_> {
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(malformed(format!(
                        "truncated: the file ends at byte {} in {what}",
                        self.pos
                    )))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(read_err(source)),
            }
        }
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn id(&mut self, what: &str) -> Result<ObjectId> {
        let mut b = [0u8; ID_LEN];
        self.exact(&mut b, what)?;
        Ok(ObjectId::from_bytes(b))
    }

    /// A `u32` length, checked against `max` before anything is read, then that many
    /// bytes. The buffer grows only as bytes arrive, so a lying length costs nothing.
    fn blob(&mut self, max: u64, what: &str) -> Result<Vec<u8>> {
        let len = u64::from(self.u32(what)?);
        if len > max {
            return Err(malformed(format!(
                "{what} of {len} bytes at byte {} is over its {max}-byte cap",
                self.pos - 4
            )));
        }
        let mut v = Vec::with_capacity(usize::try_from(len.min(64 * 1024)).unwrap_or(0));
        (&mut *self)
            .take(len)
            .read_to_end(&mut v)
            .map_err(read_err)?;
        if v.len() as u64 != len {
            return Err(malformed(format!(
                "truncated: the file ends at byte {} in {what} ({} of {len} bytes)",
                self.pos,
                v.len()
            )));
        }
        Ok(v)
    }
}

/// What the delta has named and sent so far.
#[derive(Default)]
struct Seen {
    named_trees: HashSet<DirTreeId>,
    named_metas: HashSet<DirMetaId>,
    named_files: HashSet<FileId>,
    sent_trees: HashSet<DirTreeId>,
    sent_metas: HashSet<DirMetaId>,
    sent_files: HashSet<FileId>,
    /// The file objects of `from`, once a patch needs them.
    from_files: Option<HashSet<FileId>>,
}

/// Read the static delta `from → to` from `input` into `txn` (`docs/transport.md`,
/// section 5). The repository must hold the commit `from` and everything reachable from
/// it; every patch base must be a file of `from`.
///
/// Every metadata object is checked against its BLAKE3 and decoded strictly before it is
/// staged, and must be named by the commit or a dirtree sent before it; every file is
/// rebuilt (its zstd frame decoded with the window and length caps of [`crate::compress`])
/// and must hash, header and content, to its file id, which a dirtree of the delta must
/// name. After the end record, everything `to` names that the delta did not send must
/// already be in the repository. Any failure is an error and the caller drops the
/// transaction, so nothing of a bad delta enters the store. The returned
/// [`ApplyStats::id`] and [`ApplyStats::size`] are the BLAKE3 and length of the bytes
/// read, for the caller to compare with the summary's pin (ideally checked before
/// applying, on the downloaded file).
pub fn apply_static_delta(
    txn: &Transaction<'_>,
    input: &mut dyn Read,
    from: &CommitId,
    to: &CommitId,
) -> Result<ApplyStats> {
    let mut raw = Hashed {
        r: input,
        hasher: blake3::Hasher::new(),
        pos: 0,
    };
    let version = read_header(&mut raw, txn, from, to)?;
    let mut stats = ApplyStats::default();
    let seen = if version == DELTA_VERSION_PLAIN {
        let pos = raw.pos;
        let mut input = Input { r: &mut raw, pos };
        read_records(txn, &mut input, version, from, to, &mut stats)?
    } else {
        let mut records = RecordsReader::new(&mut raw)?;
        let mut input = Input {
            r: &mut records,
            pos: 0,
        };
        read_records(txn, &mut input, version, from, to, &mut stats)?
    };
    check_complete(txn, from, to, &seen)?;
    stats.size = raw.pos;
    stats.id = ObjectId::from(raw.hasher.finalize());
    Ok(stats)
}

/// Read and check the header; returns the format version.
fn read_header(
    raw: &mut Hashed<'_>,
    txn: &Transaction<'_>,
    from: &CommitId,
    to: &CommitId,
) -> Result<u8> {
    let mut input = Input { r: raw, pos: 0 };
    let mut tag = [0u8; 4];
    input.exact(&mut tag, "the tag")?;
    if &tag != DELTA_TAG {
        return Err(malformed(format!(
            "not a static delta: it starts with {:02x?}, not \"UDLT\"",
            tag
        )));
    }
    let version = input.u8("the version")?;
    match version {
        DELTA_VERSION | DELTA_VERSION_FRAMED | DELTA_VERSION_PLAIN => {}
        0 => return Err(malformed("format version 0")),
        v => {
            return Err(Error::Store(store::Error::NewerFormat {
                what: "static delta",
                found: v.into(),
                supported: DELTA_VERSION.into(),
            }))
        }
    }
    let d_from = CommitId(input.id("the from commit")?);
    let d_to = CommitId(input.id("the to commit")?);
    if (d_from, d_to) != (*from, *to) {
        return Err(Error::invalid(
            format!("static delta {d_from} → {d_to}"),
            format!("expected the delta from {from} to {to}"),
        ));
    }
    if !txn.repo().has_object(ObjectKind::Commit, &from.0)? {
        return Err(Error::invalid(
            format!("static delta {from} → {to}"),
            format!("this repository does not have commit {from}, which the delta starts from"),
        ));
    }
    Ok(version)
}

/// Read the records up to and including the end record, staging every object, and check
/// that nothing follows.
fn read_records(
    txn: &Transaction<'_>,
    input: &mut Input<'_>,
    version: u8,
    from: &CommitId,
    to: &CommitId,
    stats: &mut ApplyStats,
) -> Result<Seen> {
    let mut seen = Seen::default();
    let mut files_started = false;
    loop {
        let at = input.pos;
        let kind = input.u8("a record kind")?;
        match kind {
            record::COMMIT => {
                if stats.metadata_objects > 0 {
                    return Err(malformed(format!("a second commit record at byte {at}")));
                }
                let bytes = input.blob(MAX_METADATA_SIZE, "the commit")?;
                let id = ObjectId::of(&bytes);
                if id != to.0 {
                    return Err(malformed(format!(
                        "the commit record hashes to {id}, not to the commit {to}"
                    )));
                }
                let c = Commit::decode(&bytes)?;
                txn.write_commit(&c)?;
                seen.named_trees.insert(c.root_tree);
                seen.named_metas.insert(c.root_meta);
                stats.metadata_objects += 1;
            }
            record::DIRTREE | record::DIRMETA => {
                if stats.metadata_objects == 0 {
                    return Err(malformed(format!(
                        "record at byte {at} comes before the commit record"
                    )));
                }
                if files_started {
                    return Err(malformed(format!(
                        "metadata record at byte {at} after file records"
                    )));
                }
                let name = if kind == record::DIRTREE {
                    "dirtree"
                } else {
                    "dirmeta"
                };
                let bytes = input.blob(MAX_METADATA_SIZE, name)?;
                let id = ObjectId::of(&bytes);
                let (named, fresh) = if kind == record::DIRTREE {
                    let t = DirTreeId(id);
                    (seen.named_trees.contains(&t), seen.sent_trees.insert(t))
                } else {
                    let m = DirMetaId(id);
                    (seen.named_metas.contains(&m), seen.sent_metas.insert(m))
                };
                if !named {
                    return Err(malformed(format!(
                        "{name} {id} (record at byte {at}) is not named by the commit or a dirtree before it"
                    )));
                }
                if !fresh {
                    return Err(malformed(format!("{name} {id} is sent twice")));
                }
                if kind == record::DIRTREE {
                    let t = DirTree::decode(&bytes)?;
                    txn.write_dirtree(&t)?;
                    for (_, f) in &t.files {
                        seen.named_files.insert(*f);
                    }
                    for (_, sub, meta) in &t.dirs {
                        seen.named_trees.insert(*sub);
                        seen.named_metas.insert(*meta);
                    }
                } else {
                    txn.write_dirmeta(&DirMeta::decode(&bytes)?)?;
                }
                stats.metadata_objects += 1;
            }
            record::FILE => {
                if stats.metadata_objects == 0 {
                    return Err(malformed(format!(
                        "record at byte {at} comes before the commit record"
                    )));
                }
                files_started = true;
                apply_file(txn, input, version, from, &mut seen, stats)?;
            }
            record::END => {
                if stats.metadata_objects == 0 {
                    return Err(malformed("no commit record"));
                }
                let nmeta = input.u64("the end record")?;
                let nfiles = input.u64("the end record")?;
                if (nmeta, nfiles) != (stats.metadata_objects, stats.files) {
                    return Err(malformed(format!(
                        "the end record counts {nmeta} metadata and {nfiles} file records, the delta has {} and {}",
                        stats.metadata_objects, stats.files
                    )));
                }
                let mut one = [0u8; 1];
                loop {
                    match input.read(&mut one) {
                        Ok(0) => break,
                        Ok(_) => {
                            return Err(malformed(format!(
                                "bytes after the end record (at byte {})",
                                input.pos - 1
                            )))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(source) => return Err(read_err(source)),
                    }
                }
                break;
            }
            other => {
                return Err(malformed(format!(
                    "unknown record kind {other} at byte {at}"
                )))
            }
        }
    }
    Ok(seen)
}

/// Read one file record and stage the file.
fn apply_file(
    txn: &Transaction<'_>,
    input: &mut Input<'_>,
    version: u8,
    from: &CommitId,
    seen: &mut Seen,
    stats: &mut ApplyStats,
) -> Result<()> {
    let id = FileId(input.id("a file id")?);
    if !seen.named_files.contains(&id) {
        return Err(malformed(format!(
            "file {id} is not named by any dirtree of the delta"
        )));
    }
    if !seen.sent_files.insert(id) {
        return Err(malformed(format!("file {id} is sent twice")));
    }
    let hbytes = input.blob(u64::from(MAX_HEADER_LEN), "a file header")?;
    let header =
        FileHeader::decode(&hbytes).map_err(|e| malformed(format!("file {id}: header: {e}")))?;
    if header.encode() != hbytes {
        return Err(malformed(format!("file {id}: header is not canonical")));
    }
    let has_content = !header.is_symlink() && header.size > 0;
    let encoding = input.u8("a file's content encoding")?;
    let got = match encoding {
        record::CONTENT_NONE => {
            if has_content {
                return Err(malformed(format!(
                    "file {id} of {} bytes comes without content",
                    header.size
                )));
            }
            txn.write_file(&header, &mut io::empty())?
        }
        record::CONTENT_RAW if version >= DELTA_VERSION => {
            let size = content_size(&id, &header)?;
            let mut content = RawContent {
                input,
                left: size,
                error: None,
            };
            let got = match txn.write_file(&header, &mut content) {
                Ok(got) => got,
                Err(e) => {
                    return Err(match content.error.take() {
                        Some(Error::Store(store::Error::Decode { reason, .. })) => {
                            malformed(format!("file {id}: {reason}"))
                        }
                        Some(e) => e,
                        None => e.into(),
                    })
                }
            };
            stats.content_bytes += size;
            got
        }
        record::CONTENT_ZSTD | record::CONTENT_PATCH => {
            let size = content_size(&id, &header)?;
            let base = if encoding == record::CONTENT_PATCH {
                let b = FileId(input.id("a base file id")?);
                Some(load_base(txn, from, seen, &id, &b)?)
            } else {
                None
            };
            let frame_len = input.u64("a frame length")?;
            if frame_len == 0 || frame_len > max_frame_len(size) {
                return Err(malformed(format!(
                    "file {id}: a zstd frame of {frame_len} bytes for {size} bytes of content (allowed 1..={})",
                    max_frame_len(size)
                )));
            }
            let mut frame = FrameReader::new(input, frame_len, base.as_deref(), size)?;
            let got = match txn.write_file(&header, &mut frame) {
                Ok(got) => got,
                Err(e) => {
                    let e = frame.take_error().unwrap_or_else(|| e.into());
                    return Err(match e {
                        Error::Decompress { problem, .. } => {
                            malformed(format!("file {id}: content: {problem}"))
                        }
                        e => e,
                    });
                }
            };
            if !frame.finished() {
                return Err(malformed(format!(
                    "file {id}: zstd frame not read to its end"
                )));
            }
            if base.is_some() {
                stats.patched_files += 1;
            }
            stats.content_bytes += size;
            got
        }
        other => {
            return Err(malformed(format!(
                "file {id}: unknown content encoding {other}"
            )))
        }
    };
    if got != id {
        return Err(Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: id.0,
            reason: format!("the static delta's header and content hash to {got}"),
        }));
    }
    stats.files += 1;
    Ok(())
}

/// The size of a file record's content, which must be there and within the cap.
fn content_size(id: &FileId, header: &FileHeader) -> Result<u64> {
    if header.is_symlink() || header.size == 0 {
        return Err(malformed(format!(
            "file {id} has no content (a symlink or empty) but comes with some"
        )));
    }
    let size = header.size;
    if size > MAX_DELTA_FILE_SIZE {
        return Err(malformed(format!(
            "file {id} of {size} bytes is over the {MAX_DELTA_FILE_SIZE}-byte content cap"
        )));
    }
    Ok(size)
}

/// A raw file's content: the next `left` bytes of the records. The records ending
/// before that is an error, kept for the caller (the store sees only an I/O error).
struct RawContent<'a, 'b> {
    input: &'a mut Input<'b>,
    left: u64,
    error: Option<Error>,
}

impl Read for RawContent<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.input.read(&mut buf[..want]) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "the records end");
                self.error = Some(malformed(format!(
                    "truncated: the records end at byte {} with {} bytes of its content to come",
                    self.input.pos, self.left
                )));
                Err(e)
            }
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                self.error = Some(read_err(e));
                Err(shown)
            }
        }
    }
}

/// The content of the base file `base` that `file` is patched against: a regular file of
/// `from`, present here, within the delta window.
fn load_base(
    txn: &Transaction<'_>,
    from: &CommitId,
    seen: &mut Seen,
    file: &FileId,
    base: &FileId,
) -> Result<Vec<u8>> {
    let repo = txn.repo();
    if seen.from_files.is_none() {
        let mut files = HashSet::new();
        for entry in Walker::commit(repo, from, WalkOptions::default())? {
            if let Node::File { id, .. } = entry?.node {
                files.insert(id);
            }
        }
        seen.from_files = Some(files);
    }
    let in_from = seen
        .from_files
        .as_ref()
        .is_some_and(|files| files.contains(base));
    if !in_from {
        return Err(malformed(format!(
            "file {file} is patched against {base}, which is not a file of commit {from}"
        )));
    }
    let (header, content) = match repo.read_file(base) {
        Ok(x) => x,
        Err(store::Error::MissingObject { .. }) => {
            return Err(Error::invalid(
                format!("static delta base {base}"),
                format!(
                    "file {file} is patched against it, but this repository lacks it (is commit {from} complete here?)"
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let FileContent::Regular(mut r) = content else {
        return Err(malformed(format!(
            "file {file} is patched against {base}, a symlink"
        )));
    };
    if header.size > MAX_DELTA_WINDOW {
        return Err(malformed(format!(
            "file {file} is patched against {base} of {} bytes, over the {MAX_DELTA_WINDOW}-byte delta window",
            header.size
        )));
    }
    let mut data = Vec::with_capacity(usize::try_from(header.size).unwrap_or(0));
    r.read_to_end(&mut data).map_err(|e| {
        Error::Store(store::Error::Corrupt {
            kind: ObjectKind::File,
            id: base.0,
            reason: e.to_string(),
        })
    })?;
    Ok(data)
}

/// Everything `to` names that the delta did not send is in the repository already. A
/// dirtree found there is taken as complete: it belongs to `from`, which the repository
/// holds in full.
fn check_complete(
    txn: &Transaction<'_>,
    from: &CommitId,
    to: &CommitId,
    seen: &Seen,
) -> Result<()> {
    let missing = |kind: ObjectKind, id: &ObjectId| {
        Error::invalid(
            format!("static delta {from} → {to}"),
            format!("{kind} {id} of commit {to} is neither in the delta nor in this repository"),
        )
    };
    for t in seen.named_trees.difference(&seen.sent_trees) {
        if !txn.has_object(ObjectKind::DirTree, &t.0)? {
            return Err(missing(ObjectKind::DirTree, &t.0));
        }
    }
    for m in seen.named_metas.difference(&seen.sent_metas) {
        if !txn.has_object(ObjectKind::DirMeta, &m.0)? {
            return Err(missing(ObjectKind::DirMeta, &m.0));
        }
    }
    for f in seen.named_files.difference(&seen.sent_files) {
        if !txn.has_object(ObjectKind::File, &f.0)? {
            return Err(missing(ObjectKind::File, &f.0));
        }
    }
    Ok(())
}
