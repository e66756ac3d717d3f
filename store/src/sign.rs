//! Keys and commit signatures: ed25519, detached, domain-separated, verified strictly.
//!
//! A commit signature is an ed25519 signature over [`commit_message`]:
//! `b"update/commit-signature/v1\0"` followed by the 32 raw bytes of the commit id. The
//! summary of a published repository is signed over a message that starts with
//! [`SUMMARY_SIGNATURE_DOMAIN`] instead, so a commit signature can never be presented as
//! a summary signature, or the other way round (THREATS A4).
//!
//! Verification uses `verify_strict` (rejects non-canonical `S`, small-order `R` and weak
//! public keys), and [`parse_public_key`] refuses weak keys up front.
//!
//! Key files are text: the standard, padded base64 of the 32 raw bytes and a newline. The
//! secret key file holds the 32-byte seed and is created with mode 0600, never over an
//! existing file; the public key sits beside it as `FILE.pub`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rustix::fs::{FlockOperation, Mode, OFlags};

pub use ed25519_dalek::SigningKey;

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::id::CommitId;
use crate::object::{ObjectKind, SignatureEntry, Signatures};
use crate::repo::Repo;

/// Domain tag that starts every signed commit message.
pub const COMMIT_SIGNATURE_DOMAIN: &[u8] = b"update/commit-signature/v1\0";
/// Domain tag that starts every signed summary message (used by the summary code), so that
/// no commit signature ever verifies as a summary signature.
pub const SUMMARY_SIGNATURE_DOMAIN: &[u8] = b"update/summary-signature/v1\0";

/// Largest key file or trusted-keys file read.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// The message a commit signature covers: the domain tag, then the raw commit id.
pub fn commit_message(id: &CommitId) -> Vec<u8> {
    let mut m = Vec::with_capacity(COMMIT_SIGNATURE_DOMAIN.len() + 32);
    m.extend_from_slice(COMMIT_SIGNATURE_DOMAIN);
    m.extend_from_slice(id.0.as_bytes());
    m
}

/// A validated ed25519 public key: a point on the curve, not of small order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Validate raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| Error::BadKey {
            what: "public key".into(),
            reason: "not a valid ed25519 point".into(),
        })?;
        if vk.is_weak() {
            return Err(Error::BadKey {
                what: "public key".into(),
                reason: "weak (small-order) key: it would accept forged signatures".into(),
            });
        }
        Ok(PublicKey(vk))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The standard padded base64 form used in key files.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// The underlying verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl From<&SigningKey> for PublicKey {
    fn from(k: &SigningKey) -> Self {
        PublicKey(k.verifying_key())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// Parse a public key written as base64 (surrounding whitespace is ignored). Refuses bad
/// base64, any length but 32 bytes, a 64-byte secret keypair, invalid points and weak keys.
pub fn parse_public_key(text: &str) -> Result<PublicKey> {
    parse_public_key_named(text, "public key")
}

fn parse_public_key_named(text: &str, what: &str) -> Result<PublicKey> {
    let bad = |reason: String| Error::BadKey {
        what: what.to_owned(),
        reason,
    };
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("not valid base64: {e}")))?;
    let bytes: [u8; 32] =
        match raw.len() {
            32 => raw.as_slice().try_into().expect("32 bytes"),
            64 => return Err(bad(
                "64 bytes: this looks like a secret key (seed and public key), not a public key; \
                 never hand out or install a secret key"
                    .into(),
            )),
            n => return Err(bad(format!("{n} bytes, an ed25519 public key is 32"))),
        };
    PublicKey::from_bytes(&bytes).map_err(|e| match e {
        Error::BadKey { reason, .. } => bad(reason),
        e => e,
    })
}

/// The path of the public key file beside a secret key file: `FILE.pub`.
pub fn public_key_path(secret: &Path) -> PathBuf {
    let mut s = OsString::from(secret.as_os_str());
    s.push(".pub");
    PathBuf::from(s)
}

/// Open the directory holding `path` and return it with the file name.
fn open_parent(path: &Path) -> Result<(OwnedFd, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::invalid(
                format!("key path {}", path.display()),
                "needs a UTF-8 file name",
            )
        })?
        .to_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(parent)?;
    Ok((fd, name))
}

/// Create a new key pair: the secret seed at `path` (mode 0600, refused if `path` exists)
/// and the public key at `path.pub`. Both are fsynced, with their directory.
pub fn generate_key(path: &Path) -> Result<PublicKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(Error::RandomSource)?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let public = PublicKey::from(&key);
    let (dir, name) = open_parent(path)?;
    let fd = rustix::fs::openat(
        &dir,
        name.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .at_path(path)?;
    // A stack buffer, wiped afterwards, so the seed's text is not left in freed memory.
    let mut text = [0u8; 45];
    let n = STANDARD
        .encode_slice(key.as_bytes(), &mut text)
        .expect("44 bytes of base64 fit");
    text[n] = b'\n';
    let mut f = File::from(fd);
    let written = f.write_all(&text[..=n]).and_then(|()| f.sync_all());
    text.fill(0);
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, name.as_str(), rustix::fs::AtFlags::empty());
        return Err(e).at_path(path);
    }
    let pub_path = public_key_path(path);
    let pub_name = format!("{name}.pub");
    durable::write_atomic(
        dir.as_fd(),
        &pub_name,
        format!("{}\n", public.to_base64()).as_bytes(),
        0o644,
        &pub_path,
    )?;
    rustix::fs::fsync(&dir).at_path(path)?;
    Ok(public)
}

