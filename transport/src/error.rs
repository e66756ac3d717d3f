//! The one error type of the `transport` crate: the published format and publishing.
//! Pull and mirror report through [`crate::pull::PullError`], which wraps this one.

use std::io;
use std::path::PathBuf;

use store::id::ObjectId;

/// Everything that can go wrong reading or writing the published format. Fields are
/// structured so that callers can match on them; the `Display` text names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store refused something: an object is missing or corrupt, a value breaks a
    /// rule of the format, a file could not be read or written.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Reading or writing a stream that has no path (a reader handed in, a delta being
    /// written to a socket or a pack) failed.
    #[error("I/O error while {what}")]
    Stream {
        /// What was being done.
        what: &'static str,
        /// What the reader or writer said.
        source: io::Error,
    },
    /// Compressed bytes (a chunk or a delta) do not decode to exactly the declared content.
    #[error("{what}: {problem}")]
    Decompress {
        /// What was being decoded ("chunk", "delta").
        what: &'static str,
        /// What was wrong.
        problem: crate::compress::DecompressProblem,
    },
    /// No delta is made against an old version too large to hold as the reference window;
    /// the caller sends the whole new file instead.
    #[error(
        "old version is {old_len} bytes, over the {limit}-byte delta window: send the whole file"
    )]
    DeltaTooLarge {
        /// Size of the old version.
        old_len: u64,
        /// [`crate::compress::MAX_DELTA_WINDOW`].
        limit: u64,
    },
    /// A summary file is larger than any summary may be (checked before parsing).
    #[error("summary file of {size} bytes exceeds the limit of {limit} bytes: not a summary, or a hostile server")]
    SummaryTooLarge {
        /// Its size (or the bytes seen so far).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// More distinct keys were given to sign a summary than a summary may carry.
    #[error("a summary carries at most {limit} signatures, {given} keys given")]
    TooManySummaryKeys {
        /// Distinct keys given.
        given: usize,
        /// [`crate::summary::MAX_SUMMARY_SIGNATURES`].
        limit: usize,
    },
    /// A summary carries no signature at all.
    #[error("summary is unsigned: a device only accepts a summary signed by a trusted key")]
    SummaryUnsigned,
    /// A summary has signatures, but none is a valid one by a trusted key.
    #[error(
        "summary has no trusted signature ({untrusted} valid by untrusted keys, {invalid} invalid)"
    )]
    SummaryUntrusted {
        /// Valid signatures by keys outside the trusted set.
        untrusted: usize,
        /// Signatures that do not verify over this summary's body.
        invalid: usize,
    },
    /// A validly signed summary older than the last one accepted: a rollback attack or a
    /// stale mirror.
    #[error("summary rollback: serial {found} is older than the last accepted serial {last}")]
    SummaryRollback {
        /// The serial of the summary offered.
        found: u64,
        /// The serial of the last summary accepted.
        last: u64,
    },
    /// A validly signed summary with the serial of the last one accepted but other content:
    /// the signer published two different summaries under one serial.
    #[error("summary equivocation: serial {serial} was already accepted with different content")]
    SummaryEquivocation {
        /// The serial both summaries carry.
        serial: u64,
    },
    /// A validly signed summary whose expiry has passed: a freeze attack or a stale mirror.
    /// This is not "no update available".
    #[error("summary expired (freeze attack or stale mirror): it expired at {expires}, the time is now at least {now} (unix seconds; device clock reads {device_clock})")]
    SummaryExpired {
        /// When it expired (unix seconds).
        expires: u64,
        /// The time it was checked against: the later of the device clock and the latest
        /// time known from earlier summaries.
        now: u64,
        /// What the device clock said.
        device_clock: u64,
    },
    /// A validly signed summary for another channel (or none) than the one the remote
    /// follows: another repository signed by the same key, served in place of this one.
    #[error(
        "summary is for {}, but this remote follows channel '{expected}': another repository \
         signed by the same key was served in its place; refused, trust state unchanged",
        found.as_deref().map_or_else(|| "no channel".to_owned(), |c| format!("channel '{c}'"))
    )]
    SummaryWrongChannel {
        /// The channel the remote follows.
        expected: String,
        /// The channel the summary names, if any.
        found: Option<String>,
    },
    /// A blob read from a pack does not match its pack index entry: its bytes do not hash
    /// to its id, do not decompress to its declared length, or do not decode (THREATS C6).
    #[error("{kind} blob {id} in pack {pack}: {reason}")]
    BadBlob {
        /// The pack it was read from.
        pack: ObjectId,
        /// Its kind.
        kind: crate::pack::BlobKind,
        /// The id its index entry names.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// The summary already in a publish directory cannot be read, so the serial the next
    /// one must exceed is unknown.
    #[error("previous summary {}: {reason}; refusing to publish, since the serial must only grow (move the file away to start again at serial 1)", path.display())]
    PreviousSummary {
        /// The summary file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A persisted summary trust state file is damaged. Trust is never reset silently:
    /// repair or remove the file deliberately.
    #[error("summary trust state {}: {reason}", path.display())]
    TrustStateCorrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with the transport's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`store::Error::Invalid`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Store(store::Error::invalid(what, reason))
    }

    /// Shorthand for [`store::Error::Decode`].
    pub fn decode(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Store(store::Error::decode(what, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn stream_error_says_what_was_being_done_and_leaves_the_cause_to_source() {
        let e = Error::Stream {
            what: "reading a static delta",
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(e.to_string(), "I/O error while reading a static delta");
        assert_eq!(
            error_ext::Chain(&e).to_string(),
            "I/O error while reading a static delta: disk on fire"
        );
    }
}
