//! Finding and running the `update` binary.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `update` binary under test: `CARGO_BIN_EXE_update`, which cargo sets when it runs an
/// integration test of `update-cli` after building that very binary, so the tests always run
/// the code they were built with. `$UPDATE_BIN` overrides it (to test an installed or
/// release binary). Panics with instructions anywhere else: end-to-end tests belong in
/// `cli/tests/`.
pub fn update_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (var, p) = match std::env::var_os("UPDATE_BIN") {
            Some(p) => ("UPDATE_BIN", p),
            None => match std::env::var_os("CARGO_BIN_EXE_update") {
                Some(p) => ("CARGO_BIN_EXE_update", p),
                None => panic!(
                    "no `update` binary: CARGO_BIN_EXE_update is set only for the integration \
                     tests of update-cli (put end-to-end tests in cli/tests/), or point \
                     UPDATE_BIN at one"
                ),
            },
        };
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{var}={} is not a file", p.display());
        p
    })
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
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

/// `update key generate --output OUTPUT`, which must succeed: the secret key at `output`,
/// the public key beside it at `OUTPUT.pub`.
pub fn key_generate(output: &Path) {
    update([
        OsStr::new("key"),
        "generate".as_ref(),
        "--output".as_ref(),
        output.as_os_str(),
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
