//! `update` (no subcommand) and `update agent`: check → pull → deploy → reboot, each
//! attempt written to the audit log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::audit::{rfc3339, Log, Outcome, Record};
use crate::backend::{self, Backend, Settings};
use crate::error::{Error, Result};

/// Where reported failed boots are remembered, relative to the root, so each is logged once.
pub const REPORTED: &str = "var/lib/update/reported-rollbacks";

/// Time, as the agent sees it. Tests inject a fake one: no real waiting.
pub trait Clock {
    /// Seconds since the epoch.
    fn now(&self) -> u64;
    /// Wait until `t` (seconds since the epoch).
    fn sleep_until(&mut self, t: u64);
    /// A random number of seconds in `0..=max`.
    fn jitter(&mut self, max: u64) -> u64;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep_until(&mut self, t: u64) {
        while self.now() < t {
            std::thread::sleep(Duration::from_secs((t - self.now()).min(60)));
        }
    }

    fn jitter(&mut self, max: u64) -> u64 {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        if max == 0 {
            0
        } else {
            u64::from_le_bytes(b) % (max + 1)
        }
    }
}

/// How one run ended, for the exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// A new deployment boots next (and the reboot command ran unless `--noreboot`).
    Updated {
        /// Whether the reboot command ran.
        rebooted: bool,
    },
    /// Nothing to do.
    NothingToDo,
}

/// Flags of one run.
#[derive(Clone, Debug, Default)]
pub struct RunFlags {
    /// Skip the reboot.
    pub noreboot: bool,
}

/// The audit log of one run with `settings`.
pub fn audit_log(settings: &Settings) -> Log {
    Log::from_setting(&settings.config.log)
}

/// Log the "Not implemented" line to the default log (syslog); a log that cannot be
/// written is reported on stderr.
pub fn log_no_backend() {
    Log::from_setting(crate::config::SYSLOG).line(&Error::NoBackend.to_string(), true);
}

/// Failed boots logged so far: `(deployment id, commit)` per line of [`REPORTED`].
pub fn reported(root: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(root.join(REPORTED))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect()
}

/// Log failed boots not logged yet (each deployment once) to `log`.
pub fn report_rollbacks(
    b: &mut dyn Backend,
    s: &Settings,
    clock: &dyn Clock,
    log: &Log,
) -> Result<usize> {
    let failed = b.failed_boots(s)?;
    if failed.is_empty() {
        return Ok(0);
    }
    let path = s.root.join(REPORTED);
    let mut seen = reported(&s.root);
    let mut new = 0;
    for f in failed {
        if seen.iter().any(|(id, _)| *id == f.id) {
            continue;
        }
        log.record(&Record {
            time: rfc3339(clock.now()),
            backend: b.name(),
            from: Some(f.failed.clone()),
            to: f.running.clone(),
            signer: None,
            bytes_fetched: 0,
            duration_ms: 0,
            result: Outcome::Rollback,
            error: Some(f.reason.clone()),
            verify: s.config.verify,
            source: s.config.source.clone(),
            note: None,
        });
        seen.push((f.id.clone(), f.failed.commit.clone()));
        new += 1;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    let text: String = seen.iter().map(|(id, c)| format!("{id} {c}\n")).collect();
    let fd =
        store::durable::open_dir(path.parent().expect("has a parent")).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into(),
        })?;
    store::durable::write_atomic(
        std::os::fd::AsFd::as_fd(&fd),
        "reported-rollbacks",
        text.as_bytes(),
        0o644,
        &path,
    )?;
    Ok(new)
}

/// One attempt with the backend the settings call for: check, apply, reboot. Every
/// outcome, errors included, is one audit line.
pub fn run_once(s: &Settings, flags: &RunFlags, clock: &dyn Clock) -> Result<RunOutcome> {
    let mut b = match backend::select(s) {
        Ok(b) => b,
        Err(e) => {
            if matches!(e, Error::NoBackend) {
                log_no_backend();
            }
            return Err(e);
        }
    };
    run_with(b.as_mut(), s, flags, clock)
}

