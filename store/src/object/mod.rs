//! The object model: file, dirtree, dirmeta and commit objects, and the detached
//! signature set of a commit. Each type validates itself on construction and on decode;
//! the canonical encoding lives in the `encode` and `decode` submodules and is specified in
//! `docs/format.md`.

mod decode;
mod encode;
mod name;

use std::fmt;

pub use decode::Decoder;
pub use encode::Encoder;
pub use name::EntryName;

use crate::error::{Error, Result};
use crate::id::{DirMetaId, DirTreeId, FileId, ObjectId};

/// The format version written by this build and the newest it reads.
pub const FORMAT_VERSION: u8 = 1;

/// File type bits of a mode (`S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Regular file type bits.
pub const S_IFREG: u32 = 0o100000;
/// Directory type bits.
pub const S_IFDIR: u32 = 0o040000;
/// Symlink type bits.
pub const S_IFLNK: u32 = 0o120000;
/// Permission bits including setuid, setgid and sticky.
pub const PERM_MASK: u32 = 0o7777;

/// Longest symlink target accepted (PATH_MAX - 1).
pub const MAX_SYMLINK_TARGET: usize = 4095;
/// Most entries (files + subdirectories) in one dirtree.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;
/// Most extended attributes on one file or directory.
pub const MAX_XATTRS: usize = 256;
/// Longest extended attribute name.
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (the Linux limit).
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// Largest encoded metadata object (dirtree, dirmeta, commit, signatures) ever read.
pub const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;
/// Longest commit subject.
pub const MAX_SUBJECT: usize = 64 * 1024;
/// Longest commit body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most metadata keys on a commit.
pub const MAX_COMMIT_METADATA: usize = 1024;
/// Most signatures attached to one commit.
pub const MAX_SIGNATURES: usize = 64;

/// The kinds of objects in a repository.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ObjectKind {
    /// File header plus content.
    File,
    /// A directory listing.
    DirTree,
    /// A directory's own metadata.
    DirMeta,
    /// A commit.
    Commit,
}

