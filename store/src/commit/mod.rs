//! `update commit`: turn a source tree (a directory, a tarball or a git tree) into
//! objects and a commit, then move a branch to it.
//!
//! [`commit`] writes every object through one [`Transaction`], building each directory's
//! dirtree after its children, and only after the transaction is durable moves the
//! branch. On any error the transaction is dropped: nothing becomes visible and no ref
//! moves.
//!
//! File content is read once, as a stream, and hashed and stored in the same pass by
//! [`Transaction::write_file`]. Files are processed in parallel (see
//! [`CommitOptions::jobs`]).
//!
//! ```
//! use store::commit::{commit, CommitOptions, Source};
//! use store::{RefName, Repo, RepoMode};
//! let tmp = tempfile::tempdir().unwrap();
//! let tree = tmp.path().join("tree");
//! std::fs::create_dir(&tree).unwrap();
//! std::fs::write(tree.join("hello"), b"hi\n").unwrap();
//! let repo = Repo::init(tmp.path().join("repo"), RepoMode::Archive).unwrap();
//! let opts = CommitOptions {
//!     branch: Some(RefName::new("stable").unwrap()),
//!     subject: Some("first".into()),
//!     ..Default::default()
//! };
//! let out = commit(&repo, &Source::parse(tree.to_str().unwrap()).unwrap(), &opts).unwrap();
//! assert_eq!(repo.read_ref(opts.branch.as_ref().unwrap()).unwrap(), Some(out.commit));
//! assert_eq!(out.stats.files, 1);
//! ```

mod bootable;
mod dir;
mod git;
mod memtree;
mod queue;
mod tar;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoResultExt, Result};
use crate::id::CommitId;
use crate::object::{Commit, EntryName};
use crate::repo::{RefName, Repo, Transaction};

pub use bootable::{BootableOptions, BootableReport, EtcMove, TMPFILES_CONF};

/// Deepest directory nesting accepted in a source tree: the one limit every reader of a
/// tree applies ([`crate::walk::MAX_DEPTH`]), so whatever commits also checks out.
pub const MAX_DEPTH: usize = crate::walk::MAX_DEPTH;

/// Where the tree to commit comes from.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Source {
    /// A directory on disk: every file, symlink and directory below it, with its mode,
    /// owner and extended attributes.
    Dir(PathBuf),
    /// A tar archive, plain, gzip or zstd compressed (recognised by its first bytes, not
    /// its name).
    Tar(PathBuf),
    /// A tree in a git repository, read without the git binary.
    Git {
        /// The repository (its work tree or its `.git` / bare directory).
        repo: PathBuf,
        /// A full commit, tag or tree id, or a reference name (`main`, `v1.0`,
        /// `refs/heads/main`). `None` means `HEAD`.
        rev: Option<String>,
    },
}

impl Source {
    /// Parse a command-line source: `git:PATH[:REV]` is a git tree, an existing directory
    /// is a [`Source::Dir`], an existing file a [`Source::Tar`].
    ///
    /// In `git:PATH:REV` the last `:` separates the revision, unless the whole of
    /// `PATH:REV` names an existing directory.
    pub fn parse(arg: &str) -> Result<Source> {
        if let Some(rest) = arg.strip_prefix("git:") {
            if rest.is_empty() {
                return Err(Error::invalid(
                    format!("source '{arg}'"),
                    "expected git:PATH or git:PATH:REV",
                ));
            }
            let whole = Path::new(rest);
            #[allow(clippy::disallowed_methods)] // path meant: the git source the user named
            let whole_is_dir = whole.is_dir();
            let (path, rev) = match rest.rsplit_once(':') {
                Some((p, r)) if !whole_is_dir && !p.is_empty() && !r.is_empty() => {
                    (PathBuf::from(p), Some(r.to_owned()))
                }
                _ => (whole.to_path_buf(), None),
            };
            return Ok(Source::Git { repo: path, rev });
        }
        let path = PathBuf::from(arg);
        #[allow(clippy::disallowed_methods)] // path meant: the source the user named
        let meta = std::fs::metadata(&path).at_path(&path)?;
        if meta.is_dir() {
            Ok(Source::Dir(path))
        } else if meta.is_file() {
            Ok(Source::Tar(path))
        } else {
            Err(Error::invalid(
                format!("source {}", path.display()),
                "neither a directory nor a tar archive",
            ))
        }
    }
}

