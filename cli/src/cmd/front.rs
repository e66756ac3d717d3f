//! `update` with no subcommand (one update run) and `update agent` (runs on the schedule).

use std::io::Write;
use std::process::ExitCode;

use frontend::config::{Config, Overrides};
use frontend::run::{self, RunFlags, RunOutcome, SystemClock};
use frontend::Error;

use super::config::RootArg;

/// Exit status when no backend is installed.
pub const EXIT_NO_BACKEND: u8 = 3;

/// The options of `update` itself.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    root: RootArg,
    /// Use mutual TLS for this run (overrides the config).
    #[arg(long, value_name = "true|false")]
    secure: Option<String>,
    /// Require signatures for this run (overrides the config; false is dangerous).
    #[arg(long, value_name = "true|false")]
    verify: Option<String>,
    /// Take updates from this URL for this run (overrides the config).
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Run now instead of waiting for the next scheduled window.
    #[arg(long)]
    now: bool,
    /// Do not reboot after deploying.
    #[arg(long)]
    noreboot: bool,
}

/// Check for and apply updates on the schedule, in the foreground.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  update agent                 (on systems without systemd: the update.timer loop)
  update agent --noreboot

Waits for each window of `update config schedule`, plus a random delay, then does what
`update --now` does; logs every attempt. Stops after a run that reboots.")]
pub struct AgentArgs {
    #[command(flatten)]
    root: RootArg,
    /// Do not reboot after deploying.
    #[arg(long)]
    noreboot: bool,
    /// Stop after this many runs (for tests).
    #[arg(long, hide = true)]
    max_runs: Option<u64>,
}

fn settings(root: &RootArg, a: Option<&RunArgs>) -> anyhow::Result<frontend::backend::Settings> {
    let overrides = a.map_or_else(Overrides::default, |a| Overrides {
        secure: a.secure.clone(),
        verify: a.verify.clone(),
        source: a.source.clone(),
    });
    let c = Config::load(&root.root)?.with_overrides(&overrides)?;
    if !c.verify {
        eprintln!("WARNING: signature verification is OFF for this run: an update no trusted key vouches for can be installed. The audit log records it.");
    }
    Ok(run::settings(&root.root, c))
}

fn finish(r: frontend::Result<RunOutcome>, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match r {
        Ok(RunOutcome::NothingToDo) => writeln!(
            out,
            "nothing to do: the system runs (or boots next) what the source offers"
        )?,
        Ok(RunOutcome::Updated { rebooted: true }) => writeln!(out, "updated; rebooting")?,
        Ok(RunOutcome::Updated { rebooted: false }) => {
            writeln!(out, "updated; the new version boots at the next reboot")?
        }
        Err(Error::NoBackend) => {
            eprintln!("{}", Error::NoBackend);
            return Ok(ExitCode::from(EXIT_NO_BACKEND));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `update` with no subcommand.
pub fn run(a: RunArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let s = settings(&a.root, Some(&a))?;
    let flags = RunFlags {
        noreboot: a.noreboot,
    };
    let mut clock = SystemClock;
    if !a.now {
        if let Err(Error::NoBackend) = frontend::backend::select(&s) {
            run::log_no_backend();
            return finish(Err(Error::NoBackend), out);
        }
        let t = run::next_start(&s, &mut clock)?;
        writeln!(
            out,
            "waiting for the next window: {} (use --now to run at once)",
            frontend::audit::rfc3339(t)
        )?;
        out.flush()?;
        frontend::run::Clock::sleep_until(&mut clock, t);
    }
    finish(run::run_once(&s, &flags, &clock), out)
}

/// Run `update agent`.
pub fn agent(a: AgentArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let s = settings(&a.root, None)?;
    if let Err(Error::NoBackend) = frontend::backend::select(&s) {
        run::log_no_backend();
        return finish(Err(Error::NoBackend), out);
    }
    let flags = RunFlags {
        noreboot: a.noreboot,
    };
    let mut clock = SystemClock;
    let r = run::agent(&s, &flags, &mut clock, a.max_runs, |t, r| {
        let when = frontend::audit::rfc3339(t);
        match r {
            Ok(o) => eprintln!("{when}: {o:?}"),
            Err(e) => eprintln!("{when}: error: {}", error_ext::Chain(e)),
        }
    });
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Error::NoBackend) => finish(Err(Error::NoBackend), out),
        Err(e) => Err(e.into()),
    }
}
