//! Client-side verification of a signed summary, in TUF's order: size cap and structure,
//! a trusted signature over the body, rollback and equivocation against the last accepted
//! summary, then expiry against a clock that cannot go back.

use ed25519_dalek::Signature;

use super::encode::{parse_envelope, summary_message};
use super::Summary;
use crate::error::{Error, Result};
use store::object::SignatureEntry;
use store::sign::{PublicKey, TrustedKeys};

/// What a device remembers about the last summary it accepted from one remote. Persist it
/// with [`super::save_trust_state`] only after a successful [`verify_summary`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct TrustState {
    /// Serial of the last accepted summary; `None` before the first.
    pub last_serial: Option<u64>,
    /// BLAKE3 of the last accepted summary's body bytes; `None` before the first.
    pub last_body_hash: Option<[u8; 32]>,
    /// The latest time (unix seconds) known to have passed: from the device clock and the
    /// `timestamp` of accepted summaries. Expiry is checked against at least this, so a
    /// clock reset to 1970 cannot be fed an old summary.
    pub latest_known_time: u64,
}

/// A summary that passed every check, and the state to persist for the next run.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verified {
    /// The summary.
    pub summary: Summary,
    /// BLAKE3 of its body bytes.
    pub body_hash: [u8; 32],
    /// Names of the trusted keys with a valid signature, each key once.
    pub signed_by: Vec<String>,
    /// True when this is the very summary accepted last time (same serial, same body):
    /// nothing changed upstream.
    pub unchanged: bool,
    /// When the device clock is behind the latest known time, by how many seconds: the
    /// clock is wrong (reset, or stepped back) and should be reported.
    pub clock_behind: Option<u64>,
    /// The trust state to persist now that the summary is accepted.
    pub new_state: TrustState,
}

/// Whether `entry` is a strictly valid signature over `message` by a valid, non-weak key.
fn entry_valid(message: &[u8], entry: &SignatureEntry) -> Option<PublicKey> {
    let key = PublicKey::from_bytes(&entry.public_key).ok()?;
    let sig = Signature::from_bytes(&entry.signature);
    key.verifying_key()
        .verify_strict(message, &sig)
        .ok()
        .map(|()| key)
}

/// Verify a signed summary file fetched from a remote, with "now" fixed once by the
/// caller for the whole run. On any error nothing is to be persisted: the caller keeps
/// `state` and discards `bytes`.
///
/// Order (TUF client workflow):
/// 1. size cap ([`Error::SummaryTooLarge`]) and structure;
/// 2. at least one strictly valid signature by a trusted key over
///    [`super::summary_message`] of the body ([`Error::SummaryUnsigned`],
///    [`Error::SummaryUntrusted`]); only then is the body decoded;
/// 3. rollback: a serial below the last accepted one is refused
///    ([`Error::SummaryRollback`]); the same serial with another body is refused
///    ([`Error::SummaryEquivocation`]); the same serial and body is accepted unchanged;
/// 4. freshness: refused when `expires <= max(now, state.latest_known_time)`
///    ([`Error::SummaryExpired`]);
/// 5. the new state: this serial and body hash, and
///    `latest_known_time = max(state.latest_known_time, now, summary.timestamp)`.
pub fn verify_summary(
    bytes: &[u8],
    trusted: &TrustedKeys,
    state: &TrustState,
    now: u64,
) -> Result<Verified> {
    // 1. Size cap, then structure only: the body is not decoded before it is trusted.
    let (body, signatures) = parse_envelope(bytes)?;

    // 2. Signatures.
    if signatures.is_empty() {
        return Err(Error::SummaryUnsigned);
    }
    let message = summary_message(body);
    let (mut untrusted, mut invalid) = (0, 0);
    let mut signed_by = Vec::new();
    for entry in &signatures {
        match entry_valid(&message, entry) {
            None => invalid += 1,
            // The set is sorted strictly by key, so no key counts twice.
            Some(key) => match trusted.name_of(&key.to_bytes()) {
                Some(name) => signed_by.push(name.to_owned()),
                None => untrusted += 1,
            },
        }
    }
    if signed_by.is_empty() {
        return Err(Error::SummaryUntrusted { untrusted, invalid });
    }
    let summary = Summary::decode(body)?;
    let body_hash = *blake3::hash(body).as_bytes();

    // 3. Rollback and equivocation.
    let mut unchanged = false;
    if let Some(last) = state.last_serial {
        if summary.serial < last {
            return Err(Error::SummaryRollback {
                found: summary.serial,
                last,
            });
        }
        if summary.serial == last {
            if state.last_body_hash != Some(body_hash) {
                return Err(Error::SummaryEquivocation {
                    serial: summary.serial,
                });
            }
            unchanged = true;
        }
    }

    // 4. Freshness, against a time that never goes back.
    let effective_now = now.max(state.latest_known_time);
    if summary.expires <= effective_now {
        return Err(Error::SummaryExpired {
            expires: summary.expires,
            now: effective_now,
            device_clock: now,
        });
    }

    // 5. What to persist.
    let new_state = TrustState {
        last_serial: Some(summary.serial),
        last_body_hash: Some(body_hash),
        latest_known_time: effective_now.max(summary.timestamp),
    };
    Ok(Verified {
        summary,
        body_hash,
        signed_by,
        unchanged,
        clock_behind: (now < state.latest_known_time).then(|| state.latest_known_time - now),
        new_state,
    })
}
