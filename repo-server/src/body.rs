//! Response bodies: literal bytes and file ranges, read in chunks off the async threads.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use crate::log::LogEntry;

/// Largest read handed to the connection at once.
const CHUNK: u64 = 256 * 1024;

/// A piece of a response body.
#[derive(Debug)]
pub enum Part {
    /// Literal bytes (error text, multipart headers).
    Bytes(Bytes),
    /// `len` bytes of the body's file from `offset`.
    File {
        /// Start offset in the file.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
}

impl Part {
    /// Number of body bytes this part sends.
    pub fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

/// The body type of every response; logs the request when finished or dropped.
pub struct ServeBody {
    parts: VecDeque<Part>,
    file: Option<Arc<File>>,
    remaining: u64,
    sent: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    log: Option<LogEntry>,
}

impl ServeBody {
    /// A body made of `parts`; `file` must be set when any part is [`Part::File`].
    pub fn new(parts: Vec<Part>, file: Option<Arc<File>>, log: Option<LogEntry>) -> ServeBody {
        let remaining = parts.iter().map(Part::len).sum();
        ServeBody {
            parts: parts.into(),
            file,
            remaining,
            sent: 0,
            pending: None,
            log,
        }
    }

    /// An empty body (HEAD, 304).
    pub fn empty(log: Option<LogEntry>) -> ServeBody {
        ServeBody::new(Vec::new(), None, log)
    }

    /// Attaches the log record written when the body is done.
    pub fn with_log(mut self, log: Option<LogEntry>) -> ServeBody {
        self.log = log;
        self
    }

    /// Exact length of the body.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    fn data(&mut self, bytes: Bytes) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let n = bytes.len() as u64;
        self.sent += n;
        self.remaining = self.remaining.saturating_sub(n);
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn start_read(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let file = self
            .file
            .clone()
            .ok_or_else(|| io::Error::other("file part without a file"))?;
        let n = len.min(CHUNK);
        if len > n {
            self.parts.push_front(Part::File {
                offset: offset + n,
                len: len - n,
            });
        }
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; n as usize];
            // A file that shrank under us fails here, which aborts the connection rather than
            // sending fewer bytes than the Content-Length promised.
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        }));
        Ok(())
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            if let Some(pending) = self.pending.as_mut() {
                let result = match Pin::new(pending).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                };
                self.pending = None;
                return match result {
                    Ok(Ok(bytes)) => self.data(bytes),
                    Ok(Err(e)) => Poll::Ready(Some(Err(e))),
                    Err(join) => Poll::Ready(Some(Err(io::Error::other(join)))),
                };
            }
            match self.parts.pop_front() {
                None => return Poll::Ready(None),
                Some(Part::Bytes(bytes)) => return self.data(bytes),
                Some(Part::File { offset, len }) => {
                    if let Err(e) = self.start_read(offset, len) {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl Drop for ServeBody {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.finish(self.sent, self.remaining == 0);
        }
    }
}
