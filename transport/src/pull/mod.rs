//! `update pull`: bring a remote's refs into the local repository. Nothing enters the store
//! before it is verified (docs/transport.md 2.4 and 4.3):
//!
//! 1. the summary: size cap, a signature by a key the remote trusts, the remote's channel,
//!    serial not older than the last one accepted, not expired against a clock that never
//!    goes back; its new trust state is saved only at the very end (5.);
//! 2. per ref: its signature set, pinned by the summary, must carry a valid signature by a
//!    trusted key over the commit id;
//! 3. a commit older than the one the ref has is refused unless downgrades are allowed;
//! 4. the chunk index and pack indexes, pinned by the summary, are decoded strictly; every
//!    fetched blob is checked against its id, every rebuilt file against its file id;
//! 5. only once every ref is complete and verified do the remote's refs move, all at the
//!    end: refs the summary no longer lists are deleted, the pulled ones written; then the
//!    trust state is saved. A pull that fails on the way leaves both as they were.
//!
//! Only what the store lacks is fetched: objects present are skipped, and chunks of files
//! the device holds are read locally instead of downloaded.

mod chunked;
mod delta;
mod files;
mod pipe;
mod source;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pack::PackIndex;
use crate::publish::SUMMARY_FILE;
use crate::summary::MAX_SUMMARY_SIZE;
use crate::summary::{
    load_trust_state, save_trust_state, verify_summary_with, RefEntry, Summary, VerifyOptions,
    DEFAULT_MAX_CLOCK_SKEW,
};
use store::object::{ObjectKind, Signatures};
use store::remote::Remote;
use store::sign::{verify_signatures, TrustedKeys};
use store::{CommitId, RefName, Repo};

use fetch::{FetchConfig, Fetcher, TlsConfig};
use files::Cache;

/// How a pull runs.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Accept a commit older than the one the ref has now.
    pub allow_downgrade: bool,
    /// "Now" in unix seconds; `None` reads the system clock.
    pub now: Option<u64>,
    /// About how many stored bytes to fetch and rebuild per batch (memory is bounded by a
    /// small multiple of it); each finished batch survives an interrupted pull.
    pub batch_bytes: u64,
    /// Use a static delta from the commit the ref has when the remote offers one.
    pub use_deltas: bool,
    /// Overrides for the fetch layer (timeouts, retries, parallelism).
    pub fetch: Option<FetchConfig>,
    /// Check the summary's and the commits' signatures against the remote's keys (and the
    /// summary's serial and expiry). Off only when the user turned verification off: every
    /// object is still checked against its id, but whoever serves the files chooses what
    /// is installed, and the trust state is left as it was.
    pub verify: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            allow_downgrade: false,
            now: None,
            batch_bytes: 2 << 20,
            use_deltas: true,
            fetch: None,
            verify: true,
        }
    }
}

/// What a pull reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The summary passed every check.
    Summary {
        /// Its serial.
        serial: u64,
        /// The trusted keys that signed it.
        signed_by: Vec<String>,
        /// True when it is the summary accepted last time.
        unchanged: bool,
    },
    /// The device clock is behind the latest time known to have passed; expiry was checked
    /// against the latter. The clock should be fixed.
    ClockBehind {
        /// By how many seconds.
        seconds: u64,
    },
    /// The summary's timestamp is further ahead of the device clock than the remote's
    /// maximum skew: it was used, but taught the device only the bound (the publisher's
    /// clock is probably wrong).
    TimestampAhead {
        /// The summary's timestamp.
        timestamp: u64,
        /// The device clock.
        now: u64,
    },
    /// The summary carries the publisher's reset-clock flag: the latest known time was
    /// lowered to the device clock.
    ClockReset,
    /// A ref's download is planned: `bytes` will be fetched (exact, unless the remote's
    /// index lies, which fails the pull).
    Planned {
        /// The ref.
        name: String,
        /// The commit being pulled.
        commit: CommitId,
        /// Bytes to fetch.
        bytes: u64,
        /// File objects to fetch.
        files: u64,
        /// Whether a static delta is used.
        delta: bool,
    },
    /// A static delta could not be applied; the pull goes on chunk by chunk.
    DeltaFailed {
        /// The ref.
        name: String,
        /// Why.
        reason: String,
    },
    /// Bytes fetched so far for the ref being pulled.
    Progress {
        /// The ref.
        name: String,
        /// Bytes fetched so far.
        done: u64,
        /// The planned total.
        total: u64,
    },
}