fn read_key_text(path: &Path) -> Result<String> {
    #[allow(clippy::disallowed_methods)] // path meant: a key file the user named
    let f = File::open(path).at_path(path)?;
    let mut buf = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .at_path(path)?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(Error::BadKey {
            what: path.display().to_string(),
            reason: format!("file larger than {MAX_KEY_FILE} bytes"),
        });
    }
    String::from_utf8(buf).map_err(|_| Error::BadKey {
        what: path.display().to_string(),
        reason: "not text".into(),
    })
}

/// Load a secret key file written by [`generate_key`].
pub fn load_secret_key(path: &Path) -> Result<SigningKey> {
    let text = read_key_text(path)?;
    let bad = |reason: String| Error::BadKey {
        what: path.display().to_string(),
        reason,
    };
    let mut raw = STANDARD
        .decode(text.trim())
        .map_err(|e| bad(format!("not valid base64: {e}")))?;
    let result = match <[u8; 32]>::try_from(raw.as_slice()) {
        Ok(seed) => Ok(SigningKey::from_bytes(&seed)),
        Err(_) => Err(bad(format!(
            "{} bytes, a secret key file holds the 32-byte seed",
            raw.len()
        ))),
    };
    raw.fill(0);
    let key = result?;
    // A public key file holds 32 bytes of base64 too, so its text alone cannot tell it from
    // a seed: signing with it would sign with an unrelated key. Refuse the names and the
    // pairs that say which file is which.
    if path.extension().is_some_and(|e| e == "pub") {
        return Err(bad(
            "this is a public key file (FILE.pub); sign with the secret key file FILE".into(),
        ));
    }
    let beside = public_key_path(path);
    if let Ok(text) = read_key_text(&beside) {
        if let Ok(public) = parse_public_key_named(&text, &beside.display().to_string()) {
            if public != PublicKey::from(&key) {
                return Err(bad(format!(
                    "it does not match its public key {}: not the secret key of that pair",
                    beside.display()
                )));
            }
        }
    }
    Ok(key)
}

/// Load a public key file (one base64 key; surrounding whitespace ignored).
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let text = read_key_text(path)?;
    parse_public_key_named(&text, &path.display().to_string())
}

/// The set of keys whose signatures a device accepts. Each key counts once, whatever
/// names it was given.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<[u8; 32], (String, PublicKey)>,
}

impl TrustedKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a key under a name. Returns false (and keeps the first name) when the key is
    /// already in the set.
    pub fn insert(&mut self, name: impl Into<String>, key: PublicKey) -> bool {
        match self.keys.entry(key.to_bytes()) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert((name.into(), key));
                true
            }
        }
    }

    /// The name of a trusted key, if it is one.
    pub fn name_of(&self, key: &[u8; 32]) -> Option<&str> {
        self.keys.get(key).map(|(n, _)| n.as_str())
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// (name, key) pairs, ordered by key bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.keys.values().map(|(n, k)| (n.as_str(), k))
    }
}

/// Load trusted keys from a file (one base64 key per line; blank lines and `#` comments
/// allowed; keys named "line N") or from a directory of `*.pub` files (named by file
/// stem). Any bad key fails the whole load. A key listed twice counts once.
pub fn load_trusted_keys(path: &Path) -> Result<TrustedKeys> {
    #[allow(clippy::disallowed_methods)] // path meant: keys the user named (--trusted-keys)
    let meta = std::fs::metadata(path).at_path(path)?;
    let mut set = TrustedKeys::new();
    if meta.is_dir() {
        let mut files = Vec::new();
        #[allow(clippy::disallowed_methods)] // path meant: the same directory of keys
        for entry in std::fs::read_dir(path).at_path(path)? {
            let entry = entry.at_path(path)?;
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "pub") && entry.file_type().at_path(&p)?.is_file()
            {
                files.push(p);
            }
        }
        files.sort();
        for p in files {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = read_key_text(&p)?;
            let mut lines = key_lines(&text);
            let Some((_, line)) = lines.next() else {
                return Err(Error::BadKey {
                    what: p.display().to_string(),
                    reason: "no key in file".into(),
                });
            };
            if lines.next().is_some() {
                return Err(Error::BadKey {
                    what: p.display().to_string(),
                    reason: "more than one key in a .pub file".into(),
                });
            }
            let key = parse_public_key_named(line, &p.display().to_string())?;
            set.insert(stem, key);
        }
    } else {
        let text = read_key_text(path)?;
        for (n, line) in key_lines(&text) {
            let what = format!("line {n} of {}", path.display());
            let key = parse_public_key_named(line, &what)?;
            set.insert(format!("line {n}"), key);
        }
    }
    Ok(set)
}

