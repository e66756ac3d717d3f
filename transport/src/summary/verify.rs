//! Client-side verification of a signed summary, in TUF's order: size cap and structure,
//! a trusted signature over the body, the channel, rollback and equivocation against the
//! last accepted summary, then expiry against a clock that cannot go back, and a bounded
//! lesson about time to persist.

use ed25519_dalek::Signature;

use super::encode::{parse_envelope, summary_message};
use super::Summary;
use crate::error::{Error, Result};
use store::object::SignatureEntry;
use store::sign::{PublicKey, TrustedKeys};

/// What a device remembers about the last summary it accepted from one remote. Persist it
/// with [`super::save_trust_state`] only after a successful [`verify_summary`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TrustState {
    /// Serial of the last accepted summary; `None` before the first.
    pub last_serial: Option<u64>,
    /// BLAKE3 of the last accepted summary's body bytes; `None` before the first.
    pub last_body_hash: Option<[u8; 32]>,
    /// The latest time (unix seconds) known to have passed: from the device clock and the
    /// `timestamp` of accepted summaries, the latter only up to the device clock plus the
    /// allowed skew. Expiry is checked against at least this, so a clock reset to 1970
    /// cannot be fed an old summary.
    pub latest_known_time: u64,
    /// The channel of the accepted summaries, pinned by the first one that named one
    /// (trust on first use) unless the remote configures it; `None` while none did.
    pub channel: Option<String>,
}

/// How far (seconds) a summary's timestamp may be ahead of the device clock and still
/// raise the latest known time to it, unless the remote says otherwise: one day.
pub const DEFAULT_MAX_CLOCK_SKEW: u64 = 86_400;

/// What a run checks a summary against, besides the trust state.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions<'a> {
    /// "Now" by the device clock (unix seconds), fixed once for the run.
    pub now: u64,
    /// How far ahead of `now` a summary's timestamp may raise the latest known time.
    pub max_clock_skew: u64,
    /// The channel the remote is configured to follow; `None`: the one the trust state
    /// pinned, if any.
    pub channel: Option<&'a str>,
}

impl VerifyOptions<'_> {
    /// Defaults for a run at `now`: a skew of [`DEFAULT_MAX_CLOCK_SKEW`], no configured
    /// channel.
    pub fn at(now: u64) -> Self {
        VerifyOptions {
            now,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            channel: None,
        }
    }
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
    /// When the summary's timestamp is beyond the device clock plus the allowed skew: that
    /// timestamp. The summary is used, but it taught the clock only up to the bound.
    pub timestamp_ahead: Option<u64>,
    /// True when the summary carries the publisher's reset-clock flag and is new: the
    /// latest known time was lowered to the device clock.
    pub clock_reset: bool,
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

/// [`verify_summary_with`] with the defaults of [`VerifyOptions::at`]`(now)`.
pub fn verify_summary(
    bytes: &[u8],
    trusted: &TrustedKeys,
    state: &TrustState,
    now: u64,
) -> Result<Verified> {
    verify_summary_with(bytes, trusted, state, &VerifyOptions::at(now))
}

/// Verify a signed summary file fetched from a remote, with "now" fixed once by the
/// caller for the whole run. On any error nothing is to be persisted: the caller keeps
/// `state` and discards `bytes`. On success the caller persists
/// [`Verified::new_state`] only once everything the summary led it to fetch is verified.
///
/// Order (TUF client workflow):
/// 1. size cap ([`Error::SummaryTooLarge`]) and structure;
/// 2. at least one strictly valid signature by a trusted key over
///    [`super::summary_message`] of the body ([`Error::SummaryUnsigned`],
///    [`Error::SummaryUntrusted`]); only then is the body decoded;
/// 3. channel: when the remote follows one (`opts.channel`, else the one `state`
///    pinned), the summary must name the same ([`Error::SummaryWrongChannel`]);
/// 4. rollback: a serial below the last accepted one is refused
///    ([`Error::SummaryRollback`]); the same serial with another body is refused
///    ([`Error::SummaryEquivocation`]); the same serial and body is accepted unchanged;
/// 5. freshness: refused when `expires <= max(now, state.latest_known_time)`
///    ([`Error::SummaryExpired`]); for a new summary with the reset-clock flag, when
///    `expires <= now`;
/// 6. the new state: this serial, body hash and channel, and `latest_known_time =
///    max(base, min(summary.timestamp, now + max_clock_skew))`, where `base` is
///    `max(state.latest_known_time, now)`, or `now` after a reset.
pub fn verify_summary_with(
    bytes: &[u8],
    trusted: &TrustedKeys,
    state: &TrustState,
    opts: &VerifyOptions<'_>,
) -> Result<Verified> {
    let now = opts.now;
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

    // 3. The channel: another repository signed by the same key is not this one.
    if let Some(expected) = opts.channel.or(state.channel.as_deref()) {
        if summary.channel.as_deref() != Some(expected) {
            return Err(Error::SummaryWrongChannel {
                expected: expected.to_owned(),
                found: summary.channel,
            });
        }
    }

    // 4. Rollback and equivocation.
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

    // 5. Freshness, against a time that never goes back, except when the publisher, with
    // the summary key, says that the time learnt so far is wrong. A replay of that
    // summary is `unchanged` and resets nothing.
    let clock_reset = summary.reset_clock && !unchanged;
    let effective_now = if clock_reset {
        now
    } else {
        now.max(state.latest_known_time)
    };
    if summary.expires <= effective_now {
        return Err(Error::SummaryExpired {
            expires: summary.expires,
            now: effective_now,
            device_clock: now,
        });
    }

    // 6. What to persist. A summary teaches the clock at most `max_clock_skew` past the
    // device clock: one published by a machine whose clock was years ahead must not make
    // every later summary look expired.
    let bound = now.saturating_add(opts.max_clock_skew);
    let new_state = TrustState {
        last_serial: Some(summary.serial),
        last_body_hash: Some(body_hash),
        latest_known_time: effective_now.max(summary.timestamp.min(bound)),
        channel: summary.channel.clone().or_else(|| state.channel.clone()),
    };
    Ok(Verified {
        timestamp_ahead: (summary.timestamp > bound).then_some(summary.timestamp),
        summary,
        body_hash,
        signed_by,
        unchanged,
        clock_behind: (now < state.latest_known_time).then(|| state.latest_known_time - now),
        clock_reset,
        new_state,
    })
}
