//! Where the bytes of a file being rebuilt come from: chunks fetched with its batch (still
//! compressed, verified when used), chunks fetched while the file is read (a file too large
//! for one batch streams in windows), or chunks of files the store already holds, checked
//! against their ids and fetched instead when the local copy is damaged.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use store::id::ObjectId;
use store::pack::{verify_blob, BlobKind, IndexEntry, PackIndex};
use store::repo::FileContent;
use store::{FileId, Repo};

use crate::Fetcher;

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
    /// To be fetched while the file is read.
    Remote(Loc),
    /// Held locally, as bytes `offset..offset + len` of a file object in the store.
    Local {
        file: FileId,
        offset: u64,
        len: u32,
        id: ObjectId,
    },
}

/// What a reader needs to fetch chunks itself.
pub(super) struct Remote<'a> {
    pub(super) fetcher: &'a Fetcher,
    pub(super) packs: &'a [PackIndex],
    /// Stored bytes fetched per window of a streamed file.
    pub(super) window: u64,
    /// Bytes fetched, for the pull's total.
    pub(super) fetched: &'a AtomicU64,
}

/// Fetch the stored bytes of `locs` from their packs, one `get_ranges` per pack (the fetch
/// layer coalesces and groups the ranges into few requests), in the order of `locs`.
pub(super) fn fetch_locs(
    fetcher: &Fetcher,
    packs: &[PackIndex],
    locs: &[Loc],
) -> Result<Vec<Vec<u8>>, crate::Error> {
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
        let path = format!("packs/{}.pack", packs[pack].pack_id());
        let parts = fetcher.get_ranges(&path, &ranges, total)?;
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

/// Local files kept open, so chunks taken from a few files in turn are read without
/// decompressing a file from its start again.
const OPEN_FILES: usize = 4;

/// Reads a file's content chunk after chunk, checking each chunk's hash as it is used.
/// Errors carry the store's or the fetch layer's message.
pub(super) struct ContentReader<'a> {
    repo: &'a Repo,
    remote: &'a Remote<'a>,
    pieces: std::iter::Peekable<std::vec::IntoIter<Piece<'a>>>,
    /// Chunks of a streamed window, fetched but not yet used: entry and stored bytes.
    window: VecDeque<(Loc, Vec<u8>)>,
    current: Vec<u8>,
    pos: usize,
    /// Local files being read from, and how far into their content.
    open: Vec<(FileId, u64, Box<dyn Read + Send>)>,
}

impl<'a> ContentReader<'a> {
    pub(super) fn new(repo: &'a Repo, remote: &'a Remote<'a>, pieces: Vec<Piece<'a>>) -> Self {
        ContentReader {
            repo,
            remote,
            pieces: pieces.into_iter().peekable(),
            window: VecDeque::new(),
            current: Vec::new(),
            pos: 0,
            open: Vec::new(),
        }
    }

    fn verify(&self, loc: &Loc, stored: &[u8]) -> io::Result<Vec<u8>> {
        verify_blob(&self.remote.packs[loc.pack], &loc.entry, stored).map_err(io::Error::other)
    }

    /// Fetch the next window of a streamed file: `first` and the remote chunks right after
    /// it, about `window` stored bytes in all.
    fn fill_window(&mut self, first: Loc) -> io::Result<()> {
        let mut locs = vec![first];
        let mut bytes = u64::from(first.entry.stored_len);
        while bytes < self.remote.window {
            match self.pieces.peek() {
                Some(Piece::Remote(loc)) => {
                    bytes += u64::from(loc.entry.stored_len);
                    locs.push(*loc);
                    self.pieces.next();
                }
                _ => break,
            }
        }
        let stored = self.remote.fetch(&locs)?;
        self.window = locs.into_iter().zip(stored).collect();
        Ok(())
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

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let next = if let Some((loc, stored)) = self.window.pop_front() {
                self.verify(&loc, &stored)?
            } else {
                match self.pieces.next() {
                    None => return Ok(0),
                    Some(Piece::Fetched { loc, stored }) => self.verify(&loc, stored)?,
                    Some(Piece::Remote(loc)) => {
                        self.fill_window(loc)?;
                        continue;
                    }
                    Some(Piece::Local {
                        file,
                        offset,
                        len,
                        id,
                    }) => self.local(file, offset, len, id)?,
                }
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
