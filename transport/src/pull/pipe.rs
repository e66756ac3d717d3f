//! Streaming a pull's blobs: one producer thread per pack fetches that pack's blobs in the
//! order the pull uses them, with as few requests as the order allows, into a pipe that
//! holds a bounded number of bytes. The pull takes blobs from the pipes in the same order,
//! so memory stays bounded however large the pull, and the network runs while files are
//! written.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::pack::PackIndex;

use super::source::Loc;
use super::PullError;
use fetch::{Error, Fetcher};

/// Stored bytes a pipe holds before its producer waits (one blob may go over).
pub(super) const PIPE_BYTES: u64 = 512 << 10;

/// A byte-bounded single-producer, single-consumer queue of blobs.
pub(super) struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
}

#[derive(Default)]
struct PipeState {
    queue: VecDeque<(u64, Vec<u8>)>,
    bytes: u64,
    /// The producer is done; `Some(Err)` if it failed.
    finished: Option<Result<(), Error>>,
    /// The consumer is gone: the producer stops.
    closed: bool,
    /// A side is waiting for the other (wake-ups are only sent then: a pull hands over
    /// tens of thousands of blobs).
    producer_waits: bool,
    consumer_waits: bool,
}

impl Pipe {
    pub(super) fn new() -> Pipe {
        Pipe {
            state: Mutex::new(PipeState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue the stored bytes of the blob at `offset`; waits while the pipe is full.
    fn send(&self, offset: u64, bytes: Vec<u8>) -> Result<(), Error> {
        let mut st = self.lock();
        while st.bytes >= PIPE_BYTES && !st.closed {
            st.producer_waits = true;
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            st.producer_waits = false;
        }
        if st.closed {
            return Err(Error::Stopped);
        }
        st.bytes += bytes.len() as u64;
        st.queue.push_back((offset, bytes));
        if st.consumer_waits {
            self.changed.notify_all();
        }
        Ok(())
    }

    fn finish(&self, result: Result<(), Error>) {
        let mut st = self.lock();
        st.finished = Some(result);
        self.changed.notify_all();
    }

    /// The consumer stops taking blobs: a waiting producer gives up.
    pub(super) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        self.changed.notify_all();
    }

    /// The next blob, which must be the one at `loc`.
    pub(super) fn recv(&self, loc: &Loc) -> Result<Vec<u8>, PullError> {
        let mut st = self.lock();
        loop {
            if let Some((offset, bytes)) = st.queue.pop_front() {
                st.bytes -= bytes.len() as u64;
                if st.producer_waits {
                    self.changed.notify_all();
                }
                if offset != loc.entry.offset {
                    return Err(PullError::Plan {
                        reason: format!(
                            "pack stream sent offset {offset} where {} {} at {} was expected",
                            loc.entry.kind.name(),
                            loc.entry.id,
                            loc.entry.offset
                        ),
                    });
                }
                return Ok(bytes);
            }
            match st.finished.take() {
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(())) => {
                    st.finished = Some(Ok(()));
                    return Err(PullError::Plan {
                        reason: format!(
                            "pack stream ended before {} {}",
                            loc.entry.kind.name(),
                            loc.entry.id
                        ),
                    });
                }
                None => {
                    st.consumer_waits = true;
                    st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.consumer_waits = false;
                }
            }
        }
    }
}

/// Most stored bytes fetched by one streamed call: each call has the fetch layer's overall
/// deadline, which a slow link must be able to meet.
const RUN_BYTES: u64 = 16 << 20;

/// Cut `seq` into runs one streamed call can carry: blobs of rising, non-overlapping
/// offsets, at most about [`RUN_BYTES`] in all.
fn runs<'s>(seq: &'s [&Loc]) -> Vec<&'s [&'s Loc]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for i in 1..seq.len() {
        let prev = &seq[i - 1].entry;
        bytes += u64::from(prev.stored_len);
        if seq[i].entry.offset < prev.offset + u64::from(prev.stored_len) || bytes >= RUN_BYTES {
            out.push(&seq[start..i]);
            start = i;
            bytes = 0;
        }
    }
    if start < seq.len() {
        out.push(&seq[start..]);
    }
    out
}

/// Fetch the blobs `seq` of pack `pack`, in that order, into `pipe`.
pub(super) fn produce(
    fetcher: &Fetcher,
    packs: &[PackIndex],
    pack: usize,
    seq: &[&Loc],
    pipe: &Pipe,
) {
    // Even if this thread panics, the pipe is finished, so the reader is not left waiting.
    struct Finish<'p>(&'p Pipe, Option<Result<(), Error>>);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.finish(self.1.take().unwrap_or(Err(Error::Stopped)));
        }
    }
    let mut finish = Finish(pipe, None);
    let path = format!("packs/{}.pack", packs[pack].pack_id());
    let result = runs(seq).into_iter().try_for_each(|run| {
        let ranges: Vec<(u64, u64)> = run
            .iter()
            .map(|l| (l.entry.offset, u64::from(l.entry.stored_len)))
            .collect();
        let total = ranges.iter().map(|r| r.1).sum();
        fetcher.stream_ranges(&path, &ranges, total, &mut |i, bytes| {
            pipe.send(run[i].entry.offset, bytes)
        })
    });
    finish.1 = Some(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{BlobKind, IndexEntry};
    use store::id::ObjectId;

    fn loc(offset: u64, len: u32) -> Loc {
        Loc {
            pack: 0,
            entry: IndexEntry {
                kind: BlobKind::Chunk,
                id: ObjectId::from_bytes([offset as u8; 32]),
                offset,
                stored_len: len,
                raw_len: len,
            },
        }
    }

    #[test]
    fn runs_break_where_offsets_go_back() {
        let locs = [
            loc(0, 10),
            loc(10, 5),
            loc(100, 1),
            loc(50, 1),
            loc(60, 1),
            loc(60, 1),
        ];
        let seq: Vec<&Loc> = locs.iter().collect();
        let lens: Vec<usize> = runs(&seq).iter().map(|r| r.len()).collect();
        assert_eq!(lens, [3, 2, 1]);
        assert!(runs(&[]).is_empty());
        // Rising offsets, but more bytes than one call carries.
        let big: Vec<Loc> = (0..40u64).map(|i| loc(i << 20, 1 << 20)).collect();
        let seq: Vec<&Loc> = big.iter().collect();
        let lens: Vec<usize> = runs(&seq).iter().map(|r| r.len()).collect();
        assert_eq!(lens, [16, 16, 8]);
    }

    #[test]
    fn pipe_hands_over_in_order_and_stops_a_closed_producer() {
        let pipe = Pipe::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..100u64 {
                    pipe.send(i, vec![0; 1 << 20]).unwrap();
                }
                pipe.finish(Ok(()));
            });
            for i in 0..100u64 {
                assert_eq!(pipe.recv(&loc(i, 1 << 20)).unwrap().len(), 1 << 20);
            }
        });
        assert!(pipe.recv(&loc(100, 1)).is_err());

        let pipe = Pipe::new();
        std::thread::scope(|s| {
            let producer = s.spawn(|| (0..100u64).try_for_each(|i| pipe.send(i, vec![0; 1 << 20])));
            pipe.recv(&loc(0, 1)).unwrap();
            pipe.close();
            assert!(matches!(producer.join().unwrap(), Err(Error::Stopped)));
        });
    }
}
