//! What the strace kill tests (`crash.rs`, `deploy_crash.rs`) share: copying a prepared
//! tree for each kill, and the verdict over all kills.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::run_command;

/// `cp -a FROM TO`: a fresh copy of a prepared repository or sysroot, hardlinks kept.
pub fn copy_tree(from: &Path, to: &Path) {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    let run = run_command(cmd, Duration::from_secs(60));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
}

/// Print the tally and fail if fault injection hardly ever fired (half the runs must have
/// been killed) or if any kill left a broken state. `label` prefixes the lines ("bare: ").
pub fn verdict(label: &str, runs: usize, killed: usize, failures: &[String], start: Instant) {
    eprintln!(
        "{label}{runs} runs, {killed} killed, {} failures, {:?}",
        failures.len(),
        start.elapsed()
    );
    assert!(
        killed * 2 >= runs,
        "{label}only {killed} of {runs} runs were killed: is strace fault injection working?"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
