//! Where the bytes of a file being rebuilt come from: chunks fetched with its batch (still
//! compressed, verified when used), chunks taken from the pull's pack streams while the
//! file is read (a file too large for one batch), or chunks of files the store already
//! holds, checked against their ids and fetched instead when the local copy is damaged.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pack::{verify_blob, BlobKind, IndexEntry, PackIndex};
use store::id::ObjectId;
use store::repo::FileContent;
use store::{FileId, Repo};

use fetch::Fetcher;

use super::PullError;

/// Where a blob is: which pack (index into the summary's list) and its entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loc {
    pub(super) pack: usize,
    pub(super) entry: IndexEntry,
}

/// The blob `(kind, id)` in the first listed pack that holds it.
pub(super) fn locate(packs: &[PackIndex], kind: BlobKind, id: &ObjectId) -> Option<Loc> {
    packs.iter().enumerate().find_map(|(pack, index)| {
        index.find(kind, id).map(|entry| Loc {
            pack,
            entry: *entry,
        })
    })
}

/// One chunk of a file's content.
pub(super) enum Piece<'a> {
    /// Fetched with the batch: its stored bytes.
    Fetched { loc: Loc, stored: &'a [u8] },
    /// Taken from the pack streams while the file is read.
    Remote(Loc),
    /// Held locally, as bytes `offset..offset + len` of a file object in the store.
    Local {
        file: FileId,
        offset: u64,
        len: u32,
        id: ObjectId,
    },
}

/// The published file of pack `index`.
pub(super) fn pack_file(index: &PackIndex) -> String {
    format!("packs/{}.pack", index.pack_id())
}

/// The raw bytes of the blob at `loc`, checked against its index entry; a blob that fails
/// its check is reported with the remote and the published file that served it.
pub(super) fn verified(
    remote: &str,
    packs: &[PackIndex],
    loc: &Loc,
    stored: &[u8],
) -> Result<Vec<u8>, PullError> {
    let index = &packs[loc.pack];
    verify_blob(index, &loc.entry, stored).map_err(|e| match e {
        crate::Error::BadBlob {
            kind, id, reason, ..
        } => PullError::DamagedPack {
            remote: remote.to_owned(),
            file: pack_file(index),
            kind: kind.name(),
            id,
            reason,
        },
        other => other.into(),
    })
}

/// The error a [`ContentReader`] failed with, when the store reports it as an I/O error on
/// its temporary file: the reader's own error names the remote and the published file.
pub(super) fn reader_error(e: store::Error) -> PullError {
    let store::Error::Io { path, source } = e else {
        return e.into();
    };
    let ours = source
        .get_ref()
        .is_some_and(|r| r.is::<PullError>() || r.is::<fetch::Error>());
    if !ours {
        return store::Error::Io { path, source }.into();
    }
    match source
        .into_inner()
        .map(|inner| inner.downcast::<PullError>())
    {
        Some(Ok(pull)) => *pull,
        Some(Err(inner)) => match inner.downcast::<fetch::Error>() {
            Ok(fetch) => PullError::Fetch(*fetch),
            Err(inner) => PullError::Local {
                path,
                source: io::Error::other(inner),
            },
        },
        None => PullError::Local {
            path,
            source: io::Error::other("reading failed"),
        },
    }
}

/// What a reader needs to fetch chunks itself.
pub(super) struct Remote<'a> {
    /// The remote's name, for errors.
    pub(super) name: &'a str,
    pub(super) fetcher: &'a Fetcher,
    pub(super) packs: &'a [PackIndex],
    /// Bytes fetched besides the plan (for damaged local chunks), for the pull's total.
    pub(super) fetched: &'a AtomicU64,
}

/// Fetch the stored bytes of `locs` from their packs, one `get_ranges` per pack (the fetch
/// layer coalesces and groups the ranges into few requests), in the order of `locs`.
pub(super) fn fetch_locs(
    fetcher: &Fetcher,
    packs: &[PackIndex],
    locs: &[Loc],
) -> Result<Vec<Vec<u8>>, fetch::Error> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new(); locs.len()];
    let mut pack_ids: Vec<usize> = locs.iter().map(|l| l.pack).collect();
    pack_ids.sort_unstable();
    pack_ids.dedup();
    for pack in pack_ids {
        let which: Vec<usize> = (0..locs.len()).filter(|&i| locs[i].pack == pack).collect();
        let ranges: Vec<(u64, u64)> = which
            .iter()
            .map(|&i| (locs[i].entry.offset, u64::from(locs[i].entry.stored_len)))
            .collect();
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        let parts = fetcher.get_ranges(&pack_file(&packs[pack]), &ranges, total)?;
        for (i, part) in which.into_iter().zip(parts) {
            out[i] = part;
        }
    }
    Ok(out)
}