impl ObjectKind {
    /// Every kind, in a stable order.
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::File,
        ObjectKind::DirTree,
        ObjectKind::DirMeta,
        ObjectKind::Commit,
    ];

    /// The 4-byte tag that starts the encoding of this kind.
    pub const fn tag(self) -> &'static [u8; 4] {
        match self {
            ObjectKind::File => b"UFIL",
            ObjectKind::DirTree => b"UDTR",
            ObjectKind::DirMeta => b"UDMT",
            ObjectKind::Commit => b"UCMT",
        }
    }

    /// Lowercase name, as used in messages and file name extensions.
    pub const fn name(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::DirTree => "dirtree",
            ObjectKind::DirMeta => "dirmeta",
            ObjectKind::Commit => "commit",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Extended attributes: names strictly ascending by bytes, unique.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Xattrs(Vec<(Vec<u8>, Vec<u8>)>);

impl Xattrs {
    /// Validate and sort a set of attributes; duplicates are refused.
    pub fn new(mut attrs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self> {
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        let x = Xattrs(attrs);
        x.validate()?;
        Ok(x)
    }

    /// No attributes.
    pub fn empty() -> Self {
        Xattrs(Vec::new())
    }

    /// The (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Check the invariants (sorted, unique, bounded, no NUL in names).
    pub fn validate(&self) -> Result<()> {
        if self.0.len() > MAX_XATTRS {
            return Err(Error::invalid(
                "xattrs",
                format!("more than {MAX_XATTRS} attributes"),
            ));
        }
        for (i, (name, value)) in self.0.iter().enumerate() {
            let shown = String::from_utf8_lossy(name);
            if name.is_empty() || name.len() > MAX_XATTR_NAME || name.contains(&0) {
                return Err(Error::invalid(
                    format!("xattr name '{shown}'"),
                    format!("must be 1..={MAX_XATTR_NAME} bytes without NUL"),
                ));
            }
            if value.len() > MAX_XATTR_VALUE {
                return Err(Error::invalid(
                    format!("xattr '{shown}'"),
                    format!("value of {} bytes exceeds {MAX_XATTR_VALUE}", value.len()),
                ));
            }
            if i > 0 && self.0[i - 1].0 >= *name {
                return Err(Error::invalid(
                    format!("xattr '{shown}'"),
                    "names must be unique and sorted",
                ));
            }
        }
        Ok(())
    }
}

/// The header of a file object: everything about a file except its content.
/// A file's id is the BLAKE3 of the encoded header followed by the content bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileHeader {
    /// Full mode: `S_IFREG` or `S_IFLNK` plus permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content length in bytes (0 for a symlink).
    pub size: u64,
    /// Symlink target (empty for a regular file).
    pub symlink_target: Vec<u8>,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl FileHeader {
    /// Header of a regular file.
    pub fn regular(perm: u32, uid: u32, gid: u32, size: u64, xattrs: Xattrs) -> Result<Self> {
        let h = FileHeader {
            mode: S_IFREG | perm,
            uid,
            gid,
            size,
            symlink_target: Vec::new(),
            xattrs,
        };
        h.validate()?;
        Ok(h)
    }

    /// Header of a symlink. Symlink permissions are always 0777 on Linux.
    pub fn symlink(target: Vec<u8>, uid: u32, gid: u32, xattrs: Xattrs) -> Result<Self> {
        let h = FileHeader {
            mode: S_IFLNK | 0o777,
            uid,
            gid,
            size: 0,
            symlink_target: target,
            xattrs,
        };
        h.validate()?;
        Ok(h)
    }

    /// True for a symlink header.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Check the invariants of the format.
    pub fn validate(&self) -> Result<()> {
        match self.mode & S_IFMT {
            S_IFREG => {
                if !self.symlink_target.is_empty() {
                    return Err(Error::invalid(
                        "file header",
                        "regular file with a symlink target",
                    ));
                }
            }
            S_IFLNK => {
                validate_symlink_target(&self.symlink_target)?;
                if self.size != 0 {
                    return Err(Error::invalid("file header", "symlink with non-zero size"));
                }
                if self.mode & PERM_MASK != 0o777 {
                    return Err(Error::invalid("file header", "symlink mode must be 0777"));
                }
            }
            _ => {
                return Err(Error::invalid(
                    format!("file mode {:o}", self.mode),
                    "a file object is a regular file or a symlink",
                ))
            }
        }
        if self.mode & !(S_IFMT | PERM_MASK) != 0 {
            return Err(Error::invalid(
                format!("file mode {:o}", self.mode),
                "unknown mode bits",
            ));
        }
        self.xattrs.validate()
    }
}

/// Check a symlink target: 1..=4095 bytes, no NUL.
pub fn validate_symlink_target(target: &[u8]) -> Result<()> {
    if target.is_empty() || target.len() > MAX_SYMLINK_TARGET || target.contains(&0) {
        return Err(Error::invalid(
            format!("symlink target '{}'", String::from_utf8_lossy(target)),
            format!("must be 1..={MAX_SYMLINK_TARGET} bytes without NUL"),
        ));
    }
    Ok(())
}

/// A directory's own metadata.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirMeta {
    /// Full mode: `S_IFDIR` plus permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl DirMeta {
    /// A directory's metadata from its permission bits and owner.
    pub fn new(perm: u32, uid: u32, gid: u32, xattrs: Xattrs) -> Result<Self> {
        let m = DirMeta {
            mode: S_IFDIR | perm,
            uid,
            gid,
            xattrs,
        };
        m.validate()?;
        Ok(m)
    }

    /// Check the invariants of the format.
    pub fn validate(&self) -> Result<()> {
        if self.mode & S_IFMT != S_IFDIR || self.mode & !(S_IFMT | PERM_MASK) != 0 {
            return Err(Error::invalid(
                format!("directory mode {:o}", self.mode),
                "must be S_IFDIR plus permission bits",
            ));
        }
        self.xattrs.validate()
    }
}

/// One directory listing: files and subdirectories, each sorted by name, no name in both.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DirTree {
    /// Non-directory entries: name → file object.
    pub files: Vec<(EntryName, FileId)>,
    /// Subdirectories: name → (listing, metadata).
    pub dirs: Vec<(EntryName, DirTreeId, DirMetaId)>,
}

impl DirTree {
    /// Sort the entries and check the invariants.
    pub fn new(
        mut files: Vec<(EntryName, FileId)>,
        mut dirs: Vec<(EntryName, DirTreeId, DirMetaId)>,
    ) -> Result<Self> {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        let t = DirTree { files, dirs };
        t.validate()?;
        Ok(t)
    }

    /// Check sortedness, uniqueness across both lists and the entry cap.
    pub fn validate(&self) -> Result<()> {
        if self.files.len() + self.dirs.len() > MAX_DIR_ENTRIES {
            return Err(Error::invalid(
                "dirtree",
                format!("more than {MAX_DIR_ENTRIES} entries"),
            ));
        }
        check_sorted(self.files.iter().map(|e| &e.0))?;
        check_sorted(self.dirs.iter().map(|e| &e.0))?;
        // Both lists are sorted: a merge finds a name present in both.
        let (mut i, mut j) = (0, 0);
        while i < self.files.len() && j < self.dirs.len() {
            match self.files[i].0.cmp(&self.dirs[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    return Err(Error::invalid(
                        format!("entry '{}'", self.files[i].0),
                        "duplicate name (both a file and a directory)",
                    ))
                }
            }
        }
        Ok(())
    }
}

