//! Committing a tar archive (plain, gzip or zstd, recognised by magic bytes).
//!
//! The archive is read once, front to back, on the calling thread. Small files (up to
//! [`SMALL_FILE`]) are read into memory and handed to worker threads through a bounded
//! queue, so hashing and compression run in parallel with decompression and parsing;
//! bigger files are streamed straight into the repository on the reading thread. The
//! tree is assembled in memory and written bottom-up once every file object is written.
//!
//! Rules, matching what GNU tar does when it extracts:
//!
//! - Paths are relative: a leading `./` and empty or `.` components are dropped. An
//!   absolute path or a `..` component is refused.
//! - When the archive lists the same path twice, **the later entry wins**: a later file
//!   replaces an earlier file or directory (with everything under it); a later directory
//!   entry updates the metadata of an earlier directory and keeps its contents. A path
//!   whose parent was given as a non-directory is refused.
//! - A hard link entry shares the object of the earlier entry it names (its own header's
//!   mode and owner are ignored, as they belong to the same inode); naming a path that is
//!   not an earlier file or symlink is refused.
//! - Directories the archive implies but does not list get mode 0755 and the owner
//!   override (or 0:0). The root directory takes its metadata from a `.` / `./` entry.
//! - Extended attributes come from PAX `SCHILY.xattr.*` records (GNU tar, bsdtar) and
//!   `LIBARCHIVE.xattr.*` records (bsdtar). Character and block devices and FIFOs are
//!   refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use super::memtree::{MemDir, MemNode};
use super::queue::{fill_slots, with_workers, Job, Queue};
use super::{at_entry, entry_name, Counters, Ctx, SourceRead, MAX_DEPTH};
use crate::error::{Error, IoResultExt, Result};
use crate::id::{DirMetaId, DirTreeId, FileId};
use crate::object::{DirMeta, EntryName, FileHeader, Xattrs, PERM_MASK};

/// Files up to this size are buffered and written by worker threads.
pub const SMALL_FILE: u64 = 1 << 20;

/// libarchive writes xattr values in base64, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// State of one archive being read.
struct Reader<'a> {
    ctx: &'a Ctx<'a>,
    archive: &'a Path,
    root: MemDir,
    slots: usize,
    /// File ids written on the reading thread.
    inline: Vec<(usize, FileId)>,
}

/// Commit the tar archive at `path` using `jobs` worker threads.
pub(crate) fn commit_tar(
    ctx: &Ctx<'_>,
    path: &Path,
    jobs: usize,
) -> Result<(DirTreeId, DirMetaId)> {
    #[allow(clippy::disallowed_methods)] // path meant: the tar archive the user named
    let file = File::open(path).at_path(path)?;
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let head = buffered.fill_buf().at_path(path)?;
    let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).at_path(path)?)
    } else if head.starts_with(b"\xfd7zXZ\0") || head.starts_with(b"BZh") {
        return Err(Error::invalid(
            format!("archive {}", path.display()),
            "xz and bzip2 compression are not supported (use plain, gzip or zstd)",
        ));
    } else {
        Box::new(buffered)
    };

    let mut reader = Reader {
        ctx,
        archive: path,
        root: MemDir::default(),
        slots: 0,
        inline: Vec::new(),
    };
    let ((), queued) = with_workers(ctx, jobs, |queue| reader.read_all(stream, queue))?;
    let ids = fill_slots(reader.slots, queued.into_iter().chain(reader.inline));
    reader.root.write(ctx, &ids)
}

