//! The `file://` backend: the same caps and checks as HTTP, on a local directory (a mounted
//! USB stick or a mirror), so callers verify both the same way.
//!
//! A file source is as untrusted as a server. Below the configured root, every path is
//! opened one component at a time relative to its directory, never following a symbolic
//! link (a `summary` linking to a host file would otherwise be read as the repository's),
//! and the last component with `O_NONBLOCK`, so a FIFO cannot block the open; anything
//! but a regular file is then refused by its type. Reads run on a thread of their own and
//! the caller waits at most the call's deadline: a read stuck on a dead USB stick or NFS
//! server fails the call in time (the thread stays blocked in the kernel until the read
//! returns, and then exits).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, IoResultExt};
use crate::ranges::total_len;
use crate::stream::Sink;

/// Bytes copied between two looks at the deadline in [`download_to`].
const COPY_STEP: usize = 1 << 20;

/// A file below the source's root: `rel` is a checked repository path (`packs/x.pack`).
#[derive(Clone, Debug)]
pub(crate) struct Source {
    /// The local path, for I/O errors.
    pub(crate) path: PathBuf,
    /// The root directory of the repository.
    pub(crate) root: PathBuf,
    /// The repository-relative path.
    pub(crate) rel: String,
    /// The URL, for errors.
    pub(crate) url: String,
}

fn io<T>(r: rustix::io::Result<T>) -> std::io::Result<T> {
    r.map_err(Into::into)
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

impl Source {
    fn not_a_file(&self, shown: &Path, kind: &'static str) -> Error {
        Error::NotAFile {
            url: self.url.clone(),
            path: shown.to_path_buf(),
            kind,
        }
    }

    /// What `name` in `dir` is, for an open that failed without following it.
    fn refused(&self, dir: &OwnedFd, name: &str, shown: &Path, errno: Errno) -> Error {
        match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => self.not_a_file(shown, kind_name(FileType::from_raw_mode(st.st_mode))),
            Err(_) => Error::File {
                path: shown.to_path_buf(),
                source: errno.into(),
            },
        }
    }

    /// Opens the file for reading: no symlink followed below the root, no blocking on a
    /// FIFO, nothing but a regular file accepted.
    pub(crate) fn open(&self) -> Result<File, Error> {
        let not_found = |e: Errno| {
            if e == Errno::NOENT {
                Error::NotFound {
                    url: self.url.clone(),
                }
            } else {
                Error::File {
                    path: self.path.clone(),
                    source: e.into(),
                }
            }
        };
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir =
            rustix::fs::open(&self.root, dir_flags, Mode::empty()).map_err(|e| match e {
                Errno::NOENT => not_found(e),
                e => Error::File {
                    path: self.root.clone(),
                    source: e.into(),
                },
            })?;
        let mut shown = self.root.clone();
        let mut parts = self.rel.split('/').peekable();
        while let Some(name) = parts.next() {
            shown.push(name);
            if parts.peek().is_some() {
                dir = match rustix::fs::openat(
                    &dir,
                    name,
                    dir_flags | OFlags::NOFOLLOW,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Err(not_found(Errno::NOENT)),
                    Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                        return Err(self.refused(&dir, name, &shown, e))
                    }
                    Err(e) => return Err(not_found(e)),
                };
                continue;
            }
            let flags = OFlags::RDONLY
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC;
            let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Err(not_found(Errno::NOENT)),
                Err(e @ (Errno::LOOP | Errno::NXIO)) => {
                    return Err(self.refused(&dir, name, &shown, e))
                }
                Err(e) => return Err(not_found(e)),
            };
            let st = io(rustix::fs::fstat(&fd)).at_path(&shown)?;
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind != FileType::RegularFile {
                return Err(self.not_a_file(&shown, kind_name(kind)));
            }
            // A regular file: blocking reads from here on.
            let status = io(rustix::fs::fcntl_getfl(fd.as_fd())).at_path(&shown)?;
            io(rustix::fs::fcntl_setfl(
                fd.as_fd(),
                status.difference(OFlags::NONBLOCK),
            ))
            .at_path(&shown)?;
            return Ok(File::from(fd));
        }
        Err(Error::InvalidPath {
            path: self.rel.clone(),
        })
    }

    fn too_large(&self, limit: u64) -> Error {
        Error::TooLarge {
            url: self.url.clone(),
            limit,
        }
    }

    fn timed_out(&self, after: Duration) -> Error {
        Error::TimedOut {
            url: self.url.clone(),
            after,
        }
    }
}

fn spawn(work: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    std::thread::Builder::new()
        .name("update-fetch-file".into())
        .spawn(work)
        .map(drop)
        .map_err(Error::Runtime)
}

