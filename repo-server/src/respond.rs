//! One request → one response: method and path checks, conditional GET, ranges.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{Part, ServeBody};
use crate::files::{OpenFile, Root};
use crate::log::{AccessLog, LogEntry};
use crate::path::relative_path;
use crate::range::{self, ByteRange, RangeRequest};

const OCTET_STREAM: &str = "application/octet-stream";

/// What every request handler shares.
pub struct Site {
    /// The served directory.
    pub root: Root,
    /// The access log, if enabled.
    pub log: Option<Arc<AccessLog>>,
}

/// A response before its body exists (the body takes the log entry).
struct Plan {
    status: StatusCode,
    headers: HeaderMap,
    parts: Vec<Part>,
    file: Option<Arc<File>>,
}

impl Plan {
    fn text(status: StatusCode, text: &'static str) -> Plan {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        Plan {
            status,
            headers,
            parts: vec![Part::Bytes(Bytes::from_static(text.as_bytes()))],
            file: None,
        }
    }
}

/// Answers one request. Never fails: every problem is a status code.
pub async fn respond<B>(
    site: Arc<Site>,
    client: SocketAddr,
    req: Request<B>,
) -> Response<ServeBody> {
    let mut entry = site
        .log
        .as_ref()
        .map(|log| LogEntry::new(log.clone(), client, req.method().as_str(), req.uri().path()));
    let plan = plan(&site, &req).await;
    if let Some(entry) = entry.as_mut() {
        entry.set_status(plan.status.as_u16());
    }
    let Plan {
        status,
        mut headers,
        parts,
        file,
    } = plan;
    let body = ServeBody::new(parts, file, None);
    if status != StatusCode::NOT_MODIFIED {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let body = if req.method() == Method::HEAD {
        drop(body);
        ServeBody::empty(entry)
    } else {
        body.with_log(entry)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

async fn plan<B>(site: &Arc<Site>, req: &Request<B>) -> Plan {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut plan = Plan::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        plan.headers
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return plan;
    }
    let Ok(rel) = relative_path(req.uri().path()) else {
        return Plan::text(StatusCode::BAD_REQUEST, "bad path\n");
    };
    let opener = site.clone();
    match tokio::task::spawn_blocking(move || opener.root.open_file(&rel)).await {
        Ok(Ok(Some(file))) => file_plan(req.headers(), file),
        Ok(Ok(None)) => Plan::text(StatusCode::NOT_FOUND, "not found\n"),
        Ok(Err(_)) | Err(_) => Plan::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    }
}

fn file_plan(req: &HeaderMap, file: OpenFile) -> Plan {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(file.modified)) {
        headers.insert(header::LAST_MODIFIED, date);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if not_modified(req, &file) {
        return Plan {
            status: StatusCode::NOT_MODIFIED,
            headers,
            parts: Vec::new(),
            file: None,
        };
    }
    let size = file.size;
    let ranges = match req.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) if if_range_holds(req, &file) => range::parse(value, size),
        _ => RangeRequest::Full,
    };
    let file_handle = Some(Arc::new(file.file));
    match ranges {
        RangeRequest::Full => whole(headers, size, file_handle),
        RangeRequest::Unsatisfiable => {
            let mut plan = Plan::text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            plan.headers.extend(headers);
            plan.headers.insert(
                header::CONTENT_RANGE,
                ascii_value(format!("bytes */{size}")),
            );
            plan
        }
        RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
            headers.insert(header::CONTENT_RANGE, content_range(r, size));
            Plan {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                parts: vec![Part::File {
                    offset: r.start,
                    len: r.len(),
                }],
                file: file_handle,
            }
        }
        RangeRequest::Ranges(ranges) => {
            let boundary = format!("{:016x}", RandomState::new().hash_one(SystemTime::now()));
            let parts = multipart(&ranges, size, &boundary);
            // The merged ranges hold each byte once, but many small parts can still cost
            // more in framing than the file: then the whole file is the shorter answer, and
            // ignoring Range is always allowed (RFC 9110 §14.2). No response is longer than
            // the 200.
            if parts.iter().map(Part::len).sum::<u64>() > size {
                return whole(headers, size, file_handle);
            }
            headers.insert(
                header::CONTENT_TYPE,
                ascii_value(format!("multipart/byteranges; boundary={boundary}")),
            );
            Plan {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                parts,
                file: file_handle,
            }
        }
    }
}

/// The whole file, 200.
fn whole(mut headers: HeaderMap, size: u64, file: Option<Arc<File>>) -> Plan {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
    Plan {
        status: StatusCode::OK,
        headers,
        parts: vec![Part::File {
            offset: 0,
            len: size,
        }],
        file,
    }
}

fn content_range(r: ByteRange, size: u64) -> HeaderValue {
    ascii_value(format!("bytes {}-{}/{size}", r.start, r.end))
}

/// Header values built from numbers and our own tokens are always valid.
fn ascii_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Lays out a `multipart/byteranges` body (RFC 9110 §14.6).
fn multipart(ranges: &[ByteRange], size: u64, boundary: &str) -> Vec<Part> {
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    for r in ranges {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {OCTET_STREAM}\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
            r.start, r.end
        );
        parts.push(Part::Bytes(Bytes::from(head)));
        parts.push(Part::File {
            offset: r.start,
            len: r.len(),
        });
    }
    parts.push(Part::Bytes(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    parts
}

fn seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn header_str(req: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    req.get(name).and_then(|v| v.to_str().ok())
}

/// `If-None-Match` (weak comparison) wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(req: &HeaderMap, file: &OpenFile) -> bool {
    if let Some(list) = header_str(req, header::IF_NONE_MATCH) {
        let ours = file.etag.trim_start_matches("W/");
        return list
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    if let Some(since) = header_str(req, header::IF_MODIFIED_SINCE) {
        if let Ok(since) = httpdate::parse_http_date(since) {
            return seconds(file.modified) <= seconds(since);
        }
    }
    false
}

/// `If-Range`: honour `Range` only if the client's copy is still current (strong ETag, or the
/// exact Last-Modified date).
fn if_range_holds(req: &HeaderMap, file: &OpenFile) -> bool {
    match header_str(req, header::IF_RANGE) {
        None => true,
        Some(v) if v.starts_with('"') => v == file.etag,
        Some(v) => httpdate::parse_http_date(v)
            .map(|date| seconds(date) == seconds(file.modified))
            .unwrap_or(false),
    }
}