/// One attempt with backend `b`.
pub fn run_with(
    b: &mut dyn Backend,
    s: &Settings,
    flags: &RunFlags,
    clock: &dyn Clock,
) -> Result<RunOutcome> {
    let log = audit_log(s);
    // Rollbacks found at boot come first: they explain why the system runs what it runs.
    report_rollbacks(b, s, clock, &log)?;
    let start = Instant::now();
    let started = clock.now();
    let mut rec = Record {
        time: rfc3339(started),
        backend: b.name(),
        from: None,
        to: None,
        signer: None,
        bytes_fetched: 0,
        duration_ms: 0,
        result: Outcome::Error,
        error: None,
        verify: s.config.verify,
        source: s.config.source.clone(),
        note: None,
    };
    // What runs now, known locally even when the check fails.
    rec.from = b.current(s).ok().flatten();
    let result = (|| {
        let check = b.check(s)?;
        rec.from = check.current.clone().or(rec.from.clone());
        rec.to = check.available.clone();
        if !check.update_available {
            return Ok(RunOutcome::NothingToDo);
        }
        // A commit that already failed to boot is not deployed again (the firmware would
        // fall back again, and the device would loop); a newer one is.
        if let Some(a) = &check.available {
            if reported(&s.root).iter().any(|(_, c)| *c == a.commit) {
                rec.note = Some(format!(
                    "{} failed to boot before; waiting for a newer version",
                    a.commit
                ));
                return Ok(RunOutcome::NothingToDo);
            }
        }
        let applied = b.apply(s)?;
        rec.from = applied.from.clone();
        rec.to = Some(applied.to.clone());
        rec.signer = applied.signer.clone();
        rec.bytes_fetched = applied.bytes_fetched;
        Ok::<_, Error>(RunOutcome::Updated { rebooted: false })
    })();
    rec.duration_ms = start.elapsed().as_millis() as u64;
    match &result {
        Ok(RunOutcome::NothingToDo) => rec.result = Outcome::NothingToDo,
        Ok(RunOutcome::Updated { .. }) => rec.result = Outcome::Success,
        Err(e) => rec.error = Some(error_ext::Chain(&e).to_string()),
    }
    log.record(&rec);
    match result? {
        RunOutcome::Updated { .. } if !flags.noreboot => {
            reboot(&s.config.reboot_command)?;
            Ok(RunOutcome::Updated { rebooted: true })
        }
        other => Ok(other),
    }
}

/// Run the configured reboot command through `sh -c`.
pub fn reboot(command: &str) -> Result<()> {
    let st = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .status()
        .map_err(|source| Error::RebootSpawn {
            command: command.to_owned(),
            source,
        })?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::RebootFailed {
            command: command.to_owned(),
            status: st,
        })
    }
}

/// When the next run starts: the next window of the schedule plus a random delay.
pub fn next_start(s: &Settings, clock: &mut dyn Clock) -> Result<u64> {
    let sched = s.config.schedule.ok_or_else(|| {
        Error::invalid("schedule", "none is configured: pass --now, or set one with `update config schedule monthly|hourly|minute N`")
    })?;
    let window = sched.next_after(clock.now());
    Ok(window + clock.jitter(sched.max_delay_secs()))
}

/// `update agent`: wait for each window, run, repeat; `max_runs` bounds it (tests).
/// Errors of a run are logged and the loop goes on; only a missing backend or schedule
/// stops it, or a run that rebooted.
pub fn agent(
    s: &Settings,
    flags: &RunFlags,
    clock: &mut dyn Clock,
    max_runs: Option<u64>,
    on_run: impl FnMut(u64, &Result<RunOutcome>),
) -> Result<()> {
    agent_with(
        &mut || backend::select(s),
        s,
        flags,
        clock,
        max_runs,
        on_run,
    )
}

/// [`agent`] with the backend chosen by `select` for each run.
pub fn agent_with(
    select: &mut dyn FnMut() -> Result<Box<dyn Backend>>,
    s: &Settings,
    flags: &RunFlags,
    clock: &mut dyn Clock,
    max_runs: Option<u64>,
    mut on_run: impl FnMut(u64, &Result<RunOutcome>),
) -> Result<()> {
    // Started at boot: a fallback the firmware just made is logged now, not hours later.
    if let Ok(mut b) = select() {
        if let Err(e) = report_rollbacks(b.as_mut(), s, clock, &audit_log(s)) {
            eprintln!(
                "warning: could not check for failed boots: {}",
                error_ext::Chain(&e)
            );
        }
    }
    let mut runs = 0;
    loop {
        if max_runs.is_some_and(|m| runs >= m) {
            return Ok(());
        }
        let t = next_start(s, clock)?;
        clock.sleep_until(t);
        let r = match select() {
            Ok(mut b) => run_with(b.as_mut(), s, flags, clock),
            Err(e) => {
                if matches!(e, Error::NoBackend) {
                    log_no_backend();
                }
                Err(e)
            }
        };
        runs += 1;
        on_run(t, &r);
        match r {
            Err(Error::NoBackend) => return Err(Error::NoBackend),
            Ok(RunOutcome::Updated { rebooted: true }) => return Ok(()),
            _ => {}
        }
    }
}