/// What happened to one ref.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefOutcome {
    /// The ref.
    pub name: RefName,
    /// The commit it points at now.
    pub commit: CommitId,
    /// The commit it pointed at before, if any.
    pub previous: Option<CommitId>,
    /// The commit's version, as published.
    pub version: Option<String>,
    /// False when the ref was already at this commit.
    pub updated: bool,
    /// Bytes of packs, deltas and indexes fetched for it.
    pub bytes: u64,
    /// File objects added to the store.
    pub files: u64,
    /// The trusted keys that signed the commit.
    pub signed_by: Vec<String>,
}

/// What a pull did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullReport {
    /// The remote.
    pub remote: String,
    /// The serial of the accepted summary.
    pub serial: u64,
    /// One outcome per ref pulled.
    pub refs: Vec<RefOutcome>,
    /// Refs of the remote deleted because the summary no longer lists them.
    pub removed: Vec<String>,
    /// Bytes fetched in all, the summary and indexes included.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
}

/// Why a pull failed. The store and the remote's trust state are as they were, except for
/// whole verified files kept for the next attempt.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The store refused something, or a verification failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The published format refused something: a summary, an index, a pack, a delta.
    #[error(transparent)]
    Transport(#[from] crate::Error),
    /// Fetching failed.
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    /// The remote does not publish the ref asked for.
    #[error("remote '{remote}' does not publish '{name}' (it publishes: {available})")]
    NoSuchRef {
        /// The remote.
        remote: String,
        /// The ref asked for.
        name: String,
        /// What it publishes.
        available: String,
    },
    /// The remote's summary lists no ref at all.
    #[error("remote '{remote}' publishes no ref: its summary is empty")]
    NothingPublished {
        /// The remote.
        remote: String,
    },
    /// The offered commit is older than the one the ref has.
    #[error(transparent)]
    Downgrade(Box<Downgrade>),
    /// What was served as the summary is not one. Nothing of what came is quoted: it may
    /// be anything (a host file, a page with a session token).
    #[error("{url} is not an update summary: {problem}")]
    NotARepository {
        /// The summary's URL.
        url: String,
        /// What is wrong, classified.
        problem: &'static str,
    },
    /// A blob of a published pack fails its check against the pack's index.
    #[error(
        "remote '{remote}' serves damaged data: {kind} {id} in {file}: {reason} (the \
         mirror or server holds a damaged copy; nothing of it was stored)"
    )]
    DamagedPack {
        /// The remote.
        remote: String,
        /// The published file (`packs/<id>.pack`).
        file: String,
        /// The blob's kind.
        kind: &'static str,
        /// The blob's id.
        id: store::ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// The commit's timestamp is later than the summary that offers it, by more than a day.
    #[error(
        "commit {commit} claims time {timestamp}, over a day after the summary offering it \
         was published ({published}): refused, so that a wrong builder clock cannot block \
         every later update"
    )]
    FromTheFuture {
        /// The commit.
        commit: CommitId,
        /// Its timestamp.
        timestamp: u64,
        /// The summary's timestamp.
        published: u64,
    },
    /// Not enough free space for what the pull would store.
    #[error(
        "not enough space in {}: the pull needs {needed} bytes, {available} are free",
        path.display()
    )]
    NoSpace {
        /// The repository.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// A file the summary pins has another size or hash.
    #[error("{file}: {reason} (a tampered or inconsistent mirror)")]
    Pinned {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The remote's indexes do not describe the commit.
    #[error("remote index is inconsistent: {reason}")]
    Plan {
        /// What is wrong.
        reason: String,
    },
    /// A local file (cache, partial download) could not be used.
    #[error("{}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A refused downgrade: the commit offered is older than the one the ref has.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to downgrade {remote}:{name} from {current} (time {current_time}) to the \
     older {offered} (time {offered_time}); pass --allow-downgrade to accept it"
)]
pub struct Downgrade {
    /// The remote.
    pub remote: String,
    /// The ref.
    pub name: String,
    /// The commit the ref has.
    pub current: CommitId,
    /// Its timestamp.
    pub current_time: u64,
    /// The commit offered.
    pub offered: CommitId,
    /// Its timestamp.
    pub offered_time: u64,
}

