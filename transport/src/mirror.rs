//! `update mirror`: copy a published repository into a directory, incrementally and
//! verified, so it can be served by any web server.
//!
//! The summary is verified like a device verifies it (trusted signature, serial not older
//! than the last one mirrored, not expired), with the mirror's own trust state in
//! `DIR/.update-mirror/`. Every file it pins (packs, pack indexes, chunk indexes,
//! signature sets, static deltas) is then fetched unless `DIR` has it already with the
//! pinned size and BLAKE3, downloaded resumably into `DIR/.update-mirror/partial/`,
//! checked, and renamed into place. The summary is written last, atomically, so readers of
//! the mirror never see a summary naming a file that is not there yet. Files the new
//! summary no longer names are left in place for readers of the previous one.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::publish::{SIGS_DIR, SUMMARY_FILE};
use crate::static_delta::{DELTAS_DIR, DELTA_EXTENSION};
use crate::summary::{load_trust_state, save_trust_state, verify_summary};
use store::durable;
use store::id::ObjectId;
use store::sign::TrustedKeys;

use crate::pull::PullError;
use fetch::Fetcher;

const STATE_DIR: &str = ".update-mirror";

/// What a mirror run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorReport {
    /// Serial of the mirrored summary.
    pub serial: u64,
    /// Files the summary pins.
    pub files: u64,
    /// Of those, fetched by this run.
    pub fetched_files: u64,
    /// Bytes fetched, the summary included.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
}

fn local(path: &Path) -> impl Fn(std::io::Error) -> PullError + '_ {
    move |source| PullError::Local {
        path: path.to_path_buf(),
        source,
    }
}

fn hash_file(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<(u64, ObjectId)> {
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut durable::open_read_at(dir, name)?, &mut hasher)?;
    Ok((n, ObjectId::from(hasher.finalize())))
}

fn fsync_dir(dir: BorrowedFd<'_>, path: &Path) -> Result<(), PullError> {
    rustix::fs::fsync(dir).map_err(|e| local(path)(e.into()))
}

/// Mirror the repository `fetcher` reads into `dir`, trusting summaries signed by `trusted`
/// and checking expiry against `now` (unix seconds).
pub fn mirror(
    fetcher: &Fetcher,
    dir: &Path,
    trusted: &TrustedKeys,
    now: u64,
) -> Result<MirrorReport, PullError> {
    // The directory the user named is opened once; everything below it through handles.
    #[allow(clippy::disallowed_methods)] // path meant: the mirror directory the user named
    std::fs::create_dir_all(dir).map_err(local(dir))?;
    let root = durable::open_dir(dir).map_err(|e| local(dir)(e.into()))?;
    let state_dir = dir.join(STATE_DIR);
    let state_fd = durable::mkdir_all_at(root.as_fd(), Path::new(STATE_DIR), &state_dir)?;
    let partial_dir = state_dir.join("partial");
    let partial_fd = durable::mkdir_all_at(state_fd.as_fd(), Path::new("partial"), &partial_dir)?;
    // One mirror run per directory: two could write the same partial files, and the
    // slower one would put back an older summary and trust state.
    let lock_path = state_dir.join("lock");
    let lock = rustix::fs::openat(
        &state_fd,
        "lock",
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| local(&lock_path)(e.into()))?;
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(PullError::Local {
                path: lock_path,
                source: std::io::Error::other("another mirror run into this directory is running"),
            })
        }
        Err(e) => return Err(local(&lock_path)(e.into())),
    }
    let summary_bytes = crate::pull::fetch_summary(fetcher)?;
    let state_path = state_dir.join("trust-state");
    let state = load_trust_state(&state_path)?.unwrap_or_default();
    let verified = verify_summary(&summary_bytes, trusted, &state, now)?;
    let s = &verified.summary;

    let mut wanted: Vec<(String, u64, ObjectId)> = Vec::new();
    for p in &s.packs {
        wanted.push((format!("packs/{}.pack", p.id), p.size, p.id));
        wanted.push((format!("packs/{}.idx", p.id), p.index_size, p.index_id));
    }
    for r in &s.refs {
        wanted.push((
            format!("chunks/{}.cidx", r.commit),
            r.chunk_index_size,
            r.chunk_index_id,
        ));
        wanted.push((
            format!("{SIGS_DIR}/{}.sig", r.signatures_id),
            r.signatures_size,
            r.signatures_id,
        ));
    }
    for d in &s.deltas {
        wanted.push((
            format!("{DELTAS_DIR}/{}.{DELTA_EXTENSION}", d.id),
            d.size,
            d.id,
        ));
    }
    wanted.sort();
    wanted.dedup();

    let mut bytes = summary_bytes.len() as u64;
    let mut fetched_files = 0;
    // The subdirectories files were renamed into, to fsync once at the end.
    let mut touched_dirs: BTreeMap<PathBuf, OwnedFd> = BTreeMap::new();
    for (rel, size, id) in &wanted {
        let dest = dir.join(rel);
        // Every pinned name is `sub/name`, with a fixed `sub` and a name made of an id.
        let Some((sub, name)) = rel.split_once('/') else {
            return Err(local(&dest)(std::io::Error::other(
                "not below a subdirectory",
            )));
        };
        let sub_fd = durable::mkdir_all_at(root.as_fd(), Path::new(sub), &dir.join(sub))?;
        if let Ok((n, h)) = hash_file(sub_fd.as_fd(), name) {
            if n == *size && h == *id {
                continue;
            }
        }
        let part_name = rel.replace('/', "_") + ".part";
        let part: PathBuf = partial_dir.join(&part_name);
        bytes += fetcher.download_to(rel, &part, *size, *size)?;
        let (n, h) = hash_file(partial_fd.as_fd(), &part_name).map_err(local(&part))?;
        if n != *size || h != *id {
            let _ = rustix::fs::unlinkat(&partial_fd, part_name.as_str(), AtFlags::empty());
            return Err(PullError::Pinned {
                file: rel.clone(),
                reason: format!("its BLAKE3 is not {id}, the one the summary pins"),
            });
        }
        durable::open_read_at(partial_fd.as_fd(), part_name.as_str())
            .and_then(|f| rustix::fs::fsync(&f))
            .map_err(|e| local(&part)(e.into()))?;
        rustix::fs::renameat(&partial_fd, part_name.as_str(), &sub_fd, name)
            .map_err(|e| local(&dest)(e.into()))?;
        touched_dirs.insert(dir.join(sub), sub_fd);
        fetched_files += 1;
    }
    for (path, fd) in &touched_dirs {
        fsync_dir(fd.as_fd(), path)?;
    }

    // The summary last, atomically and durably.
    durable::write_atomic(
        root.as_fd(),
        SUMMARY_FILE,
        &summary_bytes,
        0o644,
        &dir.join(SUMMARY_FILE),
    )?;
    save_trust_state(&state_path, &verified.new_state)?;
    Ok(MirrorReport {
        serial: s.serial,
        files: wanted.len() as u64,
        fetched_files,
        bytes,
        requests: fetcher.requests(),
    })
}
