//! Finding and running the `update` binary.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The `update` binary under test: `$UPDATE_BIN` if set, else whichever of
/// `<target>/release/update` and `<target>/debug/update` is newer, where `<target>` is
/// `$CARGO_TARGET_DIR` or the workspace's `target/`. Panics with instructions if there is
/// none: `cargo test -p update-tests` does not build the CLI by itself.
pub fn update_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("UPDATE_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "UPDATE_BIN={} is not a file", p.display());
            return p;
        }
        let workspace = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|t| workspace.join(t))
            .unwrap_or_else(|| workspace.join("target"));
        let newest = ["release", "debug"]
            .iter()
            .map(|profile| target.join(profile).join("update"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .max();
        let Some((built, bin)) = newest else {
            panic!(
                "no `update` binary under {}: build it first with `cargo build -p update-cli` \
                 (or point UPDATE_BIN at one)",
                target.display()
            );
        };
        warn_if_stale(&workspace, built, &bin);
        bin
    })
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn warn_if_stale(workspace: &Path, built: SystemTime, bin: &Path) {
    let mut newest_src = None;
    let mut stack = vec![workspace.join("cli/src"), workspace.join("store/src")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                if newest_src.is_none_or(|n| m > n) {
                    newest_src = Some(m);
                }
            }
        }
    }
    if newest_src.is_some_and(|src| src > built) {
        eprintln!(
            "warning: {} is older than the sources in cli/src or store/src; \
             run `cargo build -p update-cli` to test the current code",
            bin.display()
        );
    }
}

/// What one run of a command did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for messages.
    pub cmdline: String,
    /// How it ended (`None` when it was killed at its deadline).
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// How long it took.
    pub elapsed: Duration,
}

impl Run {
    /// The exit code, if it exited (not killed by a signal or the deadline).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        let how = match self.status {
            None => format!("did not finish within {:?}, killed", self.elapsed),
            Some(s) => format!("{s} after {:?}", self.elapsed),
        };
        format!(
            "$ {}\n{how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }

    /// Panic unless it exited 0; returns self for chaining.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code(),
            Some(0),
            "expected success\n{}",
            self.describe()
        );
        self
    }

    /// Panic unless it exited with `code`.
    #[track_caller]
    pub fn exit_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    /// The trimmed standard output.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 6000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... [{} more bytes]", &s[..cut], s.len() - cut)
}

/// Run `update` with `args` and wait for it (at most 120 s).
pub fn update<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    update_with_deadline(args, Duration::from_secs(120))
}

/// Run `update` with `args`, killing it if it has not finished after `deadline`.
pub fn update_with_deadline<I, S>(args: I, deadline: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(update_bin());
    cmd.args(args);
    run_command(cmd, deadline)
}

/// Run any command with a deadline, capturing its output.
pub fn run_command(mut cmd: Command, deadline: Duration) -> Run {
    let cmdline = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1");
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped");
    let mut err_pipe = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Run {
        cmdline,
        status,
        stdout,
        stderr,
        elapsed,
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `update init --repo REPO --mode MODE`, which must succeed.
pub fn init(repo: &Path, mode: &str) {
    update([
        OsStr::new("init"),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--mode".as_ref(),
        mode.as_ref(),
    ])
    .success();
}

/// `update commit --repo REPO --branch BRANCH [extra...] SOURCE`, which must succeed;
/// returns the commit id it printed.
pub fn commit(repo: &Path, branch: &str, source: &OsStr, extra: &[&str]) -> String {
    let run = try_commit(repo, branch, source, extra);
    run.success();
    let id = run.out().to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "commit should print the commit id on stdout\n{}",
        run.describe()
    );
    id
}

/// `update commit ...`, whatever its outcome.
pub fn try_commit(repo: &Path, branch: &str, source: &OsStr, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "commit".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--branch".as_ref(),
        branch.as_ref(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    args.push(source);
    update(args)
}

/// `update checkout --repo REPO COMMIT DEST [extra...]`, whatever its outcome.
pub fn checkout(repo: &Path, commit: &str, dest: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "checkout".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        commit.as_ref(),
        dest.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    update(args)
}

/// `update fsck --repo REPO`, whatever its outcome.
pub fn fsck(repo: &Path) -> Run {
    update(["fsck".as_ref(), "--repo".as_ref(), repo.as_os_str()])
}
