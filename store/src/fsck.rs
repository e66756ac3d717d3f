//! Checking a repository: every object present re-hashed (file contents in parallel),
//! every ref naming a present commit, every tree reachable from a ref complete, every
//! signature beside a reachable commit well-formed and valid.
//!
//! What is an error and what is only information:
//!
//! - error: an object whose bytes do not hash to its id or do not decode; a ref that is
//!   unreadable or names a missing commit; a dirtree, dirmeta or file reachable from a
//!   present commit that is missing; a signature file that does not decode or holds a
//!   signature that does not verify over its commit.
//! - information: a missing *parent* commit (history truncated, as `prune --depth`
//!   leaves it); unreachable objects (counted); leftover staging directories in `tmp/`
//!   (removed by the next transaction or prune).
//!
//! The reachability helpers here are shared with [`crate::prune`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use rayon::prelude::*;
use rustix::io::Errno;

use crate::durable;
use crate::error::{Error, IoResultExt, Result};
use crate::id::{CommitId, DirTreeId, ObjectId};
use crate::object::{Commit, DirMeta, DirTree, ObjectKind};
use crate::repo::Repo;
use crate::sign::{report_of, SignatureStatus};

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct FsckOptions {
    /// Only check that file objects are present, without re-reading their contents.
    pub skip_file_contents: bool,
}

/// One problem found by [`fsck`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsckError {
    /// An object's bytes do not hash to its id, do not decode, or cannot be read.
    Corrupt {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What is wrong.
        reason: String,
    },
    /// An object reachable from a ref is not in the repository.
    Missing {
        /// Its kind.
        kind: ObjectKind,
        /// Its id.
        id: ObjectId,
        /// What refers to it ("dirtree 1234...", "commit abcd...", "a reachable dirtree").
        referenced_by: String,
    },
    /// A ref cannot be read or names a commit that is not here.
    BadRef {
        /// The ref's path below `refs/`.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A commit's signature file is malformed or holds a signature that does not verify.
    BadSignature {
        /// The commit.
        commit: CommitId,
        /// What is wrong.
        reason: String,
    },
    /// A commit's tree nests directories deeper than [`crate::walk::MAX_DEPTH`] levels:
    /// commit would have refused it and checkout refuses it.
    TooDeep {
        /// The commit.
        commit: CommitId,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for FsckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsckError::Corrupt { kind, id, reason } => {
                write!(f, "{kind} object {id} is corrupt: {reason}")
            }
            FsckError::Missing {
                kind,
                id,
                referenced_by,
            } => write!(
                f,
                "{kind} object {id} is missing (referenced by {referenced_by})"
            ),
            FsckError::BadRef { name, reason } => write!(f, "ref {name}: {reason}"),
            FsckError::BadSignature { commit, reason } => {
                write!(f, "signatures of commit {commit}: {reason}")
            }
            FsckError::TooDeep { commit, limit } => write!(
                f,
                "commit {commit} nests directories deeper than the limit of {limit} levels: \
                 it cannot be checked out"
            ),
        }
    }
}

/// The state of one ref's head commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefStatus {
    /// The ref's path below `refs/` (`heads/stable`, `remotes/origin/stable`).
    pub name: String,
    /// The commit it names.
    pub commit: CommitId,
    /// The signatures beside that commit, each checked over it (no trust decision).
    pub signatures: Vec<SignatureStatus>,
}

impl RefStatus {
    /// How many distinct keys validly signed the head.
    pub fn valid_signatures(&self) -> usize {
        self.signatures.iter().filter(|s| s.valid).count()
    }
}

/// What [`fsck`] found.
#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    /// Objects present and checked, all kinds (file contents are re-hashed unless
    /// [`FsckOptions::skip_file_contents`] is set).
    pub objects_checked: usize,
    /// Problems; the repository is healthy when there are none.
    pub errors: Vec<FsckError>,
    /// Information that needs no action (truncated history, leftover staging dirs).
    pub notes: Vec<String>,
    /// Every readable ref whose commit is present, sorted by name.
    pub refs: Vec<RefStatus>,
    /// Objects present but not reachable from any ref, per kind.
    pub unreachable: BTreeMap<ObjectKind, usize>,
    /// Staging directories found in `tmp/`.
    pub staging_dirs: usize,
}

