//! Deleting what no ref needs: commits beyond a depth or age cut, and every object no
//! kept commit reaches.
//!
//! # Locking protocol
//!
//! The repository lock (`lock` in the repository root, an `flock`) orders writers and
//! prune:
//!
//! - Writers (commit, pull, sign) hold it **shared**. [`Repo::begin`] takes it for the
//!   life of a [`Transaction`](crate::Transaction), and [`crate::sign::sign_commit`] for
//!   its read-modify-write of a `.sig` file.
//! - [`prune`] holds it **exclusive** from before it reads the refs until its last
//!   deletion, so it waits for running writers and they wait for it.
//! - A writer must keep a shared lock from the start of its transaction **until the ref
//!   naming the new commit is written**. Between publishing the objects and the ref write
//!   the new objects are unreachable; a prune slipping into that gap would delete them.
//!   `Transaction::commit_and_set_ref` does both under the transaction's lock. A writer
//!   that publishes with plain `Transaction::commit()` (which releases the lock) and
//!   writes its ref afterwards, or writes a ref outside `refs/heads/`, takes its own
//!   first: `let _g = repo.lock_shared()?;` before `begin()`, dropped after the ref write
//!   (a process may hold several shared locks at once).
//! - Roots are every ref file below `refs/` (`heads/`, `remotes/`, and any other
//!   namespace, such as the commits a sysroot has deployed). Anything a caller wants kept
//!   must be named by a ref.
//!
//! Under the exclusive lock no transaction runs, so every `tmp/txn-*` staging directory
//! is left by a crashed writer and is removed.
//!
//! # Crash safety
//!
//! Only unreachable objects are deleted, one `unlink` each, and each fan-out directory
//! is fsynced after its deletions: a crash at any point leaves every kept object in place
//! (the next prune finishes the job). Prune refuses to run when the reachability picture
//! is incomplete (an unreadable ref, a corrupt commit or dirtree, a ref naming a missing
//! commit, a missing dirtree): deleting on a partial picture could lose data that a
//! repair would need. Run `fsck` then.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::AtFlags;
use rustix::io::Errno;

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::fsck::{mark_commit, FsckError, Marks};
use crate::id::{CommitId, ObjectId};
use crate::object::ObjectKind;
use crate::repo::Repo;

/// What to keep.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Commits of history kept per ref beyond its head: 0 keeps only the heads, `None`
    /// keeps all history.
    pub depth: Option<usize>,
    /// Drop commits whose timestamp (Unix seconds) is older than this, and their
    /// ancestors. A ref's head is always kept.
    pub older_than: Option<u64>,
    /// Compute and report, delete nothing.
    pub dry_run: bool,
}

/// What [`prune`] deleted (or, in a dry run, would delete).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Objects deleted per kind.
    pub removed: BTreeMap<ObjectKind, usize>,
    /// Signature files deleted (of deleted or absent commits).
    pub signatures_removed: usize,
    /// Apparent size of everything deleted. In a bare repository an object hardlinked
    /// into a deployment keeps its blocks until the deployment goes too.
    pub bytes_freed: u64,
    /// Leftover staging directories removed from `tmp/`.
    pub staging_dirs_removed: usize,
    /// Commits kept (reachable within the cut).
    pub commits_kept: usize,
    /// True when nothing was actually deleted.
    pub dry_run: bool,
}

impl PruneReport {
    /// All objects deleted, every kind.
    pub fn objects_removed(&self) -> usize {
        self.removed.values().sum()
    }
}

/// Delete every object not reachable from a ref within the depth and age cut. Holds the
/// repository lock exclusive throughout (see the module docs for the protocol).
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = repo.lock_exclusive()?;
    let refuse = |reason: String| Error::Repo {
        path: repo.path().to_path_buf(),
        reason: format!("prune refused: {reason}; run `update fsck`"),
    };

    let kept = kept_commits(repo, opts, &refuse)?;
    let mut marks = Marks::default();
    for (id, commit) in &kept {
        mark_commit(repo, &CommitId(*id), commit, &mut marks)?;
    }
    // A missing file or dirmeta hides nothing; a missing or corrupt dirtree hides a subtree.
    if let Some(p) = marks.problems.iter().find(|p| {
        matches!(
            p,
            FsckError::Corrupt { .. }
                | FsckError::Missing {
                    kind: ObjectKind::DirTree,
                    ..
                }
        )
    }) {
        return Err(refuse(p.to_string()));
    }

    let mut report = PruneReport {
        commits_kept: kept.len(),
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    let keep = |kind: ObjectKind, id: &ObjectId| match kind {
        ObjectKind::Commit => kept.contains_key(id),
        ObjectKind::DirTree => marks.trees.contains(id),
        ObjectKind::DirMeta => marks.metas.contains(id),
        ObjectKind::File => marks.files.contains(id),
    };
    for b in 0..=255u8 {
        let prefix = format!("{b:02x}");
        let Some(fd) = repo.fanout_dir(&prefix)? else {
            continue;
        };
        sweep_fanout(repo, &prefix, &fd, &keep, opts.dry_run, &mut report)?;
    }
    report.staging_dirs_removed = remove_staging(repo, opts.dry_run)?;
    Ok(report)
}

