//! Publishing an archive repository as the static layout devices read
//! (`docs/transport.md`): packs and their indexes, a chunk index and a signature set per
//! published commit, and the signed summary that pins them all.
//!
//! [`publish`] is incremental and safe for readers. Every blob already in a pack under
//! `DIR/packs` is left there and never packed again; packs, indexes, chunk indexes and
//! signature sets are written (each durably) before the summary, and the summary is
//! replaced last, atomically, so a reader never sees a summary naming a file that is not
//! yet there. Published packs are never rewritten or removed (pruning them is not done
//! here: packs no longer needed by any ref stay, unlisted, in `DIR/packs`).
//!
//! Static deltas (`DIR/deltas/<delta-id>.delta`, [`crate::static_delta`]) are written for
//! the hops of [`DeltaPlan`] (by default each ref's parent → its head) before the summary
//! lists them; a delta the previous summary already lists for the same hop is reused.
//! They are written in a thread of their own while the packs are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::pack::{pack_commit_with, BlobKind, ChunkIndex, PackIndex, PackInfo, PackWriterOptions};
use crate::static_delta::{write_static_delta, StaticDeltaOptions, DELTAS_DIR, DELTA_EXTENSION};
use crate::summary::{
    parse_signed, sign_summary, DeltaEntry, PackEntry, RefEntry, Summary, MAX_SUMMARY_SIZE,
};
use store::durable;
use store::id::{CommitId, ObjectId};
use store::object::ObjectKind;
use store::repo::{Repo, RepoMode};
use store::sign::load_secret_key;
use store::IoResultExt;

/// Name of the signed summary file in a published directory.
pub const SUMMARY_FILE: &str = "summary";
/// Directory of the commit signature sets (`sigs/<signatures-id>.sig`).
pub const SIGS_DIR: &str = "sigs";
/// Held by a running publish, in the published directory.
const PUBLISH_LOCK: &str = ".publish-lock";
/// Default validity of a published summary: 7 days.
pub const DEFAULT_EXPIRY: u64 = 7 * 86_400;

/// Largest pack index read back from a published directory (10 million entries).
const MAX_INDEX_FILE: u64 = 49 + 49 * crate::pack::MAX_ENTRIES as u64;

/// How [`publish`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOptions {
    /// The secret key file that signs the summary (loaded before anything is written).
    pub key: PathBuf,
    /// Seconds from now until the summary expires (at least 1).
    pub expires_in: u64,
    /// The directory to publish into; `None` publishes into the repository itself.
    pub output: Option<PathBuf>,
    /// "Now" in unix seconds; `None` reads the system clock.
    pub now: Option<u64>,
    /// How new packs are written.
    pub pack: PackWriterOptions,
    /// Which static deltas to offer.
    pub deltas: DeltaPlan,
    /// How static deltas are compressed.
    pub delta: StaticDeltaOptions,
    /// After the new summary is written, delete the files of `packs/`, `chunks/`, `sigs/`
    /// and `deltas/` that neither it nor the previous summary names.
    pub prune: bool,
    /// The channel the summary is for (`stable`, `beta`): devices following another one
    /// refuse it. `None` keeps the previous summary's channel (none for a first publish).
    pub channel: Option<String>,
    /// Set the summary's reset-clock flag: devices lower the latest time they know of to
    /// their own clock (the recovery after a summary published with a clock far ahead).
    pub reset_clock: bool,
}

/// Which static deltas [`publish`] writes and lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaPlan {
    /// For each ref whose commit has a parent present in the repository, a delta
    /// parent → head (default: true).
    pub parents: bool,
    /// For each of these commits, a delta from it to each ref's head (none to itself).
    pub from: Vec<CommitId>,
}

impl Default for DeltaPlan {
    fn default() -> Self {
        DeltaPlan {
            parents: true,
            from: Vec::new(),
        }
    }
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            key: PathBuf::new(),
            expires_in: DEFAULT_EXPIRY,
            output: None,
            now: None,
            pack: PackWriterOptions::default(),
            deltas: DeltaPlan::default(),
            delta: StaticDeltaOptions::default(),
            prune: false,
            channel: None,
            reset_clock: false,
        }
    }
}