impl FsckReport {
    /// True when no error was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Check the repository. Holds the repository lock shared (so no prune runs meanwhile).
/// Returns `Err` only when the check itself cannot run; problems are in the report.
pub fn fsck(repo: &Repo, opts: &FsckOptions) -> Result<FsckReport> {
    let _lock = repo.lock_shared()?;
    let mut report = FsckReport::default();
    let mut marks = Marks::default();
    let mut commits: HashSet<ObjectId> = HashSet::new();

    for (name, head) in repo.ref_files("refs")? {
        let head = match head {
            Ok(h) => h,
            Err(reason) => {
                report.errors.push(FsckError::BadRef { name, reason });
                continue;
            }
        };
        if !repo.has_object(ObjectKind::Commit, &head.0)? {
            report.errors.push(FsckError::BadRef {
                name,
                reason: format!("names commit {head}, which is missing"),
            });
            continue;
        }
        let signatures = match repo.read_signatures(&head) {
            Ok(s) => report_of(&head, &s),
            // Reported below, when the commit is walked.
            Err(_) => Vec::new(),
        };
        report.refs.push(RefStatus {
            name: name.clone(),
            commit: head,
            signatures,
        });
        // Walk the history; a commit already walked from another ref ends the walk.
        let mut cur = Some(head);
        let mut is_head = true;
        while let Some(c) = cur.take() {
            if !commits.insert(c.0) {
                break;
            }
            match repo.read_commit(&c) {
                Ok(commit) => {
                    check_signatures(repo, &c, &mut report.errors);
                    mark_commit(repo, &c, &commit, &mut marks)?;
                    check_commit_depth(repo, &c, &commit, &mut report.errors)?;
                    cur = commit.parent;
                }
                Err(Error::MissingObject { .. }) if !is_head => {
                    commits.remove(&c.0);
                    report.notes.push(format!(
                        "history of {name} truncated at commit {c} (not present; pruned?)"
                    ));
                }
                Err(e) => report
                    .errors
                    .push(as_fsck_error(ObjectKind::Commit, &c.0, e)),
            }
            is_head = false;
        }
    }
    report.errors.append(&mut marks.problems);

    // Every metadata object present: those reached above were verified while walking.
    for kind in [ObjectKind::Commit, ObjectKind::DirTree, ObjectKind::DirMeta] {
        let present = repo.list_objects(kind)?;
        let reached = match kind {
            ObjectKind::Commit => &commits,
            ObjectKind::DirTree => &marks.trees,
            _ => &marks.metas,
        };
        let rest: Vec<ObjectId> = present
            .iter()
            .filter(|id| !reached.contains(id))
            .copied()
            .collect();
        report.objects_checked += present.len();
        report.unreachable.insert(kind, rest.len());
        let bad: Vec<FsckError> = rest
            .par_iter()
            .filter_map(|id| verify_metadata(repo, kind, id).err())
            .collect();
        report.errors.extend(bad);
    }

    let files = repo.list_objects(ObjectKind::File)?;
    report.objects_checked += files.len();
    if !opts.skip_file_contents {
        let mut bad: Vec<FsckError> = files
            .par_iter()
            .filter_map(|id| {
                repo.verify_file(&crate::id::FileId(*id))
                    .err()
                    .map(|e| as_fsck_error(ObjectKind::File, id, e))
            })
            .collect();
        bad.sort_by_key(|e| e.to_string());
        report.errors.extend(bad);
    }
    let present: HashSet<ObjectId> = files.into_iter().collect();
    let mut missing: Vec<&ObjectId> = marks
        .files
        .iter()
        .filter(|id| !present.contains(id))
        .collect();
    missing.sort();
    for id in missing {
        report.errors.push(FsckError::Missing {
            kind: ObjectKind::File,
            id: *id,
            referenced_by: "a reachable dirtree".into(),
        });
    }
    report.unreachable.insert(
        ObjectKind::File,
        present
            .iter()
            .filter(|id| !marks.files.contains(id))
            .count(),
    );

    report.staging_dirs = count_staging(repo)?;
    if report.staging_dirs > 0 {
        report.notes.push(format!(
            "{} staging director{} in tmp/ (a running writer's, or left by a crash and removed by the next commit or prune)",
            report.staging_dirs,
            if report.staging_dirs == 1 { "y" } else { "ies" }
        ));
    }
    Ok(report)
}

fn as_fsck_error(kind: ObjectKind, id: &ObjectId, e: Error) -> FsckError {
    match e {
        Error::Corrupt { kind, id, reason } => FsckError::Corrupt { kind, id, reason },
        // Listed a moment ago, gone now: only a concurrent writer bypassing the lock does that.
        e => FsckError::Corrupt {
            kind,
            id: *id,
            reason: error_ext::Chain(&e).to_string(),
        },
    }
}

fn verify_metadata(
    repo: &Repo,
    kind: ObjectKind,
    id: &ObjectId,
) -> std::result::Result<(), FsckError> {
    let decoded = repo.read_metadata_bytes(kind, id).and_then(|b| match kind {
        ObjectKind::Commit => Commit::decode(&b).map(drop),
        ObjectKind::DirTree => DirTree::decode(&b).map(drop),
        _ => DirMeta::decode(&b).map(drop),
    });
    decoded.map_err(|e| match e {
        Error::Corrupt { .. } => as_fsck_error(kind, id, e),
        e => FsckError::Corrupt {
            kind,
            id: *id,
            reason: e.to_string(),
        },
    })
}

fn check_signatures(repo: &Repo, id: &CommitId, errors: &mut Vec<FsckError>) {
    match repo.read_signatures(id) {
        Ok(sigs) => {
            for s in report_of(id, &sigs) {
                if !s.valid {
                    errors.push(FsckError::BadSignature {
                        commit: *id,
                        reason: format!(
                            "the signature by key {} does not verify",
                            s.public_key_base64
                        ),
                    });
                }
            }
        }
        Err(e) => errors.push(FsckError::BadSignature {
            commit: *id,
            reason: error_ext::Chain(&e).to_string(),
        }),
    }
}

fn count_staging(repo: &Repo) -> Result<usize> {
    let shown = repo.path().join("tmp");
    let tmp = match durable::open_dir_at(repo.dir(), "tmp") {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e).at_path(&shown),
    };
    let mut n = 0;
    for entry in rustix::fs::Dir::read_from(&tmp).at_path(&shown)? {
        let entry = entry.at_path(&shown)?;
        if entry.file_name().to_bytes().starts_with(b"txn-") {
            n += 1;
        }
    }
    Ok(n)
}