/// What to commit and how. `Default` gives an orphan commit (no branch, no parent) with an
/// empty subject, owners taken from the source and the current time.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// The branch to move to the new commit; its current commit becomes the parent.
    /// `None` writes the commit without touching any ref.
    pub branch: Option<RefName>,
    /// One-line subject.
    pub subject: Option<String>,
    /// Longer description.
    pub body: Option<String>,
    /// Stored as the metadata key `version`.
    pub version: Option<String>,
    /// Extra metadata (`--add-metadata K=V`); keys must be unique and non-empty.
    pub metadata: Vec<(String, String)>,
    /// Give every file, symlink and directory this owner instead of the source's.
    pub owner_uid: Option<u32>,
    /// Give every file, symlink and directory this group instead of the source's.
    pub owner_gid: Option<u32>,
    /// Commit time in seconds since the epoch; the current time when `None`.
    pub timestamp: Option<u64>,
    /// Worker threads; the number of CPUs (at least 2) when `None`.
    pub jobs: Option<usize>,
    /// Sign the commit with this key; the signature is stored before the branch moves.
    pub sign_with: Option<crate::sign::SigningKey>,
    /// Reshape the tree into one `update deploy` boots (see [`BootableOptions`]): `/etc`
    /// to `/usr/etc`, the kernel beside its modules, `/var` into first-boot seed data.
    pub bootable: Option<BootableOptions>,
}

impl CommitOptions {
    /// The owner to record for an entry whose source owner is `(uid, gid)`.
    pub(crate) fn owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        (self.owner_uid.unwrap_or(uid), self.owner_gid.unwrap_or(gid))
    }

    fn worker_count(&self) -> usize {
        self.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2)
        })
    }

    /// The commit metadata: `metadata` plus `version`, sorted; a repeated key is refused.
    fn sorted_metadata(&self) -> Result<Vec<(String, String)>> {
        let mut md = self.metadata.clone();
        if let Some(v) = &self.version {
            md.push(("version".to_owned(), v.clone()));
        }
        md.sort_by(|a, b| a.0.cmp(&b.0));
        for w in md.windows(2) {
            if w[0].0 == w[1].0 {
                let hint = if w[0].0 == "version" {
                    " (the version option sets it too)"
                } else {
                    ""
                };
                return Err(Error::invalid(
                    format!("commit metadata key '{}'", w[0].0),
                    format!("given more than once{hint}"),
                ));
            }
        }
        if md.iter().any(|(k, _)| k.is_empty()) {
            return Err(Error::invalid("commit metadata key", "empty"));
        }
        Ok(md)
    }
}

/// Counts of what a commit read and wrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CommitStats {
    /// Regular files in the tree (each hardlink counted).
    pub files: u64,
    /// Directories in the tree, the root included.
    pub dirs: u64,
    /// Symlinks in the tree.
    pub symlinks: u64,
    /// Content bytes read (a hardlinked file once).
    pub bytes: u64,
    /// Objects of any kind that were not in the repository before.
    pub objects_written: u64,
}

/// The result of [`commit`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CommitOutcome {
    /// The new commit.
    pub commit: CommitId,
    /// What was read and written.
    pub stats: CommitStats,
    /// What the bootable conversion did, when [`CommitOptions::bootable`] was set.
    pub bootable: Option<BootableReport>,
}

