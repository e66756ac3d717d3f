//! Where the bytes of a file being rebuilt come from: chunks fetched in this batch
//! (still compressed, verified when used) or chunks of files the store already holds.

use std::io::{self, Read};

use store::id::ObjectId;
use store::pack::{verify_blob, IndexEntry, PackIndex};
use store::repo::FileContent;
use store::{FileId, Repo};

/// One chunk of a file's content.
pub(super) enum Piece<'a> {
    /// Fetched in this batch: its stored bytes and the index entry they are checked against.
    Fetched {
        index: &'a PackIndex,
        entry: &'a IndexEntry,
        stored: &'a [u8],
    },
    /// Held locally, as bytes `offset..offset + len` of a file object in the store.
    Local {
        file: FileId,
        offset: u64,
        len: u32,
        id: ObjectId,
    },
}

/// Reads a file's content chunk after chunk, checking each chunk's hash as it is used.
/// Errors carry the store's message.
pub(super) struct ContentReader<'a> {
    repo: &'a Repo,
    pieces: std::vec::IntoIter<Piece<'a>>,
    current: Vec<u8>,
    pos: usize,
    /// The local file being read from, and how far into its content.
    open: Option<(FileId, u64, Box<dyn Read + Send>)>,
}

impl<'a> ContentReader<'a> {
    pub(super) fn new(repo: &'a Repo, pieces: Vec<Piece<'a>>) -> Self {
        ContentReader {
            repo,
            pieces: pieces.into_iter(),
            current: Vec::new(),
            pos: 0,
            open: None,
        }
    }

    fn local(&mut self, file: FileId, offset: u64, len: u32, id: ObjectId) -> io::Result<Vec<u8>> {
        let reuse = matches!(&self.open, Some((f, at, _)) if *f == file && *at <= offset);
        if !reuse {
            let (_, content) = self.repo.read_file(&file).map_err(io::Error::other)?;
            let FileContent::Regular(reader) = content else {
                return Err(io::Error::other(format!(
                    "local file {file}, named as holding chunk {id}, is a symlink"
                )));
            };
            self.open = Some((file, 0, reader));
        }
        let (_, at, reader) = self.open.as_mut().expect("opened above");
        let skip = offset - *at;
        let skipped = io::copy(&mut reader.by_ref().take(skip), &mut io::sink())?;
        let mut buf = vec![0u8; len as usize];
        if skipped != skip {
            return Err(io::Error::other(format!(
                "local file {file} is shorter than its chunk index says"
            )));
        }
        reader.read_exact(&mut buf)?;
        *at = offset + u64::from(len);
        if ObjectId::of(&buf) != id {
            return Err(io::Error::other(format!(
                "chunk {id} of local file {file} does not hash to its id: the local \
                 object is damaged (run `update fsck`)"
            )));
        }
        Ok(buf)
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(piece) = self.pieces.next() else {
                return Ok(0);
            };
            self.current = match piece {
                Piece::Fetched {
                    index,
                    entry,
                    stored,
                } => verify_blob(index, entry, stored).map_err(io::Error::other)?,
                Piece::Local {
                    file,
                    offset,
                    len,
                    id,
                } => self.local(file, offset, len, id)?,
            };
            self.pos = 0;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