impl Reader<'_> {
    /// Walk the archive's members front to back. Extension members (PAX `x` / `g`, GNU
    /// long name `L` / long link `K`) are read here and applied to the member they
    /// describe; the tar crate is used for header fields only, as its PAX parser splits
    /// records on newlines (binary xattr values may hold one) and it ignores a PAX `size`.
    fn read_all(&mut self, mut stream: Box<dyn Read>, queue: &Queue<'_>) -> Result<()> {
        use ::tar::EntryType as T;
        let mut block = [0u8; BLOCK];
        let mut offset = 0u64;
        let mut ext = Extensions::default();
        let mut global = BTreeMap::new();
        loop {
            if queue.failed() {
                return Ok(());
            }
            if !read_block(&mut stream, &mut block).at_path(self.archive)? {
                break;
            }
            if block.iter().all(|&b| b == 0) {
                break;
            }
            let header = ::tar::Header::from_byte_slice(&block);
            self.check_sum(header, offset)?;
            offset += BLOCK as u64;
            let etype = header.entry_type();
            let member = inside(self.archive, &header.path_bytes());
            let header_size = header.entry_size().at_path(&member)?;

            if matches!(
                etype,
                T::XHeader | T::XGlobalHeader | T::GNULongName | T::GNULongLink
            ) {
                let data = read_extension(&mut stream, header_size, &member)?;
                offset += padded(header_size);
                match etype {
                    T::XHeader if ext.pax.is_some() => return Err(twice(&member, "PAX headers")),
                    T::XHeader => ext.pax = Some(pax_records(&data, &member)?),
                    T::XGlobalHeader => {
                        for (k, v) in pax_records(&data, &member)? {
                            global.insert(k, v);
                        }
                        if global.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_EXT {
                            return Err(Error::invalid(
                                format!("PAX global header {}", member.display()),
                                format!("the global records exceed {MAX_EXT} bytes"),
                            ));
                        }
                    }
                    T::GNULongName if ext.long_name.is_some() => {
                        return Err(twice(&member, "GNU long names"))
                    }
                    T::GNULongName => ext.long_name = Some(until_nul(data)),
                    _ if ext.long_link.is_some() => return Err(twice(&member, "GNU long links")),
                    _ => ext.long_link = Some(until_nul(data)),
                }
                continue;
            }

            let m = Member::resolve(self.archive, header, std::mem::take(&mut ext), &global)?;
            // The sparse map of an old GNU sparse file: in the header, then in extension
            // blocks between the header and the data.
            let sparse = if etype == T::GNUSparse {
                let (map, blocks) = sparse_map(&mut stream, header, m.stored, &m.shown)?;
                offset += blocks * BLOCK as u64;
                Some(map)
            } else {
                None
            };
            let mut body = (&mut stream).take(m.stored);
            match sparse {
                Some(map) => {
                    let mut data = SparseRead::new(&mut body, map);
                    self.entry(header, &m, &mut data, queue)?;
                }
                None => self.entry(header, &m, &mut body, queue)?,
            }
            // Whatever the entry did not read, then the padding to the next block.
            std::io::copy(&mut body, &mut std::io::sink()).at_path(&m.shown)?;
            if body.limit() > 0 {
                return Err(truncated(&m.shown));
            }
            skip(&mut stream, padded(m.stored) - m.stored, &m.shown)?;
            offset += padded(m.stored);
        }
        if ext != Extensions::default() {
            return Err(Error::invalid(
                format!("archive {}", self.archive.display()),
                "it ends with extension headers (PAX, GNU long name or link) \
                 that describe no member",
            ));
        }
        Ok(())
    }

    fn check_sum(&self, header: &::tar::Header, offset: u64) -> Result<()> {
        let bytes = header.as_bytes();
        let sum = bytes[..148]
            .iter()
            .chain(&bytes[156..])
            .fold(8 * 32, |a, &b| a + u32::from(b));
        match header.cksum() {
            Ok(c) if c == sum => Ok(()),
            _ => Err(Error::invalid(
                format!("archive {}", self.archive.display()),
                format!("the header at byte {offset} has a bad checksum (not a tar archive?)"),
            )),
        }
    }

    fn entry(
        &mut self,
        hdr: &::tar::Header,
        m: &Member,
        data: &mut dyn Read,
        queue: &Queue<'_>,
    ) -> Result<()> {
        use ::tar::EntryType as T;
        let shown = m.shown.clone();
        let etype = hdr.entry_type();
        let comps = normalise(&m.path, &shown)?;
        if etype.is_dir() && comps.len() > MAX_DEPTH {
            return Err(too_deep(&shown));
        }
        let kind = match etype {
            T::Char => Some("character device"),
            T::Block => Some("block device"),
            T::Fifo => Some("FIFO"),
            _ => None,
        };
        // A bootable commit keeps the API directories (`/dev`, `/run`, ...) empty.
        if comps.len() > 1 && self.ctx.drops_content_of(comps[0].as_str().as_bytes()) {
            let counter = match etype {
                T::Char | T::Block => &self.ctx.counters.dev_nodes,
                _ => &self.ctx.counters.api_dropped,
            };
            Counters::add(counter, 1);
            return Ok(());
        }
        if let Some(kind) = kind {
            return Err(Error::UnsupportedFileType { path: shown, kind });
        }
        let perm = hdr.mode().at_path(&shown)? & PERM_MASK;
        let uid = owner_id(m.uid, "uid", &shown)?;
        let gid = owner_id(m.gid, "gid", &shown)?;
        let (uid, gid) = self.ctx.opts.owner(uid, gid);
        let counters = &self.ctx.counters;
        match etype {
            T::Directory => {
                let meta = DirMeta::new(perm, uid, gid, m.xattrs()?)
                    .map_err(|e| at_entry(e, &shown.display()))?;
                self.put_dir(&comps, meta, &shown)
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = m.size;
                let header = FileHeader::regular(perm, uid, gid, size, m.xattrs()?)
                    .map_err(|e| at_entry(e, &shown.display()))?;
                let slot = self.put_file(&comps, None, &shown)?;
                Counters::add(&counters.files, 1);
                Counters::add(&counters.bytes, size);
                if size <= SMALL_FILE {
                    let mut buf = Vec::with_capacity(size as usize);
                    data.take(size).read_to_end(&mut buf).at_path(&shown)?;
                    if buf.len() as u64 != size {
                        return Err(truncated(&shown));
                    }
                    let job = Job {
                        slot,
                        header,
                        data: buf,
                        shown,
                    };
                    queue.send(job);
                } else {
                    let id =
                        SourceRead::new(data, size).write(self.ctx, &header, &shown.display())?;
                    self.inline.push((slot, id));
                }
                Ok(())
            }
            T::Symlink => {
                let target = m.link.clone().unwrap_or_default();
                let header = FileHeader::symlink(target, uid, gid, m.xattrs()?)
                    .map_err(|e| at_entry(e, &shown.display()))?;
                let slot = self.put_file(&comps, None, &shown)?;
                Counters::add(&counters.symlinks, 1);
                queue.send(Job {
                    slot,
                    header,
                    data: Vec::new(),
                    shown,
                });
                Ok(())
            }
            T::Link => {
                let target = m.link.clone().unwrap_or_default();
                let target_shown = inside(self.archive, &target);
                let target_comps = normalise(&target, &target_shown)?;
                let Some(slot) = self.find_file(&target_comps) else {
                    return Err(Error::invalid(
                        format!("hard link {}", shown.display()),
                        format!(
                            "its target '{}' is not an earlier file in the archive",
                            String::from_utf8_lossy(&target)
                        ),
                    ));
                };
                self.put_file(&comps, Some(slot), &shown)?;
                Counters::add(&counters.files, 1);
                Ok(())
            }
            other => Err(Error::invalid(
                format!("tar entry {}", shown.display()),
                format!("unsupported entry type {other:?}"),
            )),
        }
    }

    /// The directory holding `comps`' last component, creating missing parents.
    fn parent_of(&mut self, comps: &[EntryName], shown: &Path) -> Result<&mut MemDir> {
        let mut cur = &mut self.root;
        for c in &comps[..comps.len().saturating_sub(1)] {
            let node = cur
                .entries
                .entry(c.clone())
                .or_insert_with(|| MemNode::Dir(MemDir::default()));
            cur = match node {
                MemNode::Dir(d) => d,
                MemNode::File(_) => {
                    return Err(Error::invalid(
                        format!("tar entry {}", shown.display()),
                        format!("its parent '{c}' is an earlier entry that is not a directory"),
                    ))
                }
            };
        }
        Ok(cur)
    }

    fn put_dir(&mut self, comps: &[EntryName], meta: DirMeta, shown: &Path) -> Result<()> {
        let Some(name) = comps.last() else {
            self.root.meta = Some(meta);
            return Ok(());
        };
        let parent = self.parent_of(comps, shown)?;
        match parent.entries.get_mut(name) {
            Some(MemNode::Dir(d)) => d.meta = Some(meta),
            _ => {
                let d = MemDir {
                    meta: Some(meta),
                    entries: BTreeMap::new(),
                };
                parent.entries.insert(name.clone(), MemNode::Dir(d));
            }
        }
        Ok(())
    }

    /// Place a file at `comps`: a new slot, or `existing` for a hard link.
    fn put_file(
        &mut self,
        comps: &[EntryName],
        existing: Option<usize>,
        shown: &Path,
    ) -> Result<usize> {
        let Some(name) = comps.last() else {
            return Err(Error::invalid(
                format!("tar entry {}", shown.display()),
                "the root of the archive must be a directory",
            ));
        };
        let slot = existing.unwrap_or(self.slots);
        let name = name.clone();
        self.parent_of(comps, shown)?
            .entries
            .insert(name, MemNode::File(slot));
        if existing.is_none() {
            self.slots += 1;
        }
        Ok(slot)
    }

    fn find_file(&self, comps: &[EntryName]) -> Option<usize> {
        let (last, parents) = comps.split_last()?;
        let mut cur = &self.root;
        for c in parents {
            match cur.entries.get(c)? {
                MemNode::Dir(d) => cur = d,
                MemNode::File(_) => return None,
            }
        }
        match cur.entries.get(last)? {
            MemNode::File(slot) => Some(*slot),
            MemNode::Dir(_) => None,
        }
    }
}

