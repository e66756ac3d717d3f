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

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::publish::{SIGS_DIR, SUMMARY_FILE};
use crate::static_delta::{DELTAS_DIR, DELTA_EXTENSION};
use crate::summary::{load_trust_state, save_trust_state, verify_summary};
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

fn hash_file(path: &Path) -> std::io::Result<(u64, ObjectId)> {
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok((n, ObjectId::from(hasher.finalize())))
}

fn fsync_dir(path: &Path) -> Result<(), PullError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(local(path))
}

/// Mirror the repository `fetcher` reads into `dir`, trusting summaries signed by `trusted`
/// and checking expiry against `now` (unix seconds).
pub fn mirror(
    fetcher: &Fetcher,
    dir: &Path,
    trusted: &TrustedKeys,
    now: u64,
) -> Result<MirrorReport, PullError> {
    let state_dir = dir.join(STATE_DIR);
    std::fs::create_dir_all(state_dir.join("partial")).map_err(local(&state_dir))?;
    // One mirror run per directory: two could write the same partial files, and the
    // slower one would put back an older summary and trust state.
    let lock_path = state_dir.join("lock");
    let lock = File::create(&lock_path).map_err(local(&lock_path))?;
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
    let mut touched_dirs = std::collections::BTreeSet::new();
    for (rel, size, id) in &wanted {
        let dest = dir.join(rel);
        if let Ok((n, h)) = hash_file(&dest) {
            if n == *size && h == *id {
                continue;
            }
        }
        let part: PathBuf = state_dir
            .join("partial")
            .join(rel.replace('/', "_") + ".part");
        bytes += fetcher.download_to(rel, &part, *size, *size)?;
        let (n, h) = hash_file(&part).map_err(local(&part))?;
        if n != *size || h != *id {
            let _ = std::fs::remove_file(&part);
            return Err(PullError::Pinned {
                file: rel.clone(),
                reason: format!("its BLAKE3 is not {id}, the one the summary pins"),
            });
        }
        File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(local(&part))?;
        let parent = dest.parent().expect("has a parent");
        std::fs::create_dir_all(parent).map_err(local(parent))?;
        std::fs::rename(&part, &dest).map_err(local(&dest))?;
        touched_dirs.insert(parent.to_path_buf());
        fetched_files += 1;
    }
    for d in &touched_dirs {
        fsync_dir(d)?;
    }

    // The summary last: temp, fsync, rename, fsync the directory.
    let tmp = dir.join(format!(".{SUMMARY_FILE}.tmp-{}", std::process::id()));
    File::create(&tmp)
        .and_then(|mut f| f.write_all(&summary_bytes).and_then(|()| f.sync_all()))
        .map_err(local(&tmp))?;
    std::fs::rename(&tmp, dir.join(SUMMARY_FILE)).map_err(local(dir))?;
    fsync_dir(dir)?;
    save_trust_state(&state_path, &verified.new_state)?;
    Ok(MirrorReport {
        serial: s.serial,
        files: wanted.len() as u64,
        fetched_files,
        bytes,
        requests: fetcher.requests(),
    })
}
