//! Running `ostree` with a deadline, keeping what it said for error messages.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Deadline for `ostree pull` (a whole OS tree over a slow link).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Deadline for everything else (status, remote edits, deploy).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How much of a failed command's stderr goes into the error text.
const STDERR_TAIL: usize = 2000;

/// The `ostree` executable: `$UPDATE_OSTREE_BIN` if set (tests, odd installs), else `ostree`
/// from `PATH`.
fn ostree_bin() -> OsString {
    std::env::var_os("UPDATE_OSTREE_BIN").unwrap_or_else(|| "ostree".into())
}

/// What a finished `ostree` run printed.
#[derive(Debug)]
pub struct Output {
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// One `ostree` invocation.
#[derive(Debug, Clone)]
pub struct Ostree {
    args: Vec<OsString>,
    timeout: Duration,
}

impl Ostree {
    /// `ostree ARGS...` with the default deadline.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Ostree {
            args: args.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Replaces the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The command line as a user would type it, for error messages.
    pub fn display(&self) -> String {
        let mut line = ostree_bin().to_string_lossy().into_owned();
        for a in &self.args {
            let a = a.to_string_lossy();
            line.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                line.push('\'');
                line.push_str(&a.replace('\'', r"'\''"));
                line.push('\'');
            } else {
                line.push_str(&a);
            }
        }
        line
    }

    /// Runs it; an error unless it exits 0 within the deadline. The error names the command
    /// line and ends with the tail of its stderr.
    pub fn run(&self) -> Result<Output> {
        let (status, out) = self.run_unchecked()?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}){}",
                self.display(),
                stderr_tail(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Runs it and returns its exit status whatever it is (still an error on timeout or
    /// when it cannot start).
    pub fn run_unchecked(&self) -> Result<(std::process::ExitStatus, Output)> {
        let mut child = Command::new(ostree_bin())
            .args(&self.args)
            // Untranslated messages to parse; UTF-8 so paths and g_format_size's no-break
            // space survive (plain C turns them into '?').
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run `{}` (is the ostree package installed?)",
                    self.display()
                )
            })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = wait_until(&mut child, Instant::now() + self.timeout);
        let out = Output {
            stdout: join(stdout),
            stderr: join(stderr),
        };
        match status? {
            Some(status) => Ok((status, out)),
            None => bail!(
                "`{}` did not finish within {} s and was killed{}",
                self.display(),
                self.timeout.as_secs(),
                stderr_tail(&out.stderr)
            ),
        }
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    Some(thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture; the exit status tells the story.
        let _ = pipe.read_to_end(&mut buf);
        buf
    }))
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> String {
    let bytes = handle.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Polls the child until it exits (`Some`) or the deadline passes (killed, `None`).
fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<std::process::ExitStatus>> {
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait().context("waiting for ostree")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // Already-exited races are fine: kill then reap either way.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `": <last lines of stderr>"`, or nothing when stderr was empty.
fn stderr_tail(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let mut start = trimmed.len().saturating_sub(STDERR_TAIL);
    while !trimmed.is_char_boundary(start) {
        start += 1;
    }
    let ellipsis = if start > 0 { "..." } else { "" };
    format!(": {ellipsis}{}", &trimmed[start..])
}

#[cfg(test)]
mod tests {
    use super::{stderr_tail, Ostree};

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let cmd = Ostree::new(["remote", "add", "a b", "it's"]);
        assert!(cmd.display().ends_with(" remote add 'a b' 'it'\\''s'"));
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        assert_eq!(stderr_tail("  \n"), "");
        assert_eq!(stderr_tail("error: x\n"), ": error: x");
        let long = format!("{}END", "a".repeat(5000));
        let tail = stderr_tail(&long);
        assert!(tail.starts_with(": ...") && tail.ends_with("END"));
    }
}