/// The settings for a run under `root`, with the `/proc/cmdline` override of tests.
pub fn settings(root: &Path, config: crate::config::Config) -> Settings {
    let proc_cmdline = std::env::var_os("UPDATE_PROC_CMDLINE")
        .map_or_else(|| PathBuf::from("/proc/cmdline"), PathBuf::from);
    Settings {
        root: root.to_path_buf(),
        config,
        proc_cmdline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Version;
    use crate::backend::{Applied, Check};
    use crate::config::Config;
    use crate::schedule::Schedule;

    /// A clock that never waits: it jumps to where it is told to sleep.
    struct FakeClock {
        now: u64,
        sleeps: Vec<u64>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> u64 {
            self.now
        }
        fn sleep_until(&mut self, t: u64) {
            self.sleeps.push(t);
            self.now = self.now.max(t);
        }
        fn jitter(&mut self, max: u64) -> u64 {
            max / 2
        }
    }

    /// A backend that offers a new version on every second check and fails on the third.
    struct FakeBackend {
        checks: std::rc::Rc<std::cell::Cell<u32>>,
    }

    fn v(c: &str) -> Version {
        Version {
            commit: c.into(),
            version: None,
        }
    }

    impl Backend for FakeBackend {
        fn name(&self) -> String {
            "fake".into()
        }
        fn check(&mut self, _s: &Settings) -> Result<Check> {
            self.checks.set(self.checks.get() + 1);
            match self.checks.get() {
                3 => Err(Error::Backend {
                    backend: "fake".into(),
                    reason: "network down".into(),
                }),
                n => Ok(Check {
                    current: Some(v("a")),
                    available: Some(v(if n % 2 == 0 { "b" } else { "a" })),
                    update_available: n % 2 == 0,
                }),
            }
        }
        fn apply(&mut self, _s: &Settings) -> Result<Applied> {
            Ok(Applied {
                from: Some(v("a")),
                to: v("b"),
                bytes_fetched: 10,
                signer: Some("k".into()),
            })
        }
        fn status(&mut self, _s: &Settings) -> Result<serde_json::Value> {
            Ok(serde_json::Value::Null)
        }
    }

    #[test]
    fn agent_waits_for_each_window_logs_every_run_and_stops_after_a_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let config = Config {
            schedule: Some(Schedule::parse("hourly", "6").unwrap()),
            log: log.display().to_string(),
            reboot_command: format!("touch {}", dir.path().join("rebooted").display()),
            ..Config::default()
        };
        let s = Settings {
            root: dir.path().to_path_buf(),
            config,
            proc_cmdline: dir.path().join("cmdline"),
        };
        // 2026-11-25 17:22:39 UTC: windows at 18:00, 00:00, 06:00, 12:00; the delay is half
        // of the largest (a tenth of 6 h).
        let mut clock = FakeClock {
            now: 1_795_627_359,
            sleeps: Vec::new(),
        };
        let checks = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut seen = Vec::new();
        let mut select = || -> Result<Box<dyn Backend>> {
            Ok(Box::new(FakeBackend {
                checks: checks.clone(),
            }))
        };
        // Noreboot: runs 1 (nothing), 2 (update), 3 (error), 4 (update), bounded by max_runs.
        agent_with(
            &mut select,
            &s,
            &RunFlags { noreboot: true },
            &mut clock,
            Some(4),
            |t, r| seen.push((t, r.is_ok())),
        )
        .unwrap();
        let day = 1_795_627_359 - 1_795_627_359 % 86_400;
        let windows: Vec<u64> = [18, 24, 30, 36]
            .iter()
            .map(|h| day + h * 3600 + 1080)
            .collect();
        assert_eq!(
            clock.sleeps, windows,
            "each run waits for its window plus the delay"
        );
        assert_eq!(
            seen.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(),
            [true, true, false, true]
        );
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let results: Vec<&str> = lines
            .iter()
            .map(|l| l["result"].as_str().unwrap())
            .collect();
        assert_eq!(results, ["nothing-to-do", "success", "error", "success"]);
        assert_eq!(lines[2]["error"], "backend fake: network down");
        assert!(!dir.path().join("rebooted").exists());

        // With reboots: the loop ends after the run that rebooted.
        let checks = std::rc::Rc::new(std::cell::Cell::new(1));
        let mut select = || -> Result<Box<dyn Backend>> {
            Ok(Box::new(FakeBackend {
                checks: checks.clone(),
            }))
        };
        agent_with(
            &mut select,
            &s,
            &RunFlags::default(),
            &mut clock,
            Some(10),
            |_, _| {},
        )
        .unwrap();
        assert!(dir.path().join("rebooted").exists());
    }

    #[test]
    fn no_schedule_is_a_clear_error() {
        let s = Settings {
            root: "/nonexistent".into(),
            config: Config::default(),
            proc_cmdline: "/nonexistent".into(),
        };
        let mut clock = FakeClock {
            now: 0,
            sleeps: Vec::new(),
        };
        let e = next_start(&s, &mut clock).unwrap_err().to_string();
        assert!(
            e.contains("--now") && e.contains("update config schedule"),
            "{e}"
        );
    }
}