/// What [`publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReport {
    /// The directory published into.
    pub output: PathBuf,
    /// The summary written.
    pub summary: Summary,
    /// Size of the signed summary file.
    pub summary_size: u64,
    /// The packs written by this run (none when everything was already packed).
    pub packs_written: Vec<PackInfo>,
    /// Blobs added to new packs.
    pub blobs_written: u64,
    /// Packs present before this run that no published ref needs any more (left in place).
    pub packs_unused: usize,
    /// The static deltas written by this run.
    pub deltas_written: Vec<DeltaEntry>,
    /// Static deltas listed again from the previous summary, their files checked.
    pub deltas_reused: usize,
    /// With [`PublishOptions::prune`]: files deleted, and their bytes.
    pub pruned: (u64, u64),
}

/// One blob's place in the published packs.
#[derive(Clone, Copy)]
struct Location {
    pack: ObjectId,
    stored_len: u32,
}

/// A published pack and its index, pinned.
struct Known {
    entry: PackEntry,
    existed: bool,
}

/// Publish every ref of the archive repository `repo` (see the module documentation).
///
/// Refuses a repository that is not in archive mode, an unreadable key, and a directory
/// whose previous summary cannot be parsed ([`Error::PreviousSummary`]), all before writing
/// anything. The new summary's serial is the previous one plus 1 (1 for a first publish).
pub fn publish(repo: &Repo, opts: &PublishOptions) -> Result<PublishReport> {
    if repo.mode() != RepoMode::Archive {
        return Err(Error::Store(store::Error::Repo {
            path: repo.path().to_path_buf(),
            reason: format!(
                "publish needs an archive-mode repository, this one is {}",
                repo.mode()
            ),
        }));
    }
    let key = load_secret_key(&opts.key)?;
    if let Some(c) = &opts.channel {
        crate::summary::validate_channel(c)?;
    }
    if opts.expires_in == 0 {
        return Err(Error::invalid(
            "summary expiry",
            "must be at least 1 second",
        ));
    }
    let now = opts.now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let expires = now
        .checked_add(opts.expires_in)
        .ok_or_else(|| Error::invalid("summary expiry", "now + expiry overflows a 64-bit time"))?;
    let out = opts
        .output
        .clone()
        .unwrap_or_else(|| repo.path().to_path_buf());
    // Hold off a prune for the whole run: it must not delete what is being packed.
    let _lock = repo.lock_shared()?;

    #[allow(clippy::disallowed_methods)] // path meant: the output directory the user named
    std::fs::create_dir_all(&out).at_path(&out)?;
    let root = rustix::fs::open(
        &out,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(&out)?;
    // One publish at a time: the serial read next must still be the latest when the new
    // summary is written.
    let _publish_lock = lock_output(root.as_fd(), &out)?;
    let previous = previous_summary(root.as_fd(), &out)?;
    let serial = match previous.as_ref().map(|p| p.serial) {
        None => 1,
        Some(s) => s.checked_add(1).ok_or_else(|| Error::PreviousSummary {
            path: out.join(SUMMARY_FILE),
            reason: "its serial is already the largest possible".into(),
        })?,
    };
    let refs = repo.list_refs()?;
    let hops = delta_hops(repo, refs.iter().map(|(_, commit)| *commit), &opts.deltas)?;

    let packs_path = out.join("packs");
    let packs_fd = durable::mkdir_all_at(root.as_fd(), Path::new("packs"), &packs_path)?;
    let sigs_path = out.join(SIGS_DIR);
    let sigs_fd = durable::mkdir_all_at(root.as_fd(), Path::new(SIGS_DIR), &sigs_path)?;

    let mut packs: BTreeMap<ObjectId, Known> = BTreeMap::new();
    let mut blobs: HashMap<(BlobKind, ObjectId), Location> = HashMap::new();
    for (id, index, index_id, index_size) in existing_indexes(packs_fd.as_fd(), &packs_path)? {
        add_pack(&mut packs, &mut blobs, &index, index_id, index_size, true);
        debug_assert_eq!(packs[&id].entry.id, id);
    }

    let mut entries = Vec::with_capacity(refs.len());
    let mut packs_written = Vec::new();
    let mut blobs_written = 0;
    let mut used: BTreeMap<ObjectId, ()> = BTreeMap::new();
    // Packs each ref's new objects, writes its signature set, and records its entry.
    let pack_refs = || -> Result<()> {
        for (name, commit) in refs {
            let chunk_index = match reusable_chunk_index(root.as_fd(), &out, &commit, &blobs) {
                // Published before and every blob still packed: nothing to read or pack.
                Some(ci) => ci,
                None => {
                    let outcome = {
                        let known = &blobs;
                        pack_commit_with(
                            repo,
                            &commit,
                            &out,
                            &|kind, id| known.contains_key(&(kind, *id)),
                            opts.pack,
                        )?
                    };
                    for p in &outcome.packs {
                        let name = p.index_file_name();
                        let bytes = read_file_at(packs_fd.as_fd(), &name, &packs_path.join(&name))?;
                        let index = PackIndex::decode(&bytes)?;
                        add_pack(
                            &mut packs,
                            &mut blobs,
                            &index,
                            ObjectId::of(&bytes),
                            bytes.len() as u64,
                            false,
                        );
                    }
                    blobs_written += outcome.blobs_written;
                    packs_written.extend(outcome.packs);
                    outcome.chunk_index
                }
            };

            let cidx = chunk_index.encode();
            let sigs = repo.read_signatures(&commit)?.encode();
            let signatures_id = ObjectId::of(&sigs);
            let sig_name = format!("{signatures_id}.sig");
            let sig_path = sigs_path.join(&sig_name);
            match rustix::fs::statat(
                sigs_fd.as_fd(),
                sig_name.as_str(),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                // Named by its hash: an existing file already holds these bytes.
                Ok(_) => {}
                Err(Errno::NOENT) => {
                    durable::write_atomic(sigs_fd.as_fd(), &sig_name, &sigs, 0o644, &sig_path)?
                }
                Err(e) => return Err(e).at_path(&sig_path).map_err(Error::from),
            }

            let c = repo.read_commit(&commit)?;
            let download_size = download_size(&chunk_index, &blobs, &mut used)?;
            entries.push(RefEntry {
                name,
                commit,
                version: c
                    .metadata
                    .iter()
                    .find(|(k, _)| k == "version")
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty() && v.len() <= crate::summary::MAX_VERSION),
                timestamp: c.timestamp,
                download_size,
                chunk_index_id: ObjectId::of(&cidx),
                chunk_index_size: cidx.len() as u64,
                signatures_id,
                signatures_size: sigs.len() as u64,
            });
        }
        Ok(())
    };

    // The static deltas read only the source repository and the commit ids, never the
    // packs: writing them (rayon, every core) in a thread of their own while this one
    // packs (mostly one core) overlaps the two instead of running them back to back.
    // Both sides finish before either result is looked at; a packing error wins.
    let previous_deltas = previous.as_ref().map_or(&[][..], |p| &p.deltas[..]);
    let (packed, deltas) = if hops.is_empty() {
        (pack_refs(), Ok((Vec::new(), Vec::new(), 0)))
    } else {
        std::thread::scope(|s| {
            let deltas = s.spawn(|| {
                write_deltas(
                    repo,
                    root.as_fd(),
                    &out,
                    &hops,
                    previous_deltas,
                    &opts.delta,
                )
            });
            let packed = pack_refs();
            let deltas = deltas
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (packed, deltas)
        })
    };
    packed?;
    let (deltas, deltas_written, deltas_reused) = deltas?;
    entries.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));

    let packs_unused = packs
        .iter()
        .filter(|(id, k)| k.existed && !used.contains_key(*id))
        .count();
    let summary = Summary {
        serial,
        timestamp: now,
        expires,
        channel: opts
            .channel
            .clone()
            .or_else(|| previous.as_ref().and_then(|p| p.channel.clone())),
        reset_clock: opts.reset_clock,
        refs: entries,
        packs: used.keys().map(|id| packs[id].entry).collect(),
        deltas,
        metadata: Vec::new(),
    };
    let file = sign_summary(&summary, &[&key])?;
    // The directory entries of packs/, chunks/ and sigs/ become durable before the summary
    // that relies on them.
    rustix::fs::fsync(&root).at_path(&out)?;
    durable::write_atomic(
        root.as_fd(),
        SUMMARY_FILE,
        &file,
        0o644,
        &out.join(SUMMARY_FILE),
    )?;
    let pruned = if opts.prune {
        prune_published(root.as_fd(), &out, &summary, previous.as_ref())?
    } else {
        (0, 0)
    };
    Ok(PublishReport {
        output: out,
        summary,
        summary_size: file.len() as u64,
        packs_written,
        blobs_written,
        packs_unused,
        deltas_written,
        deltas_reused,
        pruned,
    })
}