/// Commit `source` into `repo` and, if `opts.branch` is set, move that branch to the new
/// commit (its previous commit becomes the parent).
pub fn commit(repo: &Repo, source: &Source, opts: &CommitOptions) -> Result<CommitOutcome> {
    let metadata = opts.sorted_metadata()?;
    let parent = match &opts.branch {
        Some(b) => repo.read_ref(b)?,
        None => None,
    };
    let txn = repo.begin()?;
    let mut ctx = Ctx {
        txn: &txn,
        opts,
        counters: Counters::default(),
        record: opts
            .bootable
            .as_ref()
            .map(|_| bootable::Recorder::default()),
    };
    let (root_tree, root_meta) = match source {
        Source::Dir(path) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(opts.worker_count())
                .thread_name(|i| format!("commit-{i}"))
                // The walk recurses once per directory level, up to MAX_DEPTH.
                .stack_size(16 << 20)
                .build()
                .map_err(|e| Error::Io {
                    path: PathBuf::from("<thread pool>"),
                    source: std::io::Error::other(e),
                })?;
            pool.install(|| dir::commit_dir(&ctx, path))?
        }
        Source::Tar(path) => tar::commit_tar(&ctx, path, opts.worker_count())?,
        Source::Git { repo: path, rev } => {
            git::commit_git(&ctx, path, rev.as_deref(), opts.worker_count())?
        }
    };
    // Bootable: reshape the tree just written, from the listings and headers recorded
    // while writing it. Every refusal comes here, before the branch moves.
    let (root_tree, root_meta, report) = match (&opts.bootable, ctx.record.take()) {
        (Some(b), Some(rec)) => {
            let (t, m, r) = bootable::reshape(&ctx, rec, root_tree, root_meta, b)?;
            (t, m, Some(r))
        }
        _ => (root_tree, root_meta, None),
    };
    let timestamp = opts.timestamp.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let c = Commit {
        parent,
        timestamp,
        subject: opts.subject.clone().unwrap_or_default(),
        body: opts.body.clone().unwrap_or_default(),
        metadata,
        root_tree,
        root_meta,
    };
    let id = txn.write_commit(&c)?;
    if let Some(key) = &opts.sign_with {
        let entry = crate::sign::signature_entry(key, &id)?;
        txn.write_signatures(&id, crate::object::Signatures(vec![entry]))?;
    }
    let stats = ctx.stats();
    match &opts.branch {
        Some(b) => txn.commit_and_set_ref(b, &id)?,
        None => txn.commit()?,
    }
    Ok(CommitOutcome {
        commit: id,
        stats,
        bootable: report,
    })
}

/// State shared by the workers of one commit.
pub(crate) struct Ctx<'a> {
    pub(crate) txn: &'a Transaction<'a>,
    pub(crate) opts: &'a CommitOptions,
    pub(crate) counters: Counters,
    /// For a bootable commit: every listing, metadata and file header written, so the
    /// tree can be reshaped without reading objects back.
    pub(crate) record: Option<bootable::Recorder>,
}

/// Running totals, updated from many threads.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) files: AtomicU64,
    pub(crate) dirs: AtomicU64,
    pub(crate) symlinks: AtomicU64,
    pub(crate) bytes: AtomicU64,
    /// Device nodes left out of a bootable commit's API directories (`/dev`, ...).
    pub(crate) dev_nodes: AtomicU64,
    /// Other entries left out of a bootable commit's API directories.
    pub(crate) api_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Ctx<'_> {
    /// Write a directory's listing and metadata (after its children).
    pub(crate) fn write_dir(
        &self,
        tree: &crate::object::DirTree,
        meta: &crate::object::DirMeta,
    ) -> Result<(crate::id::DirTreeId, crate::id::DirMetaId)> {
        let meta_id = self.txn.write_dirmeta(meta)?;
        let tree_id = self.txn.write_dirtree(tree)?;
        if let Some(r) = &self.record {
            r.dir(tree_id, tree, meta_id, meta);
        }
        Counters::add(&self.counters.dirs, 1);
        Ok((tree_id, meta_id))
    }

    /// Whether a bootable commit leaves out the content of the top-level directory
    /// `name` (an API file system mounted at boot: `/dev`, `/proc`, `/sys`, `/run`,
    /// `/tmp`).
    pub(crate) fn drops_content_of(&self, name: &[u8]) -> bool {
        self.opts.bootable.is_some() && bootable::API_DIRS.iter().any(|d| d.as_bytes() == name)
    }

    fn stats(&self) -> CommitStats {
        let c = &self.counters;
        CommitStats {
            files: c.files.load(Ordering::Relaxed),
            dirs: c.dirs.load(Ordering::Relaxed),
            symlinks: c.symlinks.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            objects_written: self.txn.new_objects() as u64,
        }
    }
}

