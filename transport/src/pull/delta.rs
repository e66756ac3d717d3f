//! Pulling a commit through a static delta (docs/transport.md section 5): one file,
//! downloaded resumably into the remote's cache, checked against the BLAKE3 and size the
//! summary pins, then applied into one transaction that stores the commit and moves the
//! ref. The delta's own checks (every object against its id) run while it is applied.

use std::io::{BufReader, Read};
use std::os::fd::AsFd;

use rustix::fs::AtFlags;
use store::durable;

use crate::static_delta::{apply_static_delta, DELTAS_DIR, DELTA_EXTENSION};
use crate::summary::{DeltaEntry, RefEntry};
use store::id::ObjectId;
use store::object::Signatures;
use store::CommitId;

use super::{Event, PullCtx, PullError};

/// Download (or resume) the delta, check it, apply it. Returns the files stored.
pub(super) fn pull_delta(
    ctx: &mut PullCtx<'_>,
    entry: &RefEntry,
    delta: &DeltaEntry,
    sigs: Signatures,
    current: &CommitId,
) -> Result<u64, PullError> {
    let name = format!("{}.{DELTA_EXTENSION}", delta.id);
    let path = format!("{DELTAS_DIR}/{name}");
    let part_name = format!("{name}.part");
    let (part, part_dir) = ctx.cache.partial(&part_name)?;
    let have = rustix::fs::statat(&part_dir, part_name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| st.st_size as u64)
        .unwrap_or(0);
    let have = if have > delta.size { 0 } else { have };
    // The delta itself, and at least as much again for what it decodes to.
    super::check_space(ctx.repo, (delta.size - have).saturating_mul(2))?;
    tracing::info!(
        r#ref = %entry.name,
        from = %current,
        to = %entry.commit,
        delta = %delta.id,
        bytes = delta.size - have,
        resumed_at = have,
        "pull: planned static delta"
    );
    (ctx.events)(&Event::Planned {
        name: entry.name.to_string(),
        commit: entry.commit,
        bytes: delta.size - have,
        files: 0,
        delta: true,
    });
    let got = ctx
        .fetcher
        .download_to(&path, &part, delta.size, delta.size)?;
    ctx.fetched += got;
    (ctx.events)(&Event::Progress {
        name: entry.name.to_string(),
        done: delta.size - have,
        total: delta.size - have,
    });
    let local = |source: rustix::io::Errno| PullError::Local {
        path: part.clone(),
        source: source.into(),
    };
    let open = || durable::open_read_at(part_dir.as_fd(), part_name.as_str()).map_err(local);

    // The whole file must be the one the summary pins before a byte of it is parsed.
    let mut hasher = blake3::Hasher::new();
    let mut f = open()?;
    let n = std::io::copy(&mut f, &mut hasher).map_err(|source| PullError::Local {
        path: part.clone(),
        source,
    })?;
    if n != delta.size || ObjectId::from(hasher.finalize()) != delta.id {
        let _ = rustix::fs::unlinkat(&part_dir, part_name.as_str(), AtFlags::empty());
        return Err(PullError::Pinned {
            file: path,
            reason: if n != delta.size {
                format!("{n} bytes, the summary says {}", delta.size)
            } else {
                format!("its BLAKE3 is not {}, the one the summary pins", delta.id)
            },
        });
    }

    tracing::debug!(delta = %delta.id, bytes = n, "pull: static delta matches the summary");

    let txn = ctx.repo.begin()?;
    let mut reader = BufReader::with_capacity(1 << 20, open()?.take(delta.size));
    let stats = apply_static_delta(&txn, &mut reader, current, &entry.commit)?;
    let timestamp = txn.read_commit(&entry.commit)?.timestamp;
    ctx.check_downgrade(entry, Some(current), timestamp)?;
    txn.write_signatures(&entry.commit, sigs)?;
    // The ref is written by the pull's commit point, once every ref is verified.
    txn.commit()?;
    tracing::info!(r#ref = %entry.name, commit = %entry.commit, files = stats.files, "pull: objects committed from the static delta; the ref moves at the pull's commit point");
    let _ = rustix::fs::unlinkat(&part_dir, part_name.as_str(), AtFlags::empty());
    Ok(stats.files)
}
