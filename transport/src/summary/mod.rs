//! The signed summary: the index of a published repository that a device fetches first.
//!
//! A [`Summary`] names every published ref's commit (with its version, time and download
//! size), the static deltas on offer, and carries a `serial` that only grows and an
//! `expires` time that the client enforces. It is published as one file whose signatures
//! are inside it ([`sign_summary`], [`parse_signed`]), so a CDN can never pair a summary
//! with a stale signature. A device checks it with [`verify_summary`] in TUF's client
//! order (size cap, signature, rollback, expiry) against a persisted [`TrustState`]
//! ([`load_trust_state`], [`save_trust_state`]).
//!
//! ```
//! use store::sign::{PublicKey, SigningKey, TrustedKeys};
//! use transport::summary::{sign_summary, verify_summary, Summary, TrustState};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let summary = Summary { serial: 1, timestamp: 100, expires: 200, ..Summary::default() };
//! let file = sign_summary(&summary, &[&key]).unwrap();
//!
//! let mut trusted = TrustedKeys::new();
//! trusted.insert("release", PublicKey::from(&key));
//! let ok = verify_summary(&file, &trusted, &TrustState::default(), 150).unwrap();
//! assert_eq!(ok.summary, summary);
//! assert_eq!(ok.new_state.last_serial, Some(1));
//! ```
//!
//! The format is specified in `docs/transport.md`.

mod encode;
mod packs;
mod state;
mod verify;

pub use encode::{parse_signed, sign_summary, summary_message, SignedSummary};
pub use packs::PackEntry;
pub use state::{load_trust_state, save_trust_state};
pub use verify::{
    verify_summary, verify_summary_with, TrustState, Verified, VerifyOptions,
    DEFAULT_MAX_CLOCK_SKEW,
};

use crate::error::{Error, Result};
use store::id::{CommitId, ObjectId};
use store::repo::RefName;

/// Tag of an encoded summary body.
pub const SUMMARY_TAG: &[u8; 4] = b"USUM";
/// Tag of a signed summary file.
pub const SIGNED_SUMMARY_TAG: &[u8; 4] = b"USSF";
/// Format version of the summary body and of the signed summary file that are written.
/// Version 2 added the channel and the reset-clock flag; version 1 is still read, as a
/// summary naming no channel.
pub const SUMMARY_VERSION: u8 = 2;
/// Oldest format version still read.
pub const MIN_SUMMARY_VERSION: u8 = 1;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL: usize = 64;
/// Largest signed summary file a client reads (checked before anything is parsed).
pub const MAX_SUMMARY_SIZE: u64 = 16 * 1024 * 1024;
/// Most signatures a signed summary file may carry.
pub const MAX_SUMMARY_SIGNATURES: usize = 16;
/// Most refs a summary may list.
pub const MAX_SUMMARY_REFS: usize = 1 << 16;
/// Most packs a summary may list.
pub const MAX_SUMMARY_PACKS: usize = 1 << 16;
/// Most deltas a summary may list.
pub const MAX_SUMMARY_DELTAS: usize = 1 << 16;
/// Most metadata entries a summary may carry.
pub const MAX_SUMMARY_METADATA: usize = 1024;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY: usize = 256;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE: usize = 64 * 1024;
/// Longest version string of a ref entry, in bytes.
pub const MAX_VERSION: usize = 256;

/// One published ref: the commit it names and what a client needs to plan a pull.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RefEntry {
    /// The ref.
    pub name: RefName,
    /// The commit it points at.
    pub commit: CommitId,
    /// The commit's `version` metadata, if it has one (1..=256 bytes).
    pub version: Option<String>,
    /// The commit's timestamp (unix seconds).
    pub timestamp: u64,
    /// Bytes a client with nothing fetches to get this commit: the sum of the stored
    /// lengths of its blobs (commit, dirtrees, dirmetas, file headers, distinct chunks).
    pub download_size: u64,
    /// BLAKE3 of the commit's chunk index file (`chunks/<commit-id>.cidx`).
    pub chunk_index_id: ObjectId,
    /// Size of that file in bytes.
    pub chunk_index_size: u64,
    /// BLAKE3 of the commit's signature set file (`sigs/<signatures-id>.sig`, a `USIG`
    /// set as stored beside the commit).
    pub signatures_id: ObjectId,
    /// Size of that file in bytes.
    pub signatures_size: u64,
}

/// One static delta on offer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeltaEntry {
    /// The commit it starts from.
    pub from: CommitId,
    /// The commit it produces.
    pub to: CommitId,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3 of the delta's file (its superblock), checked when fetched.
    pub id: ObjectId,
}

/// The index of a published repository. Refs are sorted by name, deltas by
/// `(from, to)`, metadata by key, each strictly (so unique); see [`Summary::validate`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    /// Grows with every publish; a client refuses a smaller one (rollback).
    pub serial: u64,
    /// When it was published (unix seconds).
    pub timestamp: u64,
    /// When it stops being valid (unix seconds); a client refuses it from then on.
    pub expires: u64,
    /// The repository or channel this summary is for (`stable`, `beta`): a device refuses
    /// a summary for another channel than the one its remote follows, so a second
    /// repository signed by the same key cannot take over its serial. `None` in every
    /// version 1 summary. See [`validate_channel`].
    pub channel: Option<String>,
    /// Set by the publisher (with the summary key) to let devices lower the latest time
    /// they know of to their own clock: the recovery after a summary from the future.
    pub reset_clock: bool,
    /// Published refs, sorted by name, unique.
    pub refs: Vec<RefEntry>,
    /// The packs holding the refs' blobs, sorted by pack id, unique.
    pub packs: Vec<PackEntry>,
    /// Static deltas, sorted by `(from, to)`, unique, `from != to`.
    pub deltas: Vec<DeltaEntry>,
    /// Free-form key/value pairs, sorted by key, keys unique and non-empty.
    pub metadata: Vec<(String, String)>,
}