/// How an archive member is named in errors: `ARCHIVE/MEMBER`, even for an absolute
/// member path.
fn inside(archive: &Path, member: &[u8]) -> PathBuf {
    let mut p = archive.as_os_str().as_bytes().to_vec();
    if !member.starts_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(member);
    PathBuf::from(std::ffi::OsString::from_vec(p))
}

fn too_deep(shown: &Path) -> Error {
    Error::invalid(
        format!("tar entry {}", shown.display()),
        format!("deeper than {MAX_DEPTH} directories"),
    )
}

/// Split a tar path into validated names: `./a//b/` → `[a, b]`; `/a` and `a/../b` are
/// refused.
fn normalise(raw: &[u8], shown: &Path) -> Result<Vec<EntryName>> {
    if raw.first() == Some(&b'/') {
        return Err(Error::invalid(
            format!("tar entry {}", shown.display()),
            "absolute paths are not allowed in the archive",
        ));
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(Error::invalid(
                    format!("tar entry {}", shown.display()),
                    "'..' is not allowed in archive paths",
                ))
            }
            name => out.push(entry_name(name, &shown.display())?),
        }
    }
    // A file may sit in a directory at the deepest level; the caller checks directories.
    if out.len() > MAX_DEPTH + 1 {
        return Err(too_deep(shown));
    }
    Ok(out)
}