/// Walk each ref's history within the cut. Returns the kept commits, decoded.
fn kept_commits(
    repo: &Repo,
    opts: &PruneOptions,
    refuse: &dyn Fn(String) -> Error,
) -> Result<HashMap<ObjectId, crate::object::Commit>> {
    let mut kept = HashMap::new();
    // The most parents still allowed when a commit was last reached: a commit reached
    // again with a larger allowance (from a ref nearer to it) is walked again from there.
    let mut budget: HashMap<ObjectId, usize> = HashMap::new();
    for (name, head) in repo.ref_files("refs")? {
        let head = head.map_err(|reason| refuse(format!("ref {name}: {reason}")))?;
        let mut cur = Some(head);
        let mut allowance = opts.depth.unwrap_or(usize::MAX);
        let mut is_head = true;
        while let Some(c) = cur.take() {
            if budget.get(&c.0).is_some_and(|&b| b >= allowance) {
                break;
            }
            let commit = match repo.read_commit(&c) {
                Ok(commit) => commit,
                // History truncated by an earlier prune.
                Err(Error::MissingObject { .. }) if !is_head => break,
                Err(e) => {
                    return Err(refuse(format!("ref {name}: {}", error_ext::Chain(&e))));
                }
            };
            if !is_head && opts.older_than.is_some_and(|t| commit.timestamp < t) {
                break;
            }
            budget.insert(c.0, allowance);
            if opts.depth.is_none() {
                cur = commit.parent;
            } else if allowance > 0 {
                cur = commit.parent;
                allowance -= 1;
            }
            kept.insert(c.0, commit);
            is_head = false;
        }
    }
    Ok(kept)
}

/// What a name in a fan-out directory is.
enum Entry {
    Object(ObjectKind, ObjectId),
    Signature(ObjectId),
    Temp,
    Other,
}

fn classify(repo: &Repo, prefix: &str, name: &str) -> Entry {
    if name.starts_with(".tmp-") {
        return Entry::Temp;
    }
    let Some((rest, ext)) = name.split_once('.') else {
        return Entry::Other;
    };
    let Ok(id) = format!("{prefix}{rest}").parse::<ObjectId>() else {
        return Entry::Other;
    };
    if ext == "sig" {
        return Entry::Signature(id);
    }
    // The repository's own naming decides which kind (and mode) a name belongs to.
    ObjectKind::ALL
        .into_iter()
        .find(|k| {
            repo.object_path(*k, &id)
                .file_name()
                .is_some_and(|n| n == name)
        })
        .map_or(Entry::Other, |k| Entry::Object(k, id))
}

fn sweep_fanout(
    repo: &Repo,
    prefix: &str,
    fd: &OwnedFd,
    keep: &dyn Fn(ObjectKind, &ObjectId) -> bool,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<()> {
    let shown = repo.path().join("objects").join(prefix);
    let mut doomed: Vec<(String, Option<ObjectKind>)> = Vec::new();
    for entry in rustix::fs::Dir::read_from(fd).at_path(&shown)? {
        let entry = entry.at_path(&shown)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match classify(repo, prefix, &name) {
            Entry::Object(kind, id) if !keep(kind, &id) => doomed.push((name, Some(kind))),
            Entry::Signature(id) if !keep(ObjectKind::Commit, &id) => doomed.push((name, None)),
            // A signature write interrupted by a crash; a live one is never an hour old.
            Entry::Temp if is_old(fd.as_fd(), &name) => doomed.push((name, None)),
            _ => {}
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    for (name, kind) in &doomed {
        let size = match rustix::fs::statat(fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st.st_size as u64,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).at_path(shown.join(name)),
        };
        if !dry_run {
            match rustix::fs::unlinkat(fd, name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e).at_path(shown.join(name)),
            }
        }
        report.bytes_freed += size;
        match kind {
            Some(k) => *report.removed.entry(*k).or_default() += 1,
            None if name.ends_with(".sig") => report.signatures_removed += 1,
            None => {}
        }
    }
    if !dry_run {
        rustix::fs::fsync(fd).at_path(&shown)?;
    }
    Ok(())
}

fn is_old(dir: std::os::fd::BorrowedFd<'_>, name: &str) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| now.saturating_sub(st.st_mtime as u64) > 3600)
        .unwrap_or(false)
}

/// Remove every `tmp/txn-*` staging directory: under the exclusive lock none is live.
fn remove_staging(repo: &Repo, dry_run: bool) -> Result<usize> {
    let shown = repo.path().join("tmp");
    let tmp = match durable::open_dir_at(repo.dir(), "tmp") {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e).at_path(&shown),
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&tmp).at_path(&shown)? {
        let entry = entry.at_path(&shown)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("txn-") {
            names.push(name);
        }
    }
    if !dry_run {
        for name in &names {
            durable::remove_tree_at(tmp.as_fd(), name).at_path(shown.join(name))?;
        }
        if !names.is_empty() {
            rustix::fs::fsync(&tmp).at_path(&shown)?;
        }
    }
    Ok(names.len())
}
