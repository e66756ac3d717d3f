//! `repo-server`: serves a published repository read-only over HTTP(S).
//!
//! Not built yet: Range requests, ETags, TLS and mutual TLS arrive with the transport
//! issue. This crate exists so the workspace has its final shape; it exports nothing.
