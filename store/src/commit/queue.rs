//! Worker threads for sources that must be read sequentially (a tar stream, a git object
//! database that is not shared across threads). The reading thread hands each buffered
//! file to the workers through a bounded queue, so hashing and compression run in
//! parallel with reading while memory stays bounded by the queue length times the
//! largest buffered file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use super::{Ctx, SourceRead};
use crate::error::{Error, IoResultExt, Result};
use crate::id::FileId;
use crate::object::FileHeader;

/// Most buffered files waiting in the queue.
const MAX_QUEUED: usize = 16;

/// A buffered file for a worker to write into slot `slot`.
pub(crate) struct Job {
    pub(crate) slot: usize,
    pub(crate) header: FileHeader,
    pub(crate) data: Vec<u8>,
    /// The source entry, for errors.
    pub(crate) shown: PathBuf,
}

/// The reading thread's end of the queue.
pub(crate) struct Queue<'a> {
    tx: SyncSender<Job>,
    failed: &'a AtomicBool,
}

impl Queue<'_> {
    /// Hand a file to the workers (blocks while the queue is full).
    pub(crate) fn send(&self, job: Job) {
        // The workers only leave once the queue is closed, so a send cannot fail.
        let _ = self.tx.send(job);
    }

    /// Whether a worker failed: the reader should stop, the error will be reported.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Run `read` on the calling thread while `jobs` workers write the files it queues.
/// Returns what `read` returned and the (slot, id) of every queued file. A worker's error
/// wins over the reader's (the reader may have stopped because of it).
pub(crate) fn with_workers<T>(
    ctx: &Ctx<'_>,
    jobs: usize,
    read: impl FnOnce(&Queue<'_>) -> Result<T>,
) -> Result<(T, Vec<(usize, FileId)>)> {
    let jobs = jobs.max(1);
    let (tx, rx) = sync_channel::<Job>((2 * jobs).min(MAX_QUEUED));
    let rx = Mutex::new(rx);
    let done: Mutex<Vec<(usize, FileId)>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let mut spawned = Ok(());
        for i in 0..jobs {
            let (rx, done, failure, failed) = (&rx, &done, &failure, &failed);
            let r = std::thread::Builder::new()
                .name(format!("commit-{i}"))
                .spawn_scoped(s, move || worker(ctx, rx, done, failure, failed));
            if let Err(e) = r {
                spawned = Err(e).at_path("<worker thread>");
                break;
            }
        }
        let queue = Queue {
            tx,
            failed: &failed,
        };
        let r = spawned.and_then(|()| read(&queue));
        // Closing the queue lets the workers finish what is queued and exit.
        drop(queue);
        r
    });
    if let Some(e) = failure.into_inner().expect("poisoned") {
        return Err(e);
    }
    Ok((result?, done.into_inner().expect("poisoned")))
}

fn worker(
    ctx: &Ctx<'_>,
    rx: &Mutex<Receiver<Job>>,
    done: &Mutex<Vec<(usize, FileId)>>,
    failure: &Mutex<Option<Error>>,
    failed: &AtomicBool,
) {
    loop {
        let job = rx.lock().expect("poisoned").recv();
        let Ok(job) = job else { return };
        if failed.load(Ordering::Relaxed) {
            continue;
        }
        let size = job.data.len() as u64;
        match SourceRead::new(job.data.as_slice(), size).write(
            ctx,
            &job.header,
            &job.shown.display(),
        ) {
            Ok(id) => done.lock().expect("poisoned").push((job.slot, id)),
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                failure.lock().expect("poisoned").get_or_insert(e);
            }
        }
    }
}

/// Put every (slot, id) pair into a table of `n` slots; every slot must be filled.
pub(crate) fn fill_slots(
    n: usize,
    pairs: impl IntoIterator<Item = (usize, FileId)>,
) -> Vec<FileId> {
    let mut ids: Vec<Option<FileId>> = vec![None; n];
    for (slot, id) in pairs {
        ids[slot] = Some(id);
    }
    ids.into_iter()
        .map(|id| id.expect("every slot written"))
        .collect()
}