fn owner_id(id: u64, what: &str, shown: &Path) -> Result<u32> {
    u32::try_from(id).map_err(|_| {
        Error::invalid(
            format!("{what} {id} of tar entry {}", shown.display()),
            "larger than 32 bits",
        )
    })
}

/// Size of a tar block.
const BLOCK: usize = 512;

/// Largest PAX header or GNU long name / link member read (and largest total of the
/// PAX global records kept).
const MAX_EXT: usize = 1 << 20;

/// The extension members read since the last real member; they describe the next one.
#[derive(Default, PartialEq, Eq)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// A real archive member: its header's fields with what the extension members before it
/// say. The one place path, link target, owner, size and xattrs are decided.
#[derive(Debug)]
struct Member {
    path: Vec<u8>,
    /// How the member is named in errors.
    shown: PathBuf,
    link: Option<Vec<u8>>,
    uid: u64,
    gid: u64,
    /// Bytes of data stored after the header (and the sparse map, if any).
    stored: u64,
    /// Size of the file: `stored`, or the real size of a sparse file.
    size: u64,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Member {
    /// Combine `header` with the extensions before it: the PAX global records, then the
    /// member's own PAX records (later records win), then GNU long name / link members.
    fn resolve(
        archive: &Path,
        header: &::tar::Header,
        ext: Extensions,
        global: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<Member> {
        let local = ext.pax.iter().flatten().map(|(k, v)| (k, v));
        let mut path = None;
        let mut link = None;
        let mut numbers: [(&str, Option<&[u8]>); 3] =
            [("uid", None), ("gid", None), ("size", None)];
        let mut schily = BTreeMap::new();
        let mut libarchive = BTreeMap::new();
        let mut sparse = false;
        // An empty value cancels an earlier record (POSIX), falling back to the header.
        let set = |v: &[u8]| (!v.is_empty()).then(|| v.to_vec());
        for (key, value) in global.iter().chain(local) {
            match key.as_slice() {
                b"path" => path = set(value),
                b"linkpath" => link = set(value),
                k => {
                    if let Some(slot) = numbers.iter_mut().find(|(n, _)| n.as_bytes() == k) {
                        slot.1 = (!value.is_empty()).then_some(value.as_slice());
                    } else if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        schily.insert(name.to_vec(), value.clone());
                    } else if let Some(name) = k.strip_prefix(b"LIBARCHIVE.xattr.") {
                        libarchive.insert(name.to_vec(), value.as_slice());
                    } else if k.starts_with(b"GNU.sparse.") {
                        sparse = true;
                    }
                }
            }
        }
        let path = ext
            .long_name
            .or(path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let shown = inside(archive, &path);
        if sparse {
            return Err(Error::invalid(
                format!("tar entry {}", shown.display()),
                "PAX sparse files (GNU.sparse.* records) are not supported",
            ));
        }
        let link = ext
            .long_link
            .or(link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let number = |i: usize| -> Result<Option<u64>> {
            let (key, Some(value)) = numbers[i] else {
                return Ok(None);
            };
            std::str::from_utf8(value)
                .ok()
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("PAX record {key} of tar entry {}", shown.display()),
                        format!(
                            "'{}' is not a decimal number",
                            String::from_utf8_lossy(value)
                        ),
                    )
                })
        };
        let uid = match number(0)? {
            Some(v) => v,
            None => header.uid().at_path(&shown)?,
        };
        let gid = match number(1)? {
            Some(v) => v,
            None => header.gid().at_path(&shown)?,
        };
        let stored = match number(2)? {
            Some(v) => v,
            None => header.entry_size().at_path(&shown)?,
        };
        let size = if header.entry_type().is_gnu_sparse() {
            header.size().at_path(&shown)?
        } else {
            stored
        };
        // SCHILY records win over LIBARCHIVE ones for the same attribute.
        let mut xattrs = schily;
        for (name, value) in libarchive {
            let key = [&b"LIBARCHIVE.xattr."[..], &name].concat();
            let bad = |what: &str| {
                Error::invalid(
                    format!(
                        "PAX record {} of tar entry {}",
                        String::from_utf8_lossy(&key),
                        shown.display()
                    ),
                    format!("{what} is not valid"),
                )
            };
            let name = percent_decode(&name).ok_or_else(|| bad("name encoding"))?;
            let value = BASE64
                .decode(value.trim_ascii_end())
                .map_err(|_| bad("base64 value"))?;
            xattrs.entry(name).or_insert(value);
        }
        Ok(Member {
            path,
            shown,
            link,
            uid,
            gid,
            stored,
            size,
            xattrs,
        })
    }

