//! The listener: bounded accept loop, TLS handshake, one hyper HTTP/1.1 connection per client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::files::Root;
use crate::idle::IdleIo;
use crate::log::AccessLog;
use crate::respond::{respond, Site};
use crate::slots::{Place, Slot, SlotBody, Waiting};
use crate::tls;

/// Request headers larger than this close the connection (many ranges still fit).
const MAX_HEADER_BYTES: usize = 128 * 1024;

/// A running server; dropping it (or [`Server::shutdown`]) stops it.
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Serving slots: one per request whose headers are in, until its response is sent.
    slots: Arc<Semaphore>,
}

impl Server {
    /// Opens the root, loads TLS files and the access log, binds the socket and starts serving
    /// on the current tokio runtime.
    pub async fn bind(config: ServerConfig) -> Result<Server> {
        let root = Root::open(&config.root).map_err(|source| Error::Root {
            path: config.root.clone(),
            source,
        })?;
        let tls = config
            .tls
            .as_ref()
            .map(tls::server_config)
            .transpose()?
            .map(TlsAcceptor::from);
        let log = config
            .access_log
            .as_ref()
            .map(AccessLog::open)
            .transpose()?
            .map(Arc::new);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let site = Arc::new(Site { root, log });
        let limits = Arc::new(Limits {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
        });
        // As many connections again may wait for a request (see `slots`).
        let waiting = Waiting::new(config.max_connections);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, site, tls, limits, waiting, stopped));
        Ok(Server {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the task ends (it only ends on shutdown).
    pub async fn run(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops accepting and closes every open connection.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Binds and serves forever (the binary's entry point).
pub async fn serve(config: ServerConfig) -> Result<()> {
    Server::bind(config).await?.run().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    site: Arc<Site>,
    tls: Option<TlsAcceptor>,
    limits: Arc<Limits>,
    waiting: Arc<Waiting>,
    mut stopped: watch::Receiver<bool>,
) {
    // Dropping the set at shutdown aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Accept at once: a new connection takes no serving slot until its request's headers
        // are in, only a place among the waiting ones (which may close the oldest waiter).
        // Waiting in the kernel's backlog instead would put it behind every slow client.
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors or similar: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let site = site.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        let place = waiting.join();
        connections.spawn(async move {
            let evicted = place.clone();
            tokio::select! {
                () = connection(stream, client, site, tls, &limits, place) => {}
                () = evicted.evicted() => {}
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    site: Arc<Site>,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    place: Arc<Place>,
) {
    let _ = stream.set_nodelay(true);
    let io = IdleIo::new(stream, limits.idle_timeout);
    match tls {
        None => http(io, client, site, limits, place).await,
        Some(acceptor) => {
            // The handshake counts against the header timeout, so a silent TLS client is
            // dropped as fast as a silent plain one. A refused client certificate ends here.
            let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(io));
            if let Ok(Ok(stream)) = handshake.await {
                http(stream, client, site, limits, place).await;
            }
        }
    }
}

async fn http<S>(io: S, client: SocketAddr, site: Arc<Site>, limits: &Limits, place: Arc<Place>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = limits.slots.clone();
    let service = service_fn(move |req| {
        let site = site.clone();
        let slots = slots.clone();
        let place = place.clone();
        async move {
            // The headers are in. Still a waiter (so queued requests stay bounded) until a
            // serving slot is free; the response body gives it back.
            let permit = slots.acquire_owned().await.ok();
            place.leave();
            let slot = Slot { permit, place };
            let response = respond(site, client, req).await;
            Ok::<_, std::convert::Infallible>(response.map(|body| SlotBody::new(body, slot)))
        }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
}
