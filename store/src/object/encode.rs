//! The canonical encoding (see `docs/format.md`): fixed-width little-endian integers,
//! byte strings as a u32 length then the bytes, every object opened by its kind's tag and
//! the format version. Encoding does not validate: constructors and `Transaction` writes do.

use super::{
    Commit, DirMeta, DirTree, FileHeader, ObjectKind, SignatureEntry, Signatures, Xattrs,
    FORMAT_VERSION,
};

/// Tag of the detached signature set of a commit.
pub const SIGNATURES_TAG: &[u8; 4] = b"USIG";

/// Appends canonical values to a buffer.
#[derive(Default)]
pub struct Encoder(Vec<u8>);

impl Encoder {
    /// A new encoder that starts with an object tag and the format version.
    pub fn with_tag(tag: &[u8; 4]) -> Self {
        let mut e = Encoder(Vec::with_capacity(128));
        e.0.extend_from_slice(tag);
        e.u8(FORMAT_VERSION);
        e
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    /// A u32, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// A u64, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Raw bytes of a fixed length known to the reader (ids, keys, signatures).
    pub fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }

    /// A byte string: u32 length, then the bytes. Callers bound lengths far below 4 GiB.
    pub fn bytes(&mut self, v: &[u8]) {
        let len = u32::try_from(v.len()).expect("validated lengths fit in u32");
        self.u32(len);
        self.raw(v);
    }

    /// A count of items that follow.
    pub fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("validated counts fit in u32"));
    }

    /// Extended attributes: count, then (name, value) pairs in order.
    pub fn xattrs(&mut self, x: &Xattrs) {
        self.count(x.0.len());
        for (n, v) in &x.0 {
            self.bytes(n);
            self.bytes(v);
        }
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

impl FileHeader {
    /// The canonical header bytes; the file id hashes these, then the content.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(ObjectKind::File.tag());
        e.u32(self.mode);
        e.u32(self.uid);
        e.u32(self.gid);
        e.u64(self.size);
        e.bytes(&self.symlink_target);
        e.xattrs(&self.xattrs);
        e.finish()
    }
}

impl DirMeta {
    /// The canonical bytes; the id is their BLAKE3.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(ObjectKind::DirMeta.tag());
        e.u32(self.mode);
        e.u32(self.uid);
        e.u32(self.gid);
        e.xattrs(&self.xattrs);
        e.finish()
    }
}

impl DirTree {
    /// The canonical bytes; the id is their BLAKE3.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(ObjectKind::DirTree.tag());
        e.count(self.files.len());
        for (name, id) in &self.files {
            e.bytes(name.as_str().as_bytes());
            e.raw(id.0.as_bytes());
        }
        e.count(self.dirs.len());
        for (name, tree, meta) in &self.dirs {
            e.bytes(name.as_str().as_bytes());
            e.raw(tree.0.as_bytes());
            e.raw(meta.0.as_bytes());
        }
        e.finish()
    }
}

impl Commit {
    /// The canonical bytes; the id is their BLAKE3.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(ObjectKind::Commit.tag());
        match &self.parent {
            None => e.u8(0),
            Some(p) => {
                e.u8(1);
                e.raw(p.0.as_bytes());
            }
        }
        e.u64(self.timestamp);
        e.bytes(self.subject.as_bytes());
        e.bytes(self.body.as_bytes());
        e.count(self.metadata.len());
        for (k, v) in &self.metadata {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.raw(self.root_tree.0.as_bytes());
        e.raw(self.root_meta.0.as_bytes());
        e.finish()
    }
}

impl Signatures {
    /// The canonical bytes of the signature set (not content-addressed: it is stored
    /// beside the commit and can gain signatures).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_tag(SIGNATURES_TAG);
        e.count(self.0.len());
        for SignatureEntry {
            public_key,
            signature,
        } in &self.0
        {
            e.raw(public_key);
            e.raw(signature);
        }
        e.finish()
    }
}