    fn xattrs(&self) -> Result<Xattrs> {
        let list = self.xattrs.iter().map(|(n, v)| (n.clone(), v.clone()));
        Xattrs::new(list.collect()).map_err(|e| at_entry(e, &self.shown.display()))
    }
}

/// Split PAX extended header data into its records, `LEN KEY=VALUE\n`, where the decimal
/// `LEN` counts the whole record (itself, the space and the newline included). The value
/// is taken by length, so it may hold any byte, newlines and `=` included.
fn pax_records(data: &[u8], member: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let bad = |why: &str| {
            Error::invalid(
                format!("PAX header {}", member.display()),
                format!("malformed record at byte {at}: {why}"),
            )
        };
        let rest = &data[at..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 19 || rest.get(digits) != Some(&b' ') {
            return Err(bad("it does not start with a decimal length and a space"));
        }
        let len: usize = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("bad length"))?;
        if len > rest.len() {
            return Err(bad(&format!(
                "its length {len} runs past the end of the header"
            )));
        }
        if len < digits + 3 || rest[len - 1] != b'\n' {
            return Err(bad(&format!("its length {len} does not end at a newline")));
        }
        let body = &rest[digits + 1..len - 1];
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return Err(bad("it has no '='"));
        };
        if eq == 0 {
            return Err(bad("its key is empty"));
        }
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        at += len;
    }
    Ok(out)
}

