//! A connector that remembers TLS failures seen on established connections.
//!
//! With TLS 1.3 a server checks the client certificate only after the client has finished its
//! side of the handshake, so a rejected (or missing) client certificate surfaces as an alert on
//! the first read of a connection hyper already owns; hyper then reports the request as merely
//! cancelled. Wrapping each stream lets the fetcher still name the cause (F9).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;

use crate::error::{BoxError, TlsFailure};
use crate::tls;

type Inner = hyper_rustls::HttpsConnector<HttpConnector>;
type InnerStream = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// The last TLS failure seen on any connection of one fetcher.
#[derive(Clone, Default)]
pub(crate) struct TlsSlot(Arc<Mutex<Option<(TlsFailure, String)>>>);

impl TlsSlot {
    fn record(&self, err: &std::io::Error) {
        if let Some(kind) = tls::classify(err) {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some((kind, err.to_string()));
            }
        }
    }

    /// Takes the recorded failure, if any.
    pub(crate) fn take(&self) -> Option<(TlsFailure, String)> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Wraps the rustls connector; every stream reports TLS errors to the slot.
#[derive(Clone)]
pub(crate) struct WatchingConnector {
    pub(crate) inner: Inner,
    pub(crate) slot: TlsSlot,
}

impl tower_service::Service<Uri> for WatchingConnector {
    type Response = Watched;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Watched, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let slot = self.slot.clone();
        Box::pin(async move {
            let inner = connecting.await?;
            Ok(Watched { inner, slot })
        })
    }
}

/// A connection stream that records TLS errors before passing them on.
pub(crate) struct Watched {
    inner: InnerStream,
    slot: TlsSlot,
}

impl Watched {
    fn watch<T>(&self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &poll {
            self.slot.record(e);
        }
        poll
    }
}

impl Read for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(poll)
    }
}

impl Write for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(poll)
    }
}

impl Connection for Watched {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
