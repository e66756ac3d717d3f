//! Shared test support for every crate of the workspace: the `update` binary under test,
//! test trees, repos, servers and a test PKI.
//!
//! - [`cli`] runs the `update` binary cargo built for this test run (`CARGO_BIN_EXE_update`,
//!   so end-to-end tests live in `cli/tests/`), capturing its output, optionally under a
//!   deadline.
//! - [`tree`] builds test trees on disk from a small text DSL (`f`, `l`, `d`, `h`, `x`
//!   lines) and prints a tree back as DSL, so a failing generated tree can be replayed.
//! - [`noise`] deterministic incompressible bytes from a seed (xorshift64).
//! - [`random`] generates deep and wide trees from a seed: odd names, sizes, modes, owners,
//!   hardlinks and xattrs.
//! - [`snapshot`] walks a tree into a comparable model (path, type, mode, owner, size,
//!   content hash, symlink target, xattrs, hardlink groups) and diffs two of them.
//! - [`raw`] writes hand-made objects straight into a repository, to build hostile repos.
//! - [`world`] a builder that commits, signs and publishes a tree, and devices with the
//!   remote `origin` added, for pull tests.
//! - [`nginx`] runs Debian's nginx on 127.0.0.1 serving a directory, with its own config,
//!   logs and temp paths in a temp dir, and parses its access log (method, path, status,
//!   bytes, Range).
//! - [`serve`] runs `update serve` on 127.0.0.1: plain, TLS or mutual TLS.
//! - [`certs`] makes a test PKI with rcgen: a CA, a server certificate for
//!   `localhost`/`127.0.0.1`, a client certificate, and an unrelated CA and client.
//!
//! CI runs the tests as root: owners, device nodes and `trusted.*`/`security.*` xattrs need
//! it. As a normal user, [`require_root!`] skips such a test with the reason printed, so
//! `cargo test` passes for a contributor without root (tests/README.md has the tiers).
#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

pub mod certs;
pub mod cli;
pub mod console;
pub mod deb;
pub mod device;
pub mod kill;
pub mod nginx;
pub mod noise;
pub mod random;
pub mod raw;
pub mod serve;
pub mod snapshot;
pub mod tree;
pub mod world;

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skip the calling test unless it runs as root: print `skipped: needs root (REASON)` and
/// return from the test. Put it first in the `#[test]` function itself (a `return` in a
/// helper would not end the test). `cargo test` as a normal user runs everything else;
/// CI runs the suite as root, so nothing is skipped there.
#[macro_export]
macro_rules! require_root {
    ($reason:expr) => {
        if !$crate::is_root() {
            $crate::skip("needs root", $reason);
            return;
        }
    };
}

/// Say on stderr, past the test harness's output capture (which would hide it for a test
/// that passes), that the running test was skipped: `TEST: skipped: WHAT (REASON)`.
pub fn skip(what: &str, reason: &str) {
    use std::io::Write;
    // The test harness names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {what} ({reason})");
}

/// Fail the calling test unless `tool` is on PATH, pointing at the script that installs it.
pub fn require_tool(tool: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        panic!("`{tool}` is not installed: run scripts/install-deps.sh (it installs {tool})");
    }
}