/// A remote's TLS files as the fetch layer takes them; `None` when none is set.
pub fn tls_config(tls: &store::remote::RemoteTls) -> Option<TlsConfig> {
    (!tls.is_empty()).then(|| TlsConfig {
        ca_file: tls.ca.clone(),
        client_cert: tls.client_cert.clone(),
        client_key: tls.client_key.clone(),
    })
}

/// The fetch configuration of a remote.
pub fn fetch_config(remote: &Remote) -> FetchConfig {
    let mut cfg = FetchConfig::new(remote.url.clone());
    // A pack holds blobs a device does not need (other commits', replaced files'): merge
    // only ranges a part header apart (a multipart part costs about 100 bytes), and ask for
    // many ranges per request instead (about 20 bytes of Range header each, well within the
    // 8 KiB request line and header limits of common servers).
    cfg.range_gap = PULL_RANGE_GAP;
    cfg.max_ranges_per_request = PULL_RANGES_PER_REQUEST;
    // A batch's blobs in one request per pack: a full pull in fewer than one request per
    // 100 files, with the bytes of one batch in flight.
    cfg.min_parallel_bytes = PullOptions::default().batch_bytes;
    cfg.tls = tls_config(&remote.tls);
    cfg
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Ranges of a pack closer than this are fetched as one.
const PULL_RANGE_GAP: u64 = 512;
/// Most ranges asked for in one request.
const PULL_RANGES_PER_REQUEST: usize = 200;

/// Threads storing files during a chunked pull.
const WRITER_THREADS: usize = 4;

/// How far a commit's timestamp may be after its summary's.
const FUTURE_SLACK: u64 = 86_400;

/// Check that the repository's filesystem has `needed` bytes free.
pub(crate) fn check_space(repo: &Repo, needed: u64) -> Result<(), PullError> {
    let st = rustix::fs::statvfs(repo.path()).map_err(|e| PullError::Local {
        path: repo.path().to_path_buf(),
        source: e.into(),
    })?;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if needed > available {
        return Err(PullError::NoSpace {
            path: repo.path().to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// State shared by the steps of one pull.
pub(crate) struct PullCtx<'a> {
    repo: &'a Repo,
    remote: &'a Remote,
    fetcher: &'a Fetcher,
    trusted: TrustedKeys,
    summary: &'a Summary,
    cache: Cache,
    opts: &'a PullOptions,
    events: &'a mut dyn FnMut(&Event),
    /// The summary's pack indexes, loaded on first need, in the summary's order.
    packs: Vec<PackIndex>,
    packs_loaded: bool,
    /// Bytes fetched so far.
    fetched: u64,
    /// Threads that rebuild and store files. Creating a file is mostly waiting on the
    /// filesystem's journal, so more threads than cores overlap those waits.
    writers: rayon::ThreadPool,
}

impl PullCtx<'_> {
    fn load_packs(&mut self) -> Result<(), PullError> {
        if !self.packs_loaded {
            for entry in &self.summary.packs {
                let index = self
                    .cache
                    .pack_index(self.fetcher, entry, &mut self.fetched)?;
                self.packs.push(index);
            }
            self.packs_loaded = true;
        }
        Ok(())
    }

    /// Refuse a commit older than the ref's current one, unless allowed.
    fn check_downgrade(
        &self,
        entry: &RefEntry,
        current: Option<&CommitId>,
        offered_time: u64,
    ) -> Result<(), PullError> {
        // A commit "from the future" would make every later real update look like a
        // downgrade; a day of slack covers clock skew between builder and publisher.
        if offered_time > self.summary.timestamp.saturating_add(FUTURE_SLACK) {
            return Err(PullError::FromTheFuture {
                commit: entry.commit,
                timestamp: offered_time,
                published: self.summary.timestamp,
            });
        }
        let Some(current) = current else {
            return Ok(());
        };
        if self.opts.allow_downgrade || *current == entry.commit {
            return Ok(());
        }
        let current_time = self.repo.read_commit(current)?.timestamp;
        if offered_time < current_time {
            return Err(PullError::Downgrade(Box::new(Downgrade {
                remote: self.remote.name.clone(),
                name: entry.name.to_string(),
                current: *current,
                current_time,
                offered: entry.commit,
                offered_time,
            })));
        }
        Ok(())
    }

    /// Whether everything `commit` (present) names is in the store.
    fn complete(&self, commit: &CommitId) -> bool {
        self.repo
            .read_commit(commit)
            .ok()
            .and_then(|c| chunked::walk(self.repo, &c, &Default::default()).ok())
            .is_some_and(|missing| missing.is_empty())
    }

    fn pull_ref(&mut self, entry: &RefEntry) -> Result<RefOutcome, PullError> {
        let repo = self.repo;
        let previous = repo.read_remote_ref(&self.remote.name, &entry.name)?;
        let current = match previous {
            Some(c) if repo.has_object(ObjectKind::Commit, &c.0)? => Some(c),
            _ => None,
        };
        let before = self.fetched;

        // The commit's signatures, pinned by the summary, checked before anything else.
        // (With verification off they are still fetched, by their pinned hash, and stored.)
        let sig_path = format!("{}/{}.sig", crate::publish::SIGS_DIR, entry.signatures_id);
        let sig_bytes = files::get_pinned(
            self.fetcher,
            &sig_path,
            entry.signatures_size,
            &entry.signatures_id,
            files::MAX_SIGNATURES_FILE,
        )?;
        self.fetched += sig_bytes.len() as u64;
        let sigs = Signatures::decode(&sig_bytes)?;
        let signed_by = if self.opts.verify {
            verify_signatures(&entry.commit, &sigs, &self.trusted)?.trusted
        } else {
            Vec::new()
        };
        tracing::debug!(r#ref = %entry.name, commit = %entry.commit, signed_by = ?signed_by, "pull: commit signatures checked");
        self.check_downgrade(entry, current.as_ref(), entry.timestamp)?;

        let outcome = |updated, files, fetched| RefOutcome {
            name: entry.name.clone(),
            commit: entry.commit,
            previous,
            version: entry.version.clone(),
            updated,
            bytes: fetched,
            files,
            signed_by: signed_by.clone(),
        };
        // A commit present here is used as it is only once the walk of its trees finds
        // nothing missing: a prune or a crash may have left it incomplete, and then the
        // chunked pull below fetches exactly what is missing.
        if repo.has_object(ObjectKind::Commit, &entry.commit.0)? && self.complete(&entry.commit) {
            if previous == Some(entry.commit) {
                tracing::info!(r#ref = %entry.name, commit = %entry.commit, "pull: ref already at this commit");
                return Ok(outcome(false, 0, self.fetched - before));
            }
            // Pulled under another name, or committed here.
            self.check_downgrade(
                entry,
                current.as_ref(),
                repo.read_commit(&entry.commit)?.timestamp,
            )?;
            let txn = repo.begin()?;
            txn.write_signatures(&entry.commit, sigs)?;
            txn.commit()?;
            tracing::info!(r#ref = %entry.name, commit = %entry.commit, "pull: commit already stored");
            return Ok(outcome(true, 0, self.fetched - before));
        }
        let delta = match (&current, self.opts.use_deltas) {
            (Some(c), true) => self.summary.find_delta(c, &entry.commit),
            _ => None,
        };
        if let (Some(d), Some(c)) = (delta, &current) {
            match delta::pull_delta(self, entry, d, sigs.clone(), c) {
                Ok(files) => return Ok(outcome(true, files, self.fetched - before)),
                // Refusals about the commit itself hold whatever the way it comes.
                Err(
                    e @ (PullError::Downgrade(_)
                    | PullError::FromTheFuture { .. }
                    | PullError::NoSpace { .. }),
                ) => return Err(e),
                // A delta that cannot be fetched (gone, damaged, a mirror serving another
                // one) or applied here (a file of the old commit missing locally) is not the
                // end: the chunks still are, verified the same way.
                Err(e) => {
                    tracing::info!(r#ref = %entry.name, error = %e, "pull: static delta failed; pulling chunk by chunk");
                    (self.events)(&Event::DeltaFailed {
                        name: entry.name.to_string(),
                        reason: error_ext::Chain(&e).to_string(),
                    })
                }
            }
        }
        let files = chunked::pull_commit(self, entry, sigs, current.as_ref())?.files;
        Ok(outcome(true, files, self.fetched - before))
    }
}

/// Pull `only` (or every ref the remote publishes) from `remote` into `repo`.
pub fn pull(
    repo: &Repo,
    remote: &Remote,
    only: Option<&RefName>,
    opts: &PullOptions,
    events: &mut dyn FnMut(&Event),
) -> Result<PullReport, PullError> {
    let now = opts.now.unwrap_or_else(now_secs);
    let _lock = remote.lock()?;
    // Shared for the whole pull: a prune must not remove what a completeness check or an
    // earlier ref relied on, nor a pulled commit before its ref is written at the end.
    let _repo_lock = repo.lock_shared()?;
    let trusted = if opts.verify {
        remote.trusted_keys()?
    } else {
        remote.trusted_keys().unwrap_or_default()
    };
    let mut cfg = opts.fetch.clone().unwrap_or_else(|| fetch_config(remote));
    cfg.base_url = remote.url.clone();
    cfg.min_parallel_bytes = opts.batch_bytes;
    if cfg.tls.is_none() {
        cfg.tls = fetch_config(remote).tls;
    }
    let fetcher = Fetcher::new(cfg)?;
    tracing::info!(remote = %remote.name, url = %remote.url, verify = opts.verify, "pull: fetching the summary");

    let bytes = fetch_summary(&fetcher)?;
    let state_path = remote.trust_state_path();
    let mut new_state = None;
    let summary = if opts.verify {
        let state = load_trust_state(&state_path)?.unwrap_or_default();
        let verify = VerifyOptions {
            now,
            max_clock_skew: remote
                .policy
                .max_clock_skew
                .unwrap_or(DEFAULT_MAX_CLOCK_SKEW),
            channel: remote.policy.channel.as_deref(),
        };
        let verified = verify_summary_with(&bytes, &trusted, &state, &verify)?;
        new_state = Some(verified.new_state.clone());
        tracing::info!(
            serial = verified.summary.serial,
            signed_by = ?verified.signed_by,
            unchanged = verified.unchanged,
            refs = verified.summary.refs.len(),
            packs = verified.summary.packs.len(),
            "pull: summary verified"
        );
        events(&Event::Summary {
            serial: verified.summary.serial,
            signed_by: verified.signed_by.clone(),
            unchanged: verified.unchanged,
        });
        if let Some(seconds) = verified.clock_behind {
            events(&Event::ClockBehind { seconds });
        }
        if let Some(timestamp) = verified.timestamp_ahead {
            events(&Event::TimestampAhead { timestamp, now });
        }
        if verified.clock_reset {
            events(&Event::ClockReset);
        }
        verified.summary
    } else {
        let summary = crate::summary::parse_signed(&bytes)?.summary;
        tracing::info!(
            serial = summary.serial,
            "pull: summary accepted without checking its signatures (verification is off)"
        );
        events(&Event::Summary {
            serial: summary.serial,
            signed_by: Vec::new(),
            unchanged: false,
        });
        summary
    };
    let summary = &summary;
    let entries: Vec<&RefEntry> = match only {
        Some(name) => vec![summary.find_ref(name).ok_or_else(|| PullError::NoSuchRef {
            remote: remote.name.clone(),
            name: name.to_string(),
            available: available(summary),
        })?],
        None => summary.refs.iter().collect(),
    };
    if entries.is_empty() {
        return Err(PullError::NothingPublished {
            remote: remote.name.clone(),
        });
    }

    let mut ctx = PullCtx {
        repo,
        remote,
        fetcher: &fetcher,
        trusted,
        summary,
        cache: Cache::new(repo, remote)?,
        opts,
        events,
        packs: Vec::new(),
        packs_loaded: false,
        fetched: bytes.len() as u64,
        writers: rayon::ThreadPoolBuilder::new()
            .num_threads(WRITER_THREADS)
            .thread_name(|i| format!("update-pull-{i}"))
            .build()
            .map_err(|e| PullError::Local {
                path: repo.path().to_path_buf(),
                source: std::io::Error::other(e),
            })?,
    };
    let mut refs = Vec::new();
    for entry in entries {
        refs.push(ctx.pull_ref(entry)?);
    }

    // Everything is fetched and verified: the commit point. The remote's refs become the
    // summary's set (deleting the ones it no longer lists first, so `a` replaced by `a/b`
    // makes room), then the trust state is saved, so that it never runs ahead of the refs.
    let listed: Vec<RefName> = summary.refs.iter().map(|r| r.name.clone()).collect();
    let write: Vec<(RefName, CommitId)> = refs
        .iter()
        .filter(|o| o.updated)
        .map(|o| (o.name.clone(), o.commit))
        .collect();
    let removed = repo.mirror_remote_refs(&remote.name, &listed, &write)?;
    if let Some(state) = &new_state {
        save_trust_state(&state_path, state)?;
    }
    tracing::info!(
        remote = %remote.name,
        written = write.len(),
        removed = removed.len(),
        trust_state_saved = new_state.is_some(),
        "pull: commit point: refs moved, trust state saved"
    );

    let keep: std::collections::BTreeSet<CommitId> = repo
        .list_remote_refs(&remote.name)?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    ctx.cache.tidy(repo, &summary.packs, &keep);
    tracing::info!(
        remote = %remote.name,
        refs = refs.len(),
        bytes = ctx.fetched,
        requests = fetcher.requests(),
        "pull: done"
    );
    Ok(PullReport {
        remote: remote.name.clone(),
        serial: summary.serial,
        refs,
        removed,
        bytes: ctx.fetched,
        requests: fetcher.requests(),
    })
}

/// Fetch the signed summary (at most 16 MiB) and refuse at once what is plainly not one:
/// a captive portal's or proxy's HTML page, say, named as such, without quoting it.
pub(crate) fn fetch_summary(fetcher: &Fetcher) -> Result<Vec<u8>, PullError> {
    let bytes = fetcher.get(SUMMARY_FILE, MAX_SUMMARY_SIZE)?;
    if !bytes.starts_with(crate::summary::SIGNED_SUMMARY_TAG) {
        return Err(PullError::NotARepository {
            url: fetcher
                .url(SUMMARY_FILE)
                .map(|u| u.to_string())
                .unwrap_or_default(),
            problem: not_a_summary(&bytes),
        });
    }
    Ok(bytes)
}

/// Why `bytes`, which do not start with the signed-summary tag, are not a summary.
fn not_a_summary(bytes: &[u8]) -> &'static str {
    let text = bytes.trim_ascii_start();
    if bytes.is_empty() {
        "the file is empty"
    } else if text.first() == Some(&b'<') {
        "it looks like an HTML page: a captive portal or proxy answered instead?"
    } else if bytes.starts_with(crate::summary::SUMMARY_TAG) {
        "it is an unsigned summary body, not the signed summary file"
    } else {
        "it does not start with the signed summary's tag: not an update repository"
    }
}

fn available(summary: &Summary) -> String {
    if summary.refs.is_empty() {
        return "nothing".into();
    }
    summary
        .refs
        .iter()
        .map(|r| r.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