/// Read one block; `false` at the end of the stream, an error on a partial block.
fn read_block(r: &mut dyn Read, block: &mut [u8; BLOCK]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < BLOCK {
        match r.read(&mut block[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the archive ends inside a header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// Skip `n` bytes of the archive.
fn skip(r: &mut dyn Read, n: u64, shown: &Path) -> Result<()> {
    let got = std::io::copy(&mut r.take(n), &mut std::io::sink()).at_path(shown)?;
    if got != n {
        return Err(truncated(shown));
    }
    Ok(())
}

fn truncated(shown: &Path) -> Error {
    Error::invalid(
        format!("tar entry {}", shown.display()),
        "the archive ends inside its data",
    )
}

fn twice(member: &Path, what: &str) -> Error {
    Error::invalid(
        format!("tar entry {}", member.display()),
        format!("two {what} in a row describe the same member"),
    )
}

/// The data of an extension member (and its padding), refusing more than [`MAX_EXT`].
fn read_extension(r: &mut dyn Read, size: u64, member: &Path) -> Result<Vec<u8>> {
    if size > MAX_EXT as u64 {
        return Err(Error::invalid(
            format!("tar entry {}", member.display()),
            format!("extension header of {size} bytes, more than the {MAX_EXT} allowed"),
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    r.take(size).read_to_end(&mut data).at_path(member)?;
    if data.len() as u64 != size {
        return Err(truncated(member));
    }
    skip(r, padded(size) - size, member)?;
    Ok(data)
}

/// A GNU long name or link: the bytes up to the first NUL.
fn until_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(end) = data.iter().position(|&b| b == 0) {
        data.truncate(end);
    }
    data
}

/// The regions `(offset, length)` of an old GNU sparse file, from its header and the
/// extension blocks following it (read from `r`), checked against the `stored` data and
/// the real size. Returns the map and the number of extension blocks read.
fn sparse_map(
    r: &mut dyn Read,
    header: &::tar::Header,
    stored: u64,
    shown: &Path,
) -> Result<(SparseMap, u64)> {
    let bad = |why: &str| Error::invalid(format!("sparse tar entry {}", shown.display()), why);
    let gnu = header
        .as_gnu()
        .ok_or_else(|| bad("sparse entry type in a header that is not GNU"))?;
    let real = gnu.real_size().at_path(shown)?;
    let mut regions = Vec::new();
    let mut add = |s: &::tar::GnuSparseHeader| -> Result<()> {
        if !s.is_empty() {
            regions.push((s.offset().at_path(shown)?, s.length().at_path(shown)?));
        }
        Ok(())
    };
    gnu.sparse.iter().try_for_each(&mut add)?;
    let mut blocks = 0;
    let mut more = gnu.is_extended();
    while more {
        let mut ext = ::tar::GnuExtSparseHeader::new();
        if !read_block(r, ext.as_mut_bytes()).at_path(shown)? {
            return Err(truncated(shown));
        }
        blocks += 1;
        ext.sparse.iter().try_for_each(&mut add)?;
        more = ext.is_extended();
    }
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in &regions {
        if off < end {
            return Err(bad("its sparse regions overlap or are out of order"));
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= real)
            .ok_or_else(|| bad("a sparse region ends past the file's size"))?;
        total += len;
    }
    if total != stored {
        return Err(bad("its sparse regions do not add up to the data stored"));
    }
    Ok((SparseMap { regions, real }, blocks))
}

struct SparseMap {
    regions: Vec<(u64, u64)>,
    real: u64,
}

/// The content of a sparse file: zeros in the holes, the stored data in the regions.
struct SparseRead<R> {
    inner: R,
    map: SparseMap,
    /// Next region, and the position in the file.
    next: usize,
    pos: u64,
}

impl<R: Read> SparseRead<R> {
    fn new(inner: R, map: SparseMap) -> Self {
        SparseRead {
            inner,
            map,
            next: 0,
            pos: 0,
        }
    }
}

impl<R: Read> Read for SparseRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(&(off, len)) = self.map.regions.get(self.next) {
            if self.pos < off {
                break;
            }
            if self.pos < off + len {
                let want = buf.len().min((off + len - self.pos) as usize);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.pos += n as u64;
                return Ok(n);
            }
            self.next += 1;
        }
        let hole_end = match self.map.regions.get(self.next) {
            Some(&(off, _)) => off,
            None => self.map.real,
        };
        let n = buf.len().min((hole_end - self.pos) as usize);
        buf[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Decode `%XX` escapes (libarchive's encoding of xattr names).
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{normalise, pax_records, percent_decode};

    #[test]
    fn paths_are_normalised_or_refused() {
        let p = Path::new("x");
        let n = |s: &str| -> Vec<String> {
            normalise(s.as_bytes(), p)
                .unwrap()
                .iter()
                .map(|e| e.to_string())
                .collect()
        };
        assert_eq!(n("./a//b/"), ["a", "b"]);
        assert!(n("./").is_empty());
        assert!(normalise(b"/etc/passwd", p).is_err());
        assert!(normalise(b"a/../../b", p).is_err());
        assert_eq!(percent_decode(b"user.a%20b").unwrap(), b"user.a b");
        assert!(percent_decode(b"bad%2").is_none());
    }

    #[test]
    fn pax_records_are_split_by_length() {
        let p = Path::new("a.tar/PaxHeaders/f");
        // 25 = "25 " + "SCHILY.xattr.u.b=" + 4 value bytes + "\n".
        let mut data = b"25 SCHILY.xattr.u.b=\n=\0\n\n".to_vec();
        data.extend_from_slice(b"12 path=a b\n");
        let recs = pax_records(&data, p).unwrap();
        assert_eq!(
            recs,
            [
                (b"SCHILY.xattr.u.b".to_vec(), b"\n=\0\n".to_vec()),
                (b"path".to_vec(), b"a b".to_vec()),
            ]
        );
        assert!(pax_records(b"", p).unwrap().is_empty());
        for bad in [
            &b"11 path=a b\n"[..], // length one short
            b"13 path=a b\n",      // length past the end
            b"12 path=a b\n\0",    // trailing garbage
            b"x path=a\n",
            b" 9 path=\n",
            b"9 pathab\n",
            b"5 =a\n",
        ] {
            let err = pax_records(bad, p).unwrap_err().to_string();
            assert!(err.contains("a.tar/PaxHeaders/f"), "{err}");
        }
    }
}
