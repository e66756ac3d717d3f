//! Strict decoding of the canonical encoding: every rule of `docs/format.md` is checked,
//! trailing bytes are refused, and no length read from the input is trusted for an
//! allocation before the bytes it claims are known to be there.

use super::encode::SIGNATURES_TAG;
use super::{
    Commit, DirMeta, DirTree, EntryName, FileHeader, ObjectKind, SignatureEntry, Signatures,
    Xattrs, FORMAT_VERSION, MAX_DIR_ENTRIES, MAX_SIGNATURES, MAX_XATTRS,
};
use crate::error::{Error, Result};
use crate::id::{CommitId, DirMetaId, DirTreeId, FileId, ObjectId, ID_LEN};

/// Reads canonical values from a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// Start reading `buf`, which should hold a `what`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Decoder { buf, pos: 0, what }
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::decode(
            self.what,
            format!("{} (at byte {})", reason.into(), self.pos),
        )
    }

    /// Check the 4-byte tag and the format version.
    pub fn tag(&mut self, tag: &[u8; 4]) -> Result<()> {
        let got = self.take(4)?;
        if got != tag {
            return Err(self.err(format!(
                "expected tag {:?}, found {:?}: this is not a {}",
                String::from_utf8_lossy(tag),
                String::from_utf8_lossy(got),
                self.what
            )));
        }
        let version = self.u8()?;
        if version != FORMAT_VERSION {
            if version > FORMAT_VERSION {
                return Err(Error::NewerFormat {
                    what: self.what,
                    found: version.into(),
                    supported: FORMAT_VERSION.into(),
                });
            }
            return Err(self.err(format!("unknown format version {version}")));
        }
        Ok(())
    }

    /// Exactly `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated: {n} more bytes expected")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.err(format!("length {len} exceeds the limit of {max}")));
        }
        self.take(len)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize) -> Result<String> {
        let b = self.bytes(max)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not valid UTF-8"))
    }

    /// A count of at most `max` items, each at least `min_item` bytes long, so that a
    /// forged count cannot make us allocate more than the input could hold.
    pub fn count(&mut self, max: usize, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.err(format!("count {n} exceeds the limit of {max}")));
        }
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(self.err(format!(
                "count {n} is larger than the remaining bytes allow"
            )));
        }
        Ok(n)
    }

    /// A raw 32-byte id.
    pub fn id(&mut self) -> Result<ObjectId> {
        Ok(ObjectId::from_bytes(
            self.take(ID_LEN)?.try_into().expect("32 bytes"),
        ))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Refuse trailing bytes.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.err(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }

    /// Extended attributes, validated.
    pub fn xattrs(&mut self) -> Result<Xattrs> {
        let n = self.count(MAX_XATTRS, 8)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let name = self.bytes(super::MAX_XATTR_NAME)?.to_vec();
            let value = self.bytes(super::MAX_XATTR_VALUE)?.to_vec();
            v.push((name, value));
        }
        let x = Xattrs(v);
        x.validate().map_err(|e| self.err(e.to_string()))?;
        Ok(x)
    }

    fn name(&mut self) -> Result<EntryName> {
        let b = self.bytes(super::name::MAX_NAME)?;
        EntryName::new(b.to_vec()).map_err(|e| self.err(e.to_string()))
    }
}

impl FileHeader {
    /// Read a header from the start of `buf`; returns it and the number of bytes it took.
    /// (In an archive-mode object the compressed content follows it.)
    pub fn decode_prefix(buf: &[u8]) -> Result<(Self, usize)> {
        let mut d = Decoder::new(buf, "file header");
        d.tag(ObjectKind::File.tag())?;
        let mode = d.u32()?;
        let uid = d.u32()?;
        let gid = d.u32()?;
        let size = d.u64()?;
        let symlink_target = d.bytes(super::MAX_SYMLINK_TARGET)?.to_vec();
        let xattrs = d.xattrs()?;
        let h = FileHeader {
            mode,
            uid,
            gid,
            size,
            symlink_target,
            xattrs,
        };
        h.validate().map_err(|e| d.err(e.to_string()))?;
        Ok((h, d.position()))
    }

    /// Decode exactly one header, refusing trailing bytes.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let (h, used) = Self::decode_prefix(buf)?;
        if used != buf.len() {
            return Err(Error::decode(
                "file header",
                format!("{} trailing bytes", buf.len() - used),
            ));
        }
        Ok(h)
    }
}

impl DirMeta {
    /// Decode, refusing anything but the canonical encoding.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "dirmeta");
        d.tag(ObjectKind::DirMeta.tag())?;
        let m = DirMeta {
            mode: d.u32()?,
            uid: d.u32()?,
            gid: d.u32()?,
            xattrs: d.xattrs()?,
        };
        d.finish()?;
        m.validate().map_err(|e| d.err(e.to_string()))?;
        Ok(m)
    }
}

impl DirTree {
    /// Decode, refusing anything but the canonical encoding.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "dirtree");
        d.tag(ObjectKind::DirTree.tag())?;
        let nfiles = d.count(MAX_DIR_ENTRIES, 4 + 1 + ID_LEN)?;
        let mut files = Vec::with_capacity(nfiles);
        for _ in 0..nfiles {
            let name = d.name()?;
            files.push((name, FileId(d.id()?)));
        }
        let ndirs = d.count(MAX_DIR_ENTRIES - nfiles, 4 + 1 + 2 * ID_LEN)?;
        let mut dirs = Vec::with_capacity(ndirs);
        for _ in 0..ndirs {
            let name = d.name()?;
            dirs.push((name, DirTreeId(d.id()?), DirMetaId(d.id()?)));
        }
        d.finish()?;
        let t = DirTree { files, dirs };
        t.validate().map_err(|e| d.err(e.to_string()))?;
        Ok(t)
    }
}

impl Commit {
    /// Decode, refusing anything but the canonical encoding.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "commit");
        d.tag(ObjectKind::Commit.tag())?;
        let parent = match d.u8()? {
            0 => None,
            1 => Some(CommitId(d.id()?)),
            other => return Err(d.err(format!("parent flag {other} is neither 0 nor 1"))),
        };
        let timestamp = d.u64()?;
        let subject = d.string(super::MAX_SUBJECT)?;
        let body = d.string(super::MAX_BODY)?;
        let n = d.count(super::MAX_COMMIT_METADATA, 8)?;
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            let k = d.string(super::MAX_SUBJECT)?;
            let v = d.string(super::MAX_BODY)?;
            metadata.push((k, v));
        }
        let root_tree = DirTreeId(d.id()?);
        let root_meta = DirMetaId(d.id()?);
        d.finish()?;
        let c = Commit {
            parent,
            timestamp,
            subject,
            body,
            metadata,
            root_tree,
            root_meta,
        };
        c.validate().map_err(|e| d.err(e.to_string()))?;
        Ok(c)
    }
}

impl Signatures {
    /// Decode, refusing anything but the canonical encoding.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(buf, "signature set");
        d.tag(SIGNATURES_TAG)?;
        let n = d.count(MAX_SIGNATURES, 96)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let public_key = d.take(32)?.try_into().expect("32 bytes");
            let signature = d.take(64)?.try_into().expect("64 bytes");
            v.push(SignatureEntry {
                public_key,
                signature,
            });
        }
        d.finish()?;
        let s = Signatures(v);
        s.validate().map_err(|e| d.err(e.to_string()))?;
        Ok(s)
    }
}