/// The files of a published directory that `summary` names, relative to it.
fn named_files(summary: &Summary) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for p in &summary.packs {
        names.insert(format!("packs/{}.pack", p.id));
        names.insert(format!("packs/{}.idx", p.id));
    }
    for r in &summary.refs {
        names.insert(format!("chunks/{}.cidx", r.commit));
        names.insert(format!("{SIGS_DIR}/{}.sig", r.signatures_id));
    }
    for d in &summary.deltas {
        names.insert(format!("{DELTAS_DIR}/{}.{DELTA_EXTENSION}", d.id));
    }
    names
}

/// Delete what neither the new nor the previous summary names: a device still working
/// from the previous summary finds everything it needs; one two publishes behind fetches
/// the summary again after a 404. Temp files left by a crashed publish go too (this run
/// holds the publish lock). Returns the files deleted and their bytes.
fn prune_published(
    root: BorrowedFd<'_>,
    out: &Path,
    summary: &Summary,
    previous: Option<&Summary>,
) -> Result<(u64, u64)> {
    let mut keep = named_files(summary);
    if let Some(p) = previous {
        keep.extend(named_files(p));
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    for dir_name in ["packs", "chunks", SIGS_DIR, DELTAS_DIR] {
        let shown = out.join(dir_name);
        let dir = match durable::open_dir_at(root, dir_name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).at_path(&shown).map_err(Error::from),
        };
        let mut removed_here = false;
        for entry in rustix::fs::Dir::read_from(&dir).at_path(&shown)? {
            let entry = entry.at_path(&shown)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." || entry.file_type() != rustix::fs::FileType::RegularFile
            {
                continue;
            }
            if keep.contains(&format!("{dir_name}/{name}")) {
                continue;
            }
            let st = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .at_path(shown.join(&name))?;
            rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty())
                .at_path(shown.join(&name))?;
            files += 1;
            bytes += st.st_size as u64;
            removed_here = true;
        }
        if removed_here {
            rustix::fs::fsync(&dir).at_path(&shown)?;
        }
    }
    Ok((files, bytes))
}

