//! The project's Debian package for tests that need it (cli/tests/package.rs, the device VM
//! test): `$UPDATE_DEB` when it names a file (scripts/test.sh builds the package once, before
//! `cargo test`), else built here by `scripts/build-deb.sh`, once per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::cli::{run_command, workspace_root};

/// The .deb to test.
///
/// # Panics
/// When `scripts/build-deb.sh` fails (with its output).
pub fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(p) = std::env::var_os("UPDATE_DEB").map(PathBuf::from) {
            assert!(p.is_file(), "UPDATE_DEB={} is not a file", p.display());
            return p;
        }
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        // A nested cargo build sees the environment cargo gives a test (CARGO_PKG_*, ...);
        // some build scripts rebuild when it differs. Keep only what a shell would pass.
        let mut cmd = Command::new(root.join("scripts/build-deb.sh"));
        cmd.arg(target.join("deb")).env_clear();
        for var in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "TMPDIR",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("CARGO_TARGET_DIR", &target);
        let run = run_command(cmd, Duration::from_secs(3600));
        run.success();
        let deb = PathBuf::from(run.stdout.lines().last().unwrap_or_default());
        assert!(
            deb.is_file(),
            "build-deb.sh did not print a .deb: {}",
            run.describe()
        );
        deb
    })
}
