//! The canonical encoding of a summary body (`USUM`) and of the signed summary file
//! (`USSF`), both strict: one value, one encoding (`docs/transport.md`).

use ed25519_dalek::Signer;

use super::{
    DeltaEntry, PackEntry, RefEntry, Summary, MAX_CHANNEL, MAX_METADATA_KEY, MAX_METADATA_VALUE,
    MAX_SUMMARY_DELTAS, MAX_SUMMARY_METADATA, MAX_SUMMARY_PACKS, MAX_SUMMARY_REFS,
    MAX_SUMMARY_SIGNATURES, MAX_SUMMARY_SIZE, MAX_VERSION, MIN_SUMMARY_VERSION, SIGNED_SUMMARY_TAG,
    SUMMARY_TAG, SUMMARY_VERSION,
};
use crate::error::{Error, Result};
use store::id::{CommitId, ID_LEN};
use store::object::{Decoder, Encoder, SignatureEntry};
use store::repo::RefName;
use store::sign::{SigningKey, SUMMARY_SIGNATURE_DOMAIN};

/// Smallest encoded ref entry: empty name length, id, version flag, two u64s, then two
/// (id, u64) pins (chunk index, signatures).
const MIN_REF_ENTRY: usize = 4 + ID_LEN + 1 + 8 + 8 + 2 * (ID_LEN + 8);
/// An encoded pack entry: (id, u64) for the pack, then for its index.
const PACK_ENTRY: usize = 2 * (ID_LEN + 8);
/// An encoded delta entry: two ids, a u64, an id.
const DELTA_ENTRY: usize = 3 * ID_LEN + 8;
/// Smallest encoded metadata entry: two empty strings.
const MIN_METADATA_ENTRY: usize = 8;
/// Longest ref name (`RefName::new` enforces the same bound).
const MAX_REF_NAME: usize = 1024;
/// An encoded signature: public key and signature.
const SIGNATURE_ENTRY: usize = 32 + 64;

/// The message every summary signature covers: [`SUMMARY_SIGNATURE_DOMAIN`], then the
/// 32-byte BLAKE3 of the body bytes.
pub fn summary_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SUMMARY_SIGNATURE_DOMAIN.len() + 32);
    m.extend_from_slice(SUMMARY_SIGNATURE_DOMAIN);
    m.extend_from_slice(blake3::hash(body).as_bytes());
    m
}

fn tagged(tag: &[u8; 4]) -> Encoder {
    let mut e = Encoder::default();
    e.raw(tag);
    e.u8(SUMMARY_VERSION);
    e
}

/// Check a tag and the summary format version; returns the version.
fn check_tag(d: &mut Decoder<'_>, tag: &[u8; 4], what: &'static str) -> Result<u8> {
    let got = d.take(4)?;
    if got != tag {
        return Err(Error::decode(
            what,
            // What was found is not quoted: it may be anything.
            format!(
                "it does not start with the tag {:?}: this is not a {what}",
                String::from_utf8_lossy(tag)
            ),
        ));
    }
    match d.u8()? {
        v @ MIN_SUMMARY_VERSION..=SUMMARY_VERSION => Ok(v),
        v if v > SUMMARY_VERSION => Err(Error::Store(store::Error::NewerFormat {
            what,
            found: v.into(),
            supported: SUMMARY_VERSION.into(),
        })),
        v => Err(Error::decode(what, format!("unknown format version {v}"))),
    }
}