/// The hops to offer for the ref heads `heads`, sorted by `(from, to)` as the summary
/// lists them.
fn delta_hops(
    repo: &Repo,
    heads: impl IntoIterator<Item = CommitId>,
    plan: &DeltaPlan,
) -> Result<BTreeSet<(CommitId, CommitId)>> {
    let mut hops = BTreeSet::new();
    for head in heads {
        if plan.parents {
            if let Some(parent) = repo.read_commit(&head)?.parent {
                if repo.has_object(ObjectKind::Commit, &parent.0)? {
                    hops.insert((parent, head));
                }
            }
        }
        for from in &plan.from {
            if *from != head {
                hops.insert((*from, head));
            }
        }
    }
    Ok(hops)
}

/// Write (or reuse) a static delta for every hop into `DIR/deltas/`, each durably (temp
/// file, fsync, rename, then one fsync of the directory), and return their summary
/// entries, the ones written now, and how many were reused.
fn write_deltas(
    repo: &Repo,
    root: BorrowedFd<'_>,
    out: &Path,
    hops: &BTreeSet<(CommitId, CommitId)>,
    previous: &[DeltaEntry],
    opts: &StaticDeltaOptions,
) -> Result<(Vec<DeltaEntry>, Vec<DeltaEntry>, usize)> {
    let mut listed = Vec::with_capacity(hops.len());
    let mut written = Vec::new();
    let mut reused = 0;
    if hops.is_empty() {
        return Ok((listed, written, reused));
    }
    let dir_path = out.join(DELTAS_DIR);
    let dir = durable::mkdir_all_at(root, Path::new(DELTAS_DIR), &dir_path)?;
    let known: HashMap<(CommitId, CommitId), &DeltaEntry> =
        previous.iter().map(|d| ((d.from, d.to), d)).collect();
    for &(from, to) in hops {
        if let Some(prev) = known.get(&(from, to)) {
            if published_delta_intact(dir.as_fd(), &dir_path, prev)? {
                listed.push((*prev).clone());
                reused += 1;
                continue;
            }
        }
        let entry = write_delta_file(repo, dir.as_fd(), &dir_path, &from, &to, opts)?;
        listed.push(entry.clone());
        written.push(entry);
    }
    rustix::fs::fsync(&dir).at_path(&dir_path)?;
    Ok((listed, written, reused))
}