/// Non-blank, non-comment lines with their 1-based numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Whether `entry` is a valid signature over commit `id`, strictly verified.
fn entry_valid(id: &CommitId, entry: &SignatureEntry) -> bool {
    let Ok(key) = PublicKey::from_bytes(&entry.public_key) else {
        return false;
    };
    let sig = Signature::from_bytes(&entry.signature);
    key.0.verify_strict(&commit_message(id), &sig).is_ok()
}

/// Sign a commit present in `repo` and store the signature beside it, replacing an
/// earlier signature by the same key. Holds the repository lock shared, and serializes
/// with other signers of commits in the same fan-out directory.
pub fn sign_commit(repo: &Repo, id: &CommitId, key: &SigningKey) -> Result<()> {
    let _lock = repo.lock_shared()?;
    // Reading verifies the commit's bytes: never sign a corrupt or absent commit.
    repo.read_commit(id)?;
    let prefix = &id.0.to_hex()[..2];
    let fanout = repo.fanout_dir(prefix)?.ok_or(Error::MissingObject {
        kind: ObjectKind::Commit,
        id: id.0,
    })?;
    let shown = repo.path().join("objects").join(prefix);
    // The read-modify-write of the .sig file must not interleave with another signer's.
    rustix::fs::flock(&fanout, FlockOperation::LockExclusive).at_path(&shown)?;
    let mut sigs = repo.read_signatures(id)?;
    sigs.insert(signature_entry(key, id)?);
    repo.write_signatures(id, &sigs)
}

/// Sign commit `id` with `key`, checking the fresh signature verifies before it is used.
pub fn signature_entry(key: &SigningKey, id: &CommitId) -> Result<SignatureEntry> {
    let entry = SignatureEntry {
        public_key: key.verifying_key().to_bytes(),
        signature: key.sign(&commit_message(id)).to_bytes(),
    };
    if !entry_valid(id, &entry) {
        return Err(Error::WeakSigningKey { commit: *id });
    }
    Ok(entry)
}

/// The outcome of verifying a commit against a trusted key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Names of the trusted keys with a valid signature, each key once.
    pub trusted: Vec<String>,
    /// Valid signatures by keys outside the trusted set.
    pub untrusted: usize,
    /// Signatures that do not verify over this commit (corrupt, forged, copied from
    /// another commit, or by an invalid or weak key).
    pub invalid: usize,
}

/// Check a set of signatures over commit `id`. Errors when there is none
/// ([`Error::Unsigned`]) or none is valid by a trusted key ([`Error::NoTrustedSignature`]).
pub fn verify_signatures(
    id: &CommitId,
    sigs: &Signatures,
    trusted: &TrustedKeys,
) -> Result<Verification> {
    if sigs.0.is_empty() {
        return Err(Error::Unsigned { commit: *id });
    }
    let mut v = Verification {
        trusted: Vec::new(),
        untrusted: 0,
        invalid: 0,
    };
    for entry in &sigs.0 {
        if !entry_valid(id, entry) {
            v.invalid += 1;
        } else if let Some(name) = trusted.name_of(&entry.public_key) {
            // The set is sorted by key, one per key, so a key cannot count twice.
            v.trusted.push(name.to_owned());
        } else {
            v.untrusted += 1;
        }
    }
    if v.trusted.is_empty() {
        return Err(Error::NoTrustedSignature {
            commit: *id,
            untrusted: v.untrusted,
            invalid: v.invalid,
        });
    }
    Ok(v)
}

/// Verify the signatures stored beside a commit in `repo`. The commit must be present.
/// An unreadable or malformed signature file is an error, never a panic.
pub fn verify_commit(repo: &Repo, id: &CommitId, trusted: &TrustedKeys) -> Result<Verification> {
    if !repo.has_object(ObjectKind::Commit, &id.0)? {
        return Err(Error::MissingObject {
            kind: ObjectKind::Commit,
            id: id.0,
        });
    }
    let sigs = repo.read_signatures(id)?;
    verify_signatures(id, &sigs, trusted)
}

/// One signature as found beside a commit, with no trust decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureStatus {
    /// The signer's public key bytes.
    pub public_key: [u8; 32],
    /// The same, as base64.
    pub public_key_base64: String,
    /// Whether it is a valid signature over this commit.
    pub valid: bool,
}

/// Every signature stored beside a commit and whether it verifies (for `fsck` and `show`).
pub fn signatures_report(repo: &Repo, id: &CommitId) -> Result<Vec<SignatureStatus>> {
    let sigs = repo.read_signatures(id)?;
    Ok(report_of(id, &sigs))
}

pub(crate) fn report_of(id: &CommitId, sigs: &Signatures) -> Vec<SignatureStatus> {
    sigs.0
        .iter()
        .map(|e| SignatureStatus {
            public_key: e.public_key,
            public_key_base64: STANDARD.encode(e.public_key),
            valid: entry_valid(id, e),
        })
        .collect()
}
