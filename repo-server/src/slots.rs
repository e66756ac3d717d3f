//! Who counts against `--max-connections`: a connection takes a serving slot only once a
//! request's headers are in, and gives it back when the response is sent. Until then (TLS
//! handshake, headers still arriving, idle between requests, queued for a slot) it is
//! *waiting*: waiting connections have a budget of their own, and when it is spent a new
//! connection closes the one that has waited longest. So clients that drip header bytes
//! hold no slot, and cannot keep a client whose headers come in one packet out for long.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// The connections now waiting, oldest first.
pub struct Waiting {
    cap: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Next ticket; tickets only grow, so the smallest is the longest waiting.
    next: u64,
    waiting: BTreeMap<u64, Arc<Notify>>,
}

impl Waiting {
    /// A budget of `cap` waiting connections (at least one).
    pub fn new(cap: usize) -> Arc<Waiting> {
        Arc::new(Waiting {
            cap: cap.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// A new connection, counted as waiting from now on.
    pub fn join(self: &Arc<Self>) -> Arc<Place> {
        let place = Arc::new(Place {
            waiting: self.clone(),
            evict: Arc::new(Notify::new()),
            ticket: Mutex::new(None),
        });
        place.wait();
        place
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a map updated in single steps: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections now waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().waiting.len()
    }
}

/// One connection's standing: waiting (and liable to be closed) or being served.
pub struct Place {
    waiting: Arc<Waiting>,
    evict: Arc<Notify>,
    ticket: Mutex<Option<u64>>,
}

impl Place {
    /// Counts the connection as waiting (again), at the back of the line; closes the
    /// connection that has waited longest if that makes one too many.
    pub fn wait(&self) {
        let mut ticket = self.ticket();
        let mut state = self.waiting.state();
        if let Some(old) = ticket.take() {
            state.waiting.remove(&old);
        }
        let id = state.next;
        state.next += 1;
        state.waiting.insert(id, self.evict.clone());
        *ticket = Some(id);
        while state.waiting.len() > self.waiting.cap {
            if let Some((_, oldest)) = state.waiting.pop_first() {
                // Stored if the connection is not polling right now; it ends when it does.
                oldest.notify_one();
            }
        }
    }

    /// The connection is being served: it no longer counts as waiting.
    pub fn leave(&self) {
        if let Some(id) = self.ticket().take() {
            self.waiting.state().waiting.remove(&id);
        }
    }

    /// Resolves once the connection was closed to make room for a newer one.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    fn ticket(&self) -> MutexGuard<'_, Option<u64>> {
        self.ticket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A serving slot, held by a response body until the body is sent or dropped; then the
/// connection waits for its next request.
pub struct Slot {
    /// `None` only if the semaphore was closed, which it never is.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The connection that holds the slot.
    pub place: Arc<Place>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.permit.take();
        self.place.wait();
    }
}

/// A response body that holds its connection's serving slot.
pub struct SlotBody<B> {
    body: B,
    /// Held only to be given back when the body is dropped.
    _slot: Slot,
}

impl<B> SlotBody<B> {
    /// `body`, holding `slot` until it is sent or dropped.
    pub fn new(body: B, slot: Slot) -> SlotBody<B> {
        SlotBody { body, _slot: slot }
    }
}

impl<B: Body + Unpin> Body for SlotBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Waiting;

    /// Whether the place was told to close, polled once.
    async fn evicted(place: &super::Place) -> bool {
        tokio::select! {
            biased;
            () = place.evicted() => true,
            () = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    async fn the_longest_waiting_connection_makes_room() {
        let waiting = Waiting::new(2);
        let a = waiting.join();
        let b = waiting.join();
        // Served connections do not count; a's return puts it behind b.
        a.leave();
        let c = waiting.join();
        assert_eq!(waiting.len(), 2);
        a.wait();
        assert_eq!(waiting.len(), 2);
        assert!(evicted(&b).await, "b waited longest");
        assert!(!evicted(&c).await && !evicted(&a).await);
        let d = waiting.join();
        assert!(evicted(&c).await);
        assert!(!evicted(&a).await && !evicted(&d).await);
        drop(a);
        drop(d);
        assert_eq!(waiting.len(), 0);
    }
}