/// Whether `deltas/<id>.delta` is there with the size and BLAKE3 the entry pins.
fn published_delta_intact(dir: BorrowedFd<'_>, path: &Path, entry: &DeltaEntry) -> Result<bool> {
    let name = format!("{}.{DELTA_EXTENSION}", entry.id);
    let shown = path.join(&name);
    let fd = match rustix::fs::openat(
        dir,
        name.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e).at_path(&shown).map_err(Error::from),
    };
    let mut file = File::from(fd);
    if file.metadata().at_path(&shown)?.len() != entry.size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher).at_path(&shown)?;
    Ok(ObjectId::from(hasher.finalize()) == entry.id)
}

/// Write one delta as `deltas/<id>.delta`: streamed into a temp file, fsynced, renamed.
fn write_delta_file(
    repo: &Repo,
    dir: BorrowedFd<'_>,
    path: &Path,
    from: &CommitId,
    to: &CommitId,
    opts: &StaticDeltaOptions,
) -> Result<DeltaEntry> {
    let tmp = durable::temp_name(".tmp-delta-");
    let tmp_path = path.join(&tmp);
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o644),
    )
    .at_path(&tmp_path)?;
    let result = (|| -> Result<DeltaEntry> {
        let mut w = BufWriter::with_capacity(1 << 20, File::from(fd));
        let stats = write_static_delta(repo, from, to, &mut w, opts)?;
        let file = w
            .into_inner()
            .map_err(|e| e.into_error())
            .at_path(&tmp_path)?;
        file.sync_all().at_path(&tmp_path)?;
        let name = format!("{}.{DELTA_EXTENSION}", stats.id);
        rustix::fs::renameat(dir, tmp.as_str(), dir, name.as_str()).at_path(path.join(&name))?;
        Ok(DeltaEntry {
            from: *from,
            to: *to,
            size: stats.size,
            id: stats.id,
        })
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// The summary already in `out`, if there is one. Its signatures are not checked (the
/// publisher may have rotated keys); its structure and body must parse.
fn previous_summary(root: BorrowedFd<'_>, out: &Path) -> Result<Option<Summary>> {
    let path = out.join(SUMMARY_FILE);
    let file = match durable::open_read_at(root, SUMMARY_FILE) {
        Ok(f) => f,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).at_path(&path).map_err(Error::from),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SUMMARY_SIZE + 1)
        .read_to_end(&mut bytes)
        .at_path(&path)?;
    let parsed = parse_signed(&bytes).map_err(|e| Error::PreviousSummary {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some(parsed.summary))
}

fn add_pack(
    packs: &mut BTreeMap<ObjectId, Known>,
    blobs: &mut HashMap<(BlobKind, ObjectId), Location>,
    index: &PackIndex,
    index_id: ObjectId,
    index_size: u64,
    existed: bool,
) {
    let pack = *index.pack_id();
    for e in index.entries() {
        // The first pack seen keeps a blob: later duplicates are never needed.
        blobs.entry((e.kind, e.id)).or_insert(Location {
            pack,
            stored_len: e.stored_len,
        });
    }
    packs.insert(
        pack,
        Known {
            entry: PackEntry {
                id: pack,
                size: index.pack_size(),
                index_id,
                index_size,
            },
            existed,
        },
    );
}

/// Every `<pack-id>.idx` in `packs/`, decoded, with the BLAKE3 and size of the index file.
/// An index whose pack id is not its file name, or whose pack is missing or of another
/// size, is refused: the published directory is damaged.
fn existing_indexes(
    dir: BorrowedFd<'_>,
    path: &Path,
) -> Result<Vec<(ObjectId, PackIndex, ObjectId, u64)>> {
    let mut names = Vec::new();
    let fd: OwnedFd = rustix::io::fcntl_dupfd_cloexec(dir, 0).at_path(path)?;
    for entry in rustix::fs::Dir::read_from(&fd).at_path(path)? {
        let entry = entry.at_path(path)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".idx") {
            if !name.starts_with('.') {
                names.push((stem.to_owned(), name));
            }
        }
    }
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for (stem, name) in names {
        let shown = path.join(&name);
        let damaged = |reason: String| Error::invalid(shown.display().to_string(), reason);
        let id: ObjectId = stem
            .parse()
            .map_err(|_| damaged("not named <pack-id>.idx".into()))?;
        let bytes = read_file_at(dir, &name, &shown)?;
        if bytes.len() as u64 > MAX_INDEX_FILE {
            return Err(damaged("larger than any pack index".into()));
        }
        let index = PackIndex::decode(&bytes)?;
        if *index.pack_id() != id {
            return Err(damaged(format!("names pack {}", index.pack_id())));
        }
        let pack_name = format!("{id}.pack");
        let st = rustix::fs::statat(dir, pack_name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .at_path(path.join(&pack_name))?;
        if st.st_size as u64 != index.pack_size() {
            return Err(damaged(format!(
                "its pack is {} bytes, the index says {}",
                st.st_size,
                index.pack_size()
            )));
        }
        out.push((id, index, ObjectId::of(&bytes), bytes.len() as u64));
    }
    Ok(out)
}

/// The chunk index `chunks/<commit>.cidx` a previous publish wrote, if it decodes, names
/// this commit, and every blob it lists (commit, trees, headers, chunks) is in a known
/// pack; `None` means the commit must be packed (again).
fn reusable_chunk_index(
    root: BorrowedFd<'_>,
    out: &Path,
    commit: &store::CommitId,
    blobs: &HashMap<(BlobKind, ObjectId), Location>,
) -> Option<ChunkIndex> {
    let name = format!("chunks/{commit}.cidx");
    let bytes = read_file_at(root, &name, &out.join(&name)).ok()?;
    let ci = ChunkIndex::decode(&bytes).ok()?;
    let has = |kind, id: &ObjectId| blobs.contains_key(&(kind, *id));
    let complete = ci.commit == *commit
        && has(BlobKind::Commit, &commit.0)
        && ci.metadata.iter().all(|(k, id)| has(*k, id))
        && ci.files.iter().all(|f| {
            has(BlobKind::FileHeader, &f.id.0)
                && f.chunks.iter().all(|c| has(BlobKind::Chunk, &c.id))
        });
    complete.then_some(ci)
}

/// Take `DIR/.publish-lock`, or fail at once if another publish holds it.
fn lock_output(root: BorrowedFd<'_>, out: &Path) -> Result<OwnedFd> {
    let path = out.join(PUBLISH_LOCK);
    let fd = rustix::fs::openat(
        root,
        PUBLISH_LOCK,
        OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .at_path(&path)?;
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(Errno::WOULDBLOCK) => Err(Error::Store(store::Error::Repo {
            path: out.to_path_buf(),
            reason: format!(
                "another publish into this directory is running (it holds {})",
                path.display()
            ),
        })),
        Err(e) => Err(e).at_path(&path).map_err(Error::from),
    }
}

fn read_file_at(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<Vec<u8>> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .at_path(shown)?;
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes).at_path(shown)?;
    Ok(bytes)
}

/// The exact bytes a device with nothing fetches for the commit of `ci`: the stored
/// length of its commit blob, every dirtree and dirmeta, every file header and every
/// distinct chunk, each located in the published packs. Marks the packs used.
fn download_size(
    ci: &ChunkIndex,
    blobs: &HashMap<(BlobKind, ObjectId), Location>,
    used: &mut BTreeMap<ObjectId, ()>,
) -> Result<u64> {
    let mut total = 0u64;
    let mut add = |kind: BlobKind, id: &ObjectId| -> Result<()> {
        let loc = blobs.get(&(kind, *id)).ok_or_else(|| {
            Error::invalid(
                format!("published commit {}", ci.commit),
                format!("{kind} {id} is in no pack"),
            )
        })?;
        used.insert(loc.pack, ());
        total += u64::from(loc.stored_len);
        Ok(())
    };
    add(BlobKind::Commit, &ci.commit.0)?;
    for (kind, id) in &ci.metadata {
        add(*kind, id)?;
    }
    for f in &ci.files {
        add(BlobKind::FileHeader, &f.id.0)?;
    }
    for id in ci.chunks().keys() {
        add(BlobKind::Chunk, id)?;
    }
    Ok(total)
}
