//! The `file://` backend: the same caps and checks as HTTP, on a local directory (a mounted
//! USB stick or a mirror), so callers verify both the same way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, IoResultExt};
use crate::ranges::total_len;
use crate::stream::Sink;

fn open(path: &Path, url: &str) -> Result<File, Error> {
    File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            url: url.to_string(),
        },
        _ => Error::File {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn too_large(url: &str, limit: u64) -> Error {
    Error::TooLarge {
        url: url.to_string(),
        limit,
    }
}

pub(crate) fn get(path: &Path, url: &str, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let file = open(path, url)?;
    if file.metadata().at_path(path)?.len() > max_bytes {
        return Err(too_large(url, max_bytes));
    }
    let mut out = Vec::new();
    // The file may grow after the check (or be a FIFO): read one byte past the cap at most.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .at_path(path)?;
    if out.len() as u64 > max_bytes {
        return Err(too_large(url, max_bytes));
    }
    Ok(out)
}

pub(crate) fn get_ranges(
    path: &Path,
    url: &str,
    ranges: &[(u64, u64)],
    max_total: u64,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = vec![Vec::new(); ranges.len()];
    stream_ranges(path, url, ranges, max_total, &mut |i, bytes| {
        out[i] = bytes;
        Ok(())
    })?;
    Ok(out)
}

/// Reads each range in the order given and hands it to `sink`.
pub(crate) fn stream_ranges(
    path: &Path,
    url: &str,
    ranges: &[(u64, u64)],
    max_total: u64,
    sink: Sink<'_>,
) -> Result<(), Error> {
    if total_len(ranges)? > max_total {
        return Err(too_large(url, max_total));
    }
    let mut file = open(path, url)?;
    let size = file.metadata().at_path(path)?.len();
    for (i, &(offset, len)) in ranges.iter().enumerate() {
        if offset + len > size {
            return Err(Error::LengthMismatch {
                url: url.to_string(),
                expected: offset + len,
                actual: size,
            });
        }
        let mut buf = vec![0; len as usize];
        file.seek(SeekFrom::Start(offset)).at_path(path)?;
        file.read_exact(&mut buf).at_path(path)?;
        sink(i, buf)?;
    }
    Ok(())
}

pub(crate) fn download_to(
    path: &Path,
    url: &str,
    dest: &Path,
    expected: u64,
) -> Result<u64, Error> {
    let mut source = open(path, url)?;
    let size = source.metadata().at_path(path)?.len();
    if size != expected {
        return Err(Error::LengthMismatch {
            url: url.to_string(),
            expected,
            actual: size,
        });
    }
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dest)
        .at_path(dest)?;
    let mut have = out.metadata().at_path(dest)?.len();
    if have > expected {
        out.set_len(0).at_path(dest)?;
        have = 0;
    }
    source.seek(SeekFrom::Start(have)).at_path(path)?;
    let copied = std::io::copy(&mut source.take(expected - have), &mut out).at_path(dest)?;
    out.flush().at_path(dest)?;
    out.sync_data().at_path(dest)?;
    let actual = out.metadata().at_path(dest)?.len();
    if actual != expected {
        return Err(Error::LengthMismatch {
            url: url.to_string(),
            expected,
            actual,
        });
    }
    Ok(copied)
}