/// Runs `work` on a thread of its own and waits for it at most `limit`. When the wait
/// ends first, `work`'s flag is raised so that it stops at its next step.
fn bounded<T: Send + 'static>(
    src: &Source,
    limit: Duration,
    work: impl FnOnce(&AtomicBool) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (tx, rx) = sync_channel(1);
    let abandoned = Arc::new(AtomicBool::new(false));
    let flag = abandoned.clone();
    spawn(move || {
        let _ = tx.send(work(&flag));
    })?;
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            abandoned.store(true, Ordering::Relaxed);
            Err(src.timed_out(limit))
        }
        Err(RecvTimeoutError::Disconnected) => Err(Error::File {
            path: src.path.clone(),
            source: std::io::Error::other("the reading thread ended without a result"),
        }),
    }
}

/// The whole file, at most `max_bytes`, within `limit`.
pub(crate) fn get(src: &Source, max_bytes: u64, limit: Duration) -> Result<Vec<u8>, Error> {
    let s = src.clone();
    bounded(src, limit, move |_| {
        let file = s.open()?;
        if file.metadata().at_path(&s.path)?.len() > max_bytes {
            return Err(s.too_large(max_bytes));
        }
        let mut out = Vec::new();
        // The file may grow after the check: read one byte past the cap at most.
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .at_path(&s.path)?;
        if out.len() as u64 > max_bytes {
            return Err(s.too_large(max_bytes));
        }
        Ok(out)
    })
}

pub(crate) fn get_ranges(
    src: &Source,
    ranges: &[(u64, u64)],
    max_total: u64,
    limit: Duration,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = vec![Vec::new(); ranges.len()];
    stream_ranges(src, ranges, max_total, limit, &mut |i, bytes| {
        out[i] = bytes;
        Ok(())
    })?;
    Ok(out)
}

/// Reads each range in the order given and hands it to `sink`, all within `limit`.
pub(crate) fn stream_ranges(
    src: &Source,
    ranges: &[(u64, u64)],
    max_total: u64,
    limit: Duration,
    sink: Sink<'_>,
) -> Result<(), Error> {
    if total_len(ranges)? > max_total {
        return Err(src.too_large(max_total));
    }
    let deadline = Instant::now() + limit;
    // One range in the channel and one being read: memory stays within two ranges.
    let (tx, rx) = sync_channel::<Result<(usize, Vec<u8>), Error>>(1);
    let s = src.clone();
    let wanted = ranges.to_vec();
    spawn(move || {
        let read = || -> Result<(), Error> {
            let mut file = s.open()?;
            let size = file.metadata().at_path(&s.path)?.len();
            for (i, &(offset, len)) in wanted.iter().enumerate() {
                if offset + len > size {
                    return Err(Error::LengthMismatch {
                        url: s.url.clone(),
                        expected: offset + len,
                        actual: size,
                    });
                }
                let mut buf = vec![0; len as usize];
                file.seek(SeekFrom::Start(offset)).at_path(&s.path)?;
                file.read_exact(&mut buf).at_path(&s.path)?;
                if tx.send(Ok((i, buf))).is_err() {
                    // The caller gave up (its sink failed, or the deadline passed).
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.send(Err(e));
        }
    })?;
    for _ in 0..ranges.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok((i, bytes))) => sink(i, bytes)?,
            Ok(Err(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => return Err(src.timed_out(limit)),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::File {
                    path: src.path.clone(),
                    source: std::io::Error::other("the reading thread ended without a result"),
                })
            }
        }
    }
    Ok(())
}

pub(crate) fn download_to(
    src: &Source,
    dest: &Path,
    expected: u64,
    limit: Duration,
) -> Result<u64, Error> {
    let s = src.clone();
    let dest = dest.to_path_buf();
    bounded(src, limit, move |abandoned| {
        let mut source = s.open()?;
        let size = source.metadata().at_path(&s.path)?.len();
        if size != expected {
            return Err(Error::LengthMismatch {
                url: s.url.clone(),
                expected,
                actual: size,
            });
        }
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dest)
            .at_path(&dest)?;
        let mut have = out.metadata().at_path(&dest)?.len();
        if have > expected {
            out.set_len(0).at_path(&dest)?;
            have = 0;
        }
        source.seek(SeekFrom::Start(have)).at_path(&s.path)?;
        // In steps, so that a copy outliving its deadline stops writing the `.part` file
        // the next call resumes.
        let mut copied = 0u64;
        let mut buf = vec![0; COPY_STEP];
        while have + copied < expected {
            if abandoned.load(Ordering::Relaxed) {
                return Err(s.timed_out(limit));
            }
            let want = (expected - have - copied).min(COPY_STEP as u64) as usize;
            let n = source.read(&mut buf[..want]).at_path(&s.path)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).at_path(&dest)?;
            copied += n as u64;
        }
        out.flush().at_path(&dest)?;
        out.sync_data().at_path(&dest)?;
        let actual = out.metadata().at_path(&dest)?.len();
        if actual != expected {
            return Err(Error::LengthMismatch {
                url: s.url.clone(),
                expected,
                actual,
            });
        }
        Ok(copied)
    })
}