/// The content of one source entry, as handed to [`Transaction::write_file`]. It remembers
/// what went wrong on the source side (a read error, or a file that shrank or grew while
/// being read) so that the error can name the source entry rather than the object being
/// written.
pub(crate) struct SourceRead<R> {
    inner: R,
    left: u64,
    problem: Option<(std::io::ErrorKind, String)>,
}

impl<R: std::io::Read> SourceRead<R> {
    pub(crate) fn new(inner: R, size: u64) -> Self {
        SourceRead {
            inner,
            left: size,
            problem: None,
        }
    }

    /// Write one file object from this reader; a failure on the source side names `shown`.
    pub(crate) fn write(
        mut self,
        ctx: &Ctx<'_>,
        header: &crate::object::FileHeader,
        shown: &dyn std::fmt::Display,
    ) -> Result<crate::id::FileId> {
        match ctx.txn.write_file(header, &mut self) {
            Ok(id) => {
                if let Some(r) = &ctx.record {
                    r.file(id, header);
                }
                Ok(id)
            }
            Err(e) => match self.problem {
                Some((kind, msg)) => Err(Error::Io {
                    path: PathBuf::from(shown.to_string()),
                    source: std::io::Error::new(kind, msg),
                }),
                None => Err(e),
            },
        }
    }

    fn note(&mut self, kind: std::io::ErrorKind, msg: String) -> std::io::Error {
        self.problem.get_or_insert((kind, msg.clone()));
        std::io::Error::new(kind, msg)
    }
}

impl<R: std::io::Read> std::io::Read for SourceRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Err(e),
            Err(e) => return Err(self.note(e.kind(), e.to_string())),
        };
        if n == 0 && self.left > 0 {
            let msg = format!(
                "ended {} bytes early (changed while being committed?)",
                self.left
            );
            return Err(self.note(std::io::ErrorKind::UnexpectedEof, msg));
        }
        if n as u64 > self.left {
            let msg = "grew while being committed".to_owned();
            return Err(self.note(std::io::ErrorKind::InvalidData, msg));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Validate one name of a source entry; the error names the entry's path.
pub(crate) fn entry_name(bytes: &[u8], shown: &dyn std::fmt::Display) -> Result<EntryName> {
    EntryName::new(bytes).map_err(|e| match e {
        Error::Invalid { reason, .. } => Error::invalid(
            format!("name of {shown} ('{}')", bytes.escape_ascii()),
            reason,
        ),
        other => other,
    })
}

/// Prefix an error with the source entry it is about (for errors that do not name one).
pub(crate) fn at_entry(e: Error, shown: &dyn std::fmt::Display) -> Error {
    match e {
        Error::Invalid { what, reason } => Error::invalid(format!("{what} of {shown}"), reason),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::{CommitOptions, Source};

    #[test]
    fn metadata_sorted_and_duplicates_refused() {
        let opts = CommitOptions {
            metadata: vec![("z".into(), "1".into()), ("a".into(), "2".into())],
            version: Some("1.0".into()),
            ..Default::default()
        };
        let md = opts.sorted_metadata().unwrap();
        let keys: Vec<_> = md.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "version", "z"]);
        let dup = CommitOptions {
            metadata: vec![("version".into(), "1".into())],
            version: Some("2".into()),
            ..Default::default()
        };
        let err = dup.sorted_metadata().unwrap_err().to_string();
        assert!(
            err.contains("'version'") && err.contains("more than once"),
            "{err}"
        );
    }

    #[test]
    fn parse_git_sources() {
        assert_eq!(
            Source::parse("git:/nonexistent/repo:main").unwrap(),
            Source::Git {
                repo: "/nonexistent/repo".into(),
                rev: Some("main".into())
            }
        );
        assert_eq!(
            Source::parse("git:/nonexistent/repo").unwrap(),
            Source::Git {
                repo: "/nonexistent/repo".into(),
                rev: None
            }
        );
        assert!(Source::parse("git:").is_err());
        assert!(Source::parse("/nonexistent/path/x").is_err());
    }
}