/// Report a commit whose tree is deeper than every reader accepts. Missing and corrupt
/// dirtrees are left to [`mark_commit`], which reports them.
fn check_commit_depth(
    repo: &Repo,
    id: &CommitId,
    commit: &Commit,
    errors: &mut Vec<FsckError>,
) -> Result<()> {
    let mut subdirs = |t: &DirTreeId| match repo.read_dirtree(t) {
        Ok(tree) => Ok(Some(tree.dirs.iter().map(|d| d.1).collect())),
        Err(Error::MissingObject { .. } | Error::Corrupt { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    match crate::walk::check_depth(commit.root_tree, &mut subdirs) {
        Ok(()) => Ok(()),
        Err(Error::TreeLimit { limit, .. }) => {
            errors.push(FsckError::TooDeep {
                commit: *id,
                limit: limit as usize,
            });
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Objects reached from commits by [`mark_commit`], and what was wrong on the way.
#[derive(Default)]
pub(crate) struct Marks {
    /// Dirtrees reached (present and verified, missing, or corrupt).
    pub(crate) trees: HashSet<ObjectId>,
    /// Dirmetas reached.
    pub(crate) metas: HashSet<ObjectId>,
    /// Files reached (not checked for presence here).
    pub(crate) files: HashSet<ObjectId>,
    /// Missing or corrupt dirtrees and dirmetas.
    pub(crate) problems: Vec<FsckError>,
}

/// Mark everything reachable from a (present, decoded) commit's root, iteratively: a
/// visited set bounds the work, and no recursion means no stack overflow on deep trees.
pub(crate) fn mark_commit(
    repo: &Repo,
    id: &CommitId,
    commit: &Commit,
    marks: &mut Marks,
) -> Result<()> {
    let from = format!("commit {id}");
    mark_meta(repo, &commit.root_meta.0, &from, marks)?;
    let mut stack: Vec<(DirTreeId, ObjectId)> = Vec::new();
    if marks.trees.insert(commit.root_tree.0) {
        stack.push((commit.root_tree, id.0));
    }
    let mut from_commit = true;
    while let Some((tree_id, parent)) = stack.pop() {
        let referrer = if from_commit {
            from.clone()
        } else {
            format!("dirtree {parent}")
        };
        from_commit = false;
        let tree = match repo.read_dirtree(&tree_id) {
            Ok(t) => t,
            Err(Error::MissingObject { kind, id }) => {
                marks.problems.push(FsckError::Missing {
                    kind,
                    id,
                    referenced_by: referrer,
                });
                continue;
            }
            Err(e @ Error::Corrupt { .. }) => {
                marks
                    .problems
                    .push(as_fsck_error(ObjectKind::DirTree, &tree_id.0, e));
                continue;
            }
            Err(e) => return Err(e),
        };
        for (_, file) in &tree.files {
            marks.files.insert(file.0);
        }
        let here = format!("dirtree {tree_id}");
        for (_, sub, meta) in &tree.dirs {
            mark_meta(repo, &meta.0, &here, marks)?;
            if marks.trees.insert(sub.0) {
                stack.push((*sub, tree_id.0));
            }
        }
    }
    Ok(())
}

fn mark_meta(repo: &Repo, id: &ObjectId, referrer: &str, marks: &mut Marks) -> Result<()> {
    if !marks.metas.insert(*id) {
        return Ok(());
    }
    match repo.read_dirmeta(&crate::id::DirMetaId(*id)) {
        Ok(_) => Ok(()),
        Err(Error::MissingObject { kind, id }) => {
            marks.problems.push(FsckError::Missing {
                kind,
                id,
                referenced_by: referrer.to_owned(),
            });
            Ok(())
        }
        Err(e @ Error::Corrupt { .. }) => {
            marks
                .problems
                .push(as_fsck_error(ObjectKind::DirMeta, id, e));
            Ok(())
        }
        Err(e) => Err(e),
    }
}