impl Summary {
    /// The canonical body bytes (not validated: [`sign_summary`] validates).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = tagged(SUMMARY_TAG);
        e.u64(self.serial);
        e.u64(self.timestamp);
        e.u64(self.expires);
        match &self.channel {
            None => e.u8(0),
            Some(c) => {
                e.u8(1);
                e.bytes(c.as_bytes());
            }
        }
        e.u8(self.reset_clock.into());
        e.count(self.refs.len());
        for r in &self.refs {
            e.bytes(r.name.as_str().as_bytes());
            e.raw(r.commit.0.as_bytes());
            match &r.version {
                None => e.u8(0),
                Some(v) => {
                    e.u8(1);
                    e.bytes(v.as_bytes());
                }
            }
            e.u64(r.timestamp);
            e.u64(r.download_size);
            e.raw(r.chunk_index_id.as_bytes());
            e.u64(r.chunk_index_size);
            e.raw(r.signatures_id.as_bytes());
            e.u64(r.signatures_size);
        }
        e.count(self.packs.len());
        for p in &self.packs {
            e.raw(p.id.as_bytes());
            e.u64(p.size);
            e.raw(p.index_id.as_bytes());
            e.u64(p.index_size);
        }
        e.count(self.deltas.len());
        for d in &self.deltas {
            e.raw(d.from.0.as_bytes());
            e.raw(d.to.0.as_bytes());
            e.u64(d.size);
            e.raw(d.id.as_bytes());
        }
        e.count(self.metadata.len());
        for (k, v) in &self.metadata {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.finish()
    }

    /// Decode a body, refusing anything but the canonical encoding of a valid summary.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        const WHAT: &str = "summary";
        let mut d = Decoder::new(buf, WHAT);
        let version = check_tag(&mut d, SUMMARY_TAG, WHAT)?;
        let serial = d.u64()?;
        let timestamp = d.u64()?;
        let expires = d.u64()?;
        // Version 1 has neither field: no channel, no reset.
        let (channel, reset_clock) = if version >= 2 {
            let channel = match d.u8()? {
                0 => None,
                1 => Some(d.string(MAX_CHANNEL)?),
                f => {
                    return Err(Error::decode(
                        WHAT,
                        format!("channel flag {f} is neither 0 nor 1"),
                    ))
                }
            };
            let reset_clock = match d.u8()? {
                0 => false,
                1 => true,
                f => {
                    return Err(Error::decode(
                        WHAT,
                        format!("reset-clock flag {f} is neither 0 nor 1"),
                    ))
                }
            };
            (channel, reset_clock)
        } else {
            (None, false)
        };
        let n = d.count(MAX_SUMMARY_REFS, MIN_REF_ENTRY)?;
        let mut refs = Vec::with_capacity(n);
        for _ in 0..n {
            let name = d.string(MAX_REF_NAME)?;
            let name = RefName::new(name).map_err(|e| Error::decode(WHAT, e.to_string()))?;
            let commit = CommitId(d.id()?);
            let version = match d.u8()? {
                0 => None,
                1 => Some(d.string(MAX_VERSION)?),
                f => {
                    return Err(Error::decode(
                        WHAT,
                        format!("version flag {f} of ref '{name}' is neither 0 nor 1"),
                    ))
                }
            };
            refs.push(RefEntry {
                name,
                commit,
                version,
                timestamp: d.u64()?,
                download_size: d.u64()?,
                chunk_index_id: d.id()?,
                chunk_index_size: d.u64()?,
                signatures_id: d.id()?,
                signatures_size: d.u64()?,
            });
        }
        let n = d.count(MAX_SUMMARY_PACKS, PACK_ENTRY)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            packs.push(PackEntry {
                id: d.id()?,
                size: d.u64()?,
                index_id: d.id()?,
                index_size: d.u64()?,
            });
        }
        let n = d.count(MAX_SUMMARY_DELTAS, DELTA_ENTRY)?;
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            deltas.push(DeltaEntry {
                from: CommitId(d.id()?),
                to: CommitId(d.id()?),
                size: d.u64()?,
                id: d.id()?,
            });
        }
        let n = d.count(MAX_SUMMARY_METADATA, MIN_METADATA_ENTRY)?;
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            let k = d.string(MAX_METADATA_KEY)?;
            let v = d.string(MAX_METADATA_VALUE)?;
            metadata.push((k, v));
        }
        d.finish()?;
        let s = Summary {
            serial,
            timestamp,
            expires,
            channel,
            reset_clock,
            refs,
            packs,
            deltas,
            metadata,
        };
        s.validate()
            .map_err(|e| Error::decode(WHAT, e.to_string()))?;
        Ok(s)
    }
}