impl Summary {
    /// Check every rule of the format: orderings, uniqueness, limits, and
    /// `expires > timestamp`.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("summary", reason));
        if self.expires <= self.timestamp {
            return bad(format!(
                "expires ({}) must be later than timestamp ({})",
                self.expires, self.timestamp
            ));
        }
        if self.refs.len() > MAX_SUMMARY_REFS {
            return bad(format!("more than {MAX_SUMMARY_REFS} refs"));
        }
        if self.packs.len() > MAX_SUMMARY_PACKS {
            return bad(format!("more than {MAX_SUMMARY_PACKS} packs"));
        }
        for w in self.packs.windows(2) {
            if w[0].id >= w[1].id {
                return bad(format!(
                    "packs not sorted or not unique: {} then {}",
                    w[0].id, w[1].id
                ));
            }
        }
        if self.deltas.len() > MAX_SUMMARY_DELTAS {
            return bad(format!("more than {MAX_SUMMARY_DELTAS} deltas"));
        }
        if self.metadata.len() > MAX_SUMMARY_METADATA {
            return bad(format!("more than {MAX_SUMMARY_METADATA} metadata entries"));
        }
        for r in &self.refs {
            if let Some(v) = &r.version {
                if v.is_empty() || v.len() > MAX_VERSION {
                    return bad(format!(
                        "version of ref '{}' must be 1..={MAX_VERSION} bytes",
                        r.name
                    ));
                }
            }
        }
        if let Some(c) = &self.channel {
            validate_channel(c)?;
        }
        for w in self.refs.windows(2) {
            if w[0].name.as_str().as_bytes() >= w[1].name.as_str().as_bytes() {
                return bad(format!(
                    "refs not sorted or not unique: '{}' then '{}'",
                    w[0].name, w[1].name
                ));
            }
        }
        // Refs are files on a device: `a` and `a/b` cannot both exist. In byte order every
        // ref below `a/` sorts after `a`, though not always right after it (`a-x` comes
        // between), so look for the first name at or after `a/`.
        for r in &self.refs {
            let dir = format!("{}/", r.name);
            let i = self
                .refs
                .partition_point(|o| o.name.as_str().as_bytes() < dir.as_bytes());
            if let Some(below) = self.refs.get(i) {
                if below.name.as_str().starts_with(&dir) {
                    return bad(format!(
                        "ref '{}' and ref '{}' conflict: a ref cannot also be a directory \
                         of refs",
                        r.name, below.name
                    ));
                }
            }
        }
        for d in &self.deltas {
            if d.from == d.to {
                return bad(format!("delta from commit {} to itself", d.from));
            }
        }
        for w in self.deltas.windows(2) {
            if (w[0].from, w[0].to) >= (w[1].from, w[1].to) {
                return bad(format!(
                    "deltas not sorted or not unique: {}-{} then {}-{}",
                    w[0].from, w[0].to, w[1].from, w[1].to
                ));
            }
        }
        for (k, v) in &self.metadata {
            if k.is_empty() || k.len() > MAX_METADATA_KEY {
                return bad(format!("metadata key must be 1..={MAX_METADATA_KEY} bytes"));
            }
            if v.len() > MAX_METADATA_VALUE {
                return bad(format!(
                    "metadata value of '{k}' longer than {MAX_METADATA_VALUE} bytes"
                ));
            }
        }
        for w in self.metadata.windows(2) {
            if w[0].0.as_bytes() >= w[1].0.as_bytes() {
                return bad(format!(
                    "metadata keys not sorted or not unique: '{}' then '{}'",
                    w[0].0, w[1].0
                ));
            }
        }
        Ok(())
    }

    /// The entry of a ref, if the summary lists it.
    pub fn find_ref(&self, name: &RefName) -> Option<&RefEntry> {
        self.refs
            .binary_search_by(|r| r.name.as_str().as_bytes().cmp(name.as_str().as_bytes()))
            .ok()
            .map(|i| &self.refs[i])
    }

    /// The entry of a pack, if the summary lists it.
    pub fn find_pack(&self, id: &ObjectId) -> Option<&PackEntry> {
        self.packs
            .binary_search_by(|p| p.id.cmp(id))
            .ok()
            .map(|i| &self.packs[i])
    }

    /// The delta from one commit to another, if the summary offers it.
    pub fn find_delta(&self, from: &CommitId, to: &CommitId) -> Option<&DeltaEntry> {
        self.deltas
            .binary_search_by(|d| (d.from, d.to).cmp(&(*from, *to)))
            .ok()
            .map(|i| &self.deltas[i])
    }
}

/// Check a channel name: 1..=64 ASCII letters, digits or `._-+@`, not starting with `.`
/// (the rule of a remote's name).
pub fn validate_channel(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("channel '{}'", name.escape_debug()),
            format!(
                "must be 1..={MAX_CHANNEL} ASCII letters, digits or . _ - + @, not starting \
                 with '.'"
            ),
        ))
    }
}