impl Remote<'_> {
    /// Fetch `locs` and return their stored bytes in order, counting the bytes.
    fn fetch(&self, locs: &[Loc]) -> io::Result<Vec<Vec<u8>>> {
        let parts = fetch_locs(self.fetcher, self.packs, locs).map_err(io::Error::other)?;
        let total: u64 = locs.iter().map(|l| u64::from(l.entry.stored_len)).sum();
        self.fetched.fetch_add(total, Ordering::Relaxed);
        Ok(parts)
    }
}

/// Takes the stored bytes of a chunk from the pull's pack streams.
pub(super) type Take<'t> = &'t mut (dyn FnMut(&Loc) -> io::Result<Vec<u8>> + 't);

/// Local files kept open, so chunks taken from a few files in turn are read without
/// decompressing a file from its start again.
const OPEN_FILES: usize = 4;

/// Reads a file's content chunk after chunk, checking each chunk's hash as it is used.
/// Errors carry the store's or the fetch layer's message.
pub(super) struct ContentReader<'a, 't> {
    repo: &'a Repo,
    remote: &'a Remote<'a>,
    pieces: std::vec::IntoIter<Piece<'a>>,
    /// Where [`Piece::Remote`] chunks come from (else they are fetched one by one).
    take: Option<Take<'t>>,
    current: Vec<u8>,
    pos: usize,
    /// Local files being read from, and how far into their content.
    open: Vec<(FileId, u64, Box<dyn Read + Send>)>,
}

impl<'a, 't> ContentReader<'a, 't> {
    pub(super) fn new(
        repo: &'a Repo,
        remote: &'a Remote<'a>,
        pieces: Vec<Piece<'a>>,
        take: Option<Take<'t>>,
    ) -> Self {
        ContentReader {
            repo,
            remote,
            pieces: pieces.into_iter(),
            take,
            current: Vec::new(),
            pos: 0,
            open: Vec::new(),
        }
    }

    fn verify(&self, loc: &Loc, stored: &[u8]) -> io::Result<Vec<u8>> {
        verified(self.remote.name, self.remote.packs, loc, stored).map_err(io::Error::other)
    }

    fn local(&mut self, file: FileId, offset: u64, len: u32, id: ObjectId) -> io::Result<Vec<u8>> {
        match self.read_local(file, offset, len, id) {
            Ok(bytes) => Ok(bytes),
            // A damaged or vanished local copy does not block the pull: the chunk is
            // published too, so fetch it.
            Err(local) => {
                let Some(loc) = locate(self.remote.packs, BlobKind::Chunk, &id) else {
                    return Err(local);
                };
                let stored = self.remote.fetch(&[loc])?;
                self.verify(&loc, &stored[0])
            }
        }
    }

    fn read_local(
        &mut self,
        file: FileId,
        offset: u64,
        len: u32,
        id: ObjectId,
    ) -> io::Result<Vec<u8>> {
        let slot = self
            .open
            .iter()
            .position(|(f, at, _)| *f == file && *at <= offset);
        let slot = match slot {
            Some(i) => i,
            None => {
                let (_, content) = self.repo.read_file(&file).map_err(io::Error::other)?;
                let FileContent::Regular(reader) = content else {
                    return Err(io::Error::other(format!(
                        "local file {file}, named as holding chunk {id}, is a symlink"
                    )));
                };
                if self.open.len() == OPEN_FILES {
                    self.open.remove(0);
                }
                self.open.push((file, 0, reader));
                self.open.len() - 1
            }
        };
        let (_, at, reader) = &mut self.open[slot];
        let skip = offset - *at;
        let skipped = io::copy(&mut reader.by_ref().take(skip), &mut io::sink());
        let mut buf = vec![0u8; len as usize];
        let read = skipped.and_then(|n| {
            if n == skip {
                reader.read_exact(&mut buf)
            } else {
                Err(io::Error::other("shorter than its chunk index says"))
            }
        });
        if let Err(e) = read {
            self.open.remove(slot);
            return Err(io::Error::other(format!("local file {file}: {e}")));
        }
        *at = offset + u64::from(len);
        if ObjectId::of(&buf) != id {
            self.open.remove(slot);
            return Err(io::Error::other(format!(
                "chunk {id} of local file {file} does not hash to its id (the local object \
                 is damaged: run `update fsck`)"
            )));
        }
        Ok(buf)
    }
}

impl Read for ContentReader<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let next = match self.pieces.next() {
                None => return Ok(0),
                Some(Piece::Fetched { loc, stored }) => self.verify(&loc, stored)?,
                Some(Piece::Remote(loc)) => {
                    let stored = match &mut self.take {
                        Some(take) => take(&loc)?,
                        None => self.remote.fetch(&[loc])?.remove(0),
                    };
                    self.verify(&loc, &stored)?
                }
                Some(Piece::Local {
                    file,
                    offset,
                    len,
                    id,
                }) => self.local(file, offset, len, id)?,
            };
            self.current = next;
            self.pos = 0;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