/// A parsed signed summary file: the summary, the exact body bytes its signatures cover,
/// and the signatures (structurally valid, sorted by key, not yet verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedSummary<'a> {
    /// The decoded summary.
    pub summary: Summary,
    /// The body bytes, as found in the file.
    pub body: &'a [u8],
    /// The signatures, sorted by public key, one per key.
    pub signatures: Vec<SignatureEntry>,
}

/// Encode and sign a summary: the `USSF` file that is published. Each distinct key signs
/// once. Fails on an invalid summary, more than [`MAX_SUMMARY_SIGNATURES`] keys, or a file
/// that would exceed [`MAX_SUMMARY_SIZE`]. With no keys the file is unsigned, which every
/// client refuses.
pub fn sign_summary(summary: &Summary, keys: &[&SigningKey]) -> Result<Vec<u8>> {
    summary.validate()?;
    let body = summary.encode();
    let message = summary_message(&body);
    let mut sigs: Vec<SignatureEntry> = keys
        .iter()
        .map(|k| SignatureEntry {
            public_key: k.verifying_key().to_bytes(),
            signature: k.sign(&message).to_bytes(),
        })
        .collect();
    sigs.sort_by_key(|s| s.public_key);
    sigs.dedup_by(|a, b| a.public_key == b.public_key);
    if sigs.len() > MAX_SUMMARY_SIGNATURES {
        return Err(Error::TooManySummaryKeys {
            given: sigs.len(),
            limit: MAX_SUMMARY_SIGNATURES,
        });
    }
    let mut e = tagged(SIGNED_SUMMARY_TAG);
    e.bytes(&body);
    e.count(sigs.len());
    for s in &sigs {
        e.raw(&s.public_key);
        e.raw(&s.signature);
    }
    let file = e.finish();
    if file.len() as u64 > MAX_SUMMARY_SIZE {
        return Err(Error::SummaryTooLarge {
            size: file.len() as u64,
            limit: MAX_SUMMARY_SIZE,
        });
    }
    Ok(file)
}

/// The structure of a signed summary file, without decoding the body: the size cap, the
/// tag, the body bytes and the signatures. Verification checks signatures over the body
/// before the body is decoded.
pub(super) fn parse_envelope(bytes: &[u8]) -> Result<(&[u8], Vec<SignatureEntry>)> {
    const WHAT: &str = "signed summary";
    if bytes.len() as u64 > MAX_SUMMARY_SIZE {
        return Err(Error::SummaryTooLarge {
            size: bytes.len() as u64,
            limit: MAX_SUMMARY_SIZE,
        });
    }
    let mut d = Decoder::new(bytes, WHAT);
    check_tag(&mut d, SIGNED_SUMMARY_TAG, WHAT)?;
    let body = d.bytes(MAX_SUMMARY_SIZE as usize)?;
    let n = d.count(MAX_SUMMARY_SIGNATURES, SIGNATURE_ENTRY)?;
    let mut sigs = Vec::with_capacity(n);
    for _ in 0..n {
        let public_key: [u8; 32] = d.take(32)?.try_into().expect("32 bytes");
        let signature: [u8; 64] = d.take(64)?.try_into().expect("64 bytes");
        if let Some(last) = sigs.last() {
            let last: &SignatureEntry = last;
            if last.public_key >= public_key {
                return Err(Error::decode(
                    WHAT,
                    "signatures not sorted by public key or a key signs twice",
                ));
            }
        }
        sigs.push(SignatureEntry {
            public_key,
            signature,
        });
    }
    d.finish()?;
    Ok((body, sigs))
}

/// Parse a signed summary file (size cap first), decoding the body strictly. Signatures
/// are checked for structure only; [`super::verify_summary`] decides trust.
pub fn parse_signed(bytes: &[u8]) -> Result<SignedSummary<'_>> {
    let (body, signatures) = parse_envelope(bytes)?;
    Ok(SignedSummary {
        summary: Summary::decode(body)?,
        body,
        signatures,
    })
}