fn check_sorted<'a>(names: impl Iterator<Item = &'a EntryName>) -> Result<()> {
    let mut prev: Option<&EntryName> = None;
    for n in names {
        if let Some(p) = prev {
            if p >= n {
                let reason = if p == n {
                    "duplicate name"
                } else {
                    "entries not sorted"
                };
                return Err(Error::invalid(format!("entry '{n}'"), reason));
            }
        }
        prev = Some(n);
    }
    Ok(())
}

/// A commit: a root tree plus who, when and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Commit {
    /// The previous commit on the branch, if any.
    pub parent: Option<crate::id::CommitId>,
    /// Seconds since the Unix epoch, UTC.
    pub timestamp: u64,
    /// One-line subject.
    pub subject: String,
    /// Longer description.
    pub body: String,
    /// Key/value metadata (such as `version`), keys strictly ascending.
    pub metadata: Vec<(String, String)>,
    /// The root directory listing.
    pub root_tree: DirTreeId,
    /// The root directory's metadata.
    pub root_meta: DirMetaId,
}

impl Commit {
    /// Check sizes and metadata ordering.
    pub fn validate(&self) -> Result<()> {
        if self.subject.len() > MAX_SUBJECT {
            return Err(Error::invalid(
                "commit subject",
                format!("longer than {MAX_SUBJECT} bytes"),
            ));
        }
        if self.body.len() > MAX_BODY {
            return Err(Error::invalid(
                "commit body",
                format!("longer than {MAX_BODY} bytes"),
            ));
        }
        if self.metadata.len() > MAX_COMMIT_METADATA {
            return Err(Error::invalid(
                "commit metadata",
                format!("more than {MAX_COMMIT_METADATA} keys"),
            ));
        }
        for (i, (k, v)) in self.metadata.iter().enumerate() {
            if k.is_empty() {
                return Err(Error::invalid("commit metadata key", "empty"));
            }
            if k.len() > MAX_SUBJECT {
                return Err(Error::invalid(
                    "commit metadata key",
                    format!("longer than {MAX_SUBJECT} bytes"),
                ));
            }
            if v.len() > MAX_BODY {
                return Err(Error::invalid(
                    format!("commit metadata value of '{k}'"),
                    format!("longer than {MAX_BODY} bytes"),
                ));
            }
            if i > 0 && self.metadata[i - 1].0 >= *k {
                return Err(Error::invalid(
                    format!("commit metadata key '{k}'"),
                    "keys must be unique and sorted",
                ));
            }
        }
        Ok(())
    }

    /// The value of a metadata key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.metadata[i].1.as_str())
    }

    /// The `version` metadata, if set.
    pub fn version(&self) -> Option<&str> {
        self.meta("version")
    }
}

/// One signature over a commit: the signer's public key and the ed25519 signature.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignatureEntry {
    /// ed25519 public key.
    pub public_key: [u8; 32],
    /// ed25519 signature over the domain-separated message.
    pub signature: [u8; 64],
}

/// The detached signatures of one commit: sorted by public key, one per key.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Signatures(pub Vec<SignatureEntry>);

impl Signatures {
    /// Check ordering, uniqueness and count.
    pub fn validate(&self) -> Result<()> {
        if self.0.len() > MAX_SIGNATURES {
            return Err(Error::invalid(
                "signature set",
                format!("more than {MAX_SIGNATURES} signatures"),
            ));
        }
        for w in self.0.windows(2) {
            if w[0].public_key >= w[1].public_key {
                return Err(Error::invalid(
                    "signature set",
                    "entries must be sorted by public key, one per key",
                ));
            }
        }
        Ok(())
    }

    /// Add or replace the signature of one key, keeping the set canonical.
    pub fn insert(&mut self, entry: SignatureEntry) {
        match self
            .0
            .binary_search_by(|e| e.public_key.cmp(&entry.public_key))
        {
            Ok(i) => self.0[i] = entry,
            Err(i) => self.0.insert(i, entry),
        }
    }
}

/// The id of a file object, computed from its header and content in one pass.
pub struct FileHasher {
    hasher: blake3::Hasher,
}

impl FileHasher {
    /// Start hashing a file object with this header.
    pub fn new(header: &FileHeader) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&header.encode());
        FileHasher { hasher }
    }

    /// Feed content bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The file's id.
    pub fn finish(&self) -> FileId {
        FileId(ObjectId::from(self.hasher.finalize()))
    }
}
