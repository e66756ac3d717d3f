//! `update`: the command-line front end of the update system.
//!
//! This crate only parses arguments and prints results; every operation lives in a
//! library crate: `store` (repositories, commit, checkout, signing, remotes), `transport`
//! (publish, pull, mirror), `fetch` (the HTTP(S)/file client), `repo-server` (serve),
//! `deploy` (sysroots, deployments, boot entries) and `frontend` (config, the update run
//! and agent, backends). Each subcommand is one
//! module under `cmd/` (`cmd::boot` holds mark-good, rollback, pin and unpin).
//!
//! Features: `device` builds what a device runs (the front end, pull, deploy, the boot
//! commands, status, prepare-root, ...); `builder` (the default) adds init, commit, key,
//! sign, checkout, publish, serve and mirror, and with them `repo-server`.

#[cfg(not(feature = "device"))]
compile_error!("update-cli needs the `device` or the `builder` feature (see cli/Cargo.toml)");

mod cmd;
mod diagnostics;
mod format;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  error (the message on stderr says what and where)
  2  usage error (bad arguments)
  3  no update backend is installed (`update` and `update agent`)

Examples:
  update --now                  check, pull, deploy and reboot, now
  update --now --noreboot       the same, without the reboot
  update                        the same, at the next window of `update config schedule`

Repository commands take --repo DIR (or $UPDATE_REPO); deploy commands --sysroot DIR;
the front end (update, config, agent) --root DIR (default /).";

/// Keep Linux devices current over the air: a content-addressed store of signed OS trees.
#[derive(Parser, Debug)]
#[command(name = "update", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cmd::front::RunArgs,
    /// Log to stderr: -v each step, -vv each request and fsync, -vvv everything.
    /// RUST_LOG (e.g. `fetch=debug`) adds to it and wins where both name a crate.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[cfg(feature = "builder")]
    Init(cmd::init::Args),
    #[cfg(feature = "builder")]
    Commit(cmd::commit::Args),
    #[cfg(feature = "builder")]
    #[command(
        subcommand,
        after_help = "Examples:\n  update key generate --output release.key      (also writes release.key.pub)"
    )]
    Key(cmd::key::KeyCommand),
    #[cfg(feature = "builder")]
    Sign(cmd::sign::Args),
    Verify(cmd::verify::Args),
    Log(cmd::log::Args),
    Show(cmd::show::Args),
    Ls(cmd::ls::Args),
    Diff(cmd::diff::Args),
    Refs(cmd::refs::Args),
    #[cfg(feature = "builder")]
    Checkout(cmd::checkout::Args),
    Fsck(cmd::fsck::Args),
    Prune(cmd::prune::Args),
    #[cfg(feature = "builder")]
    Publish(cmd::publish::Args),
    #[cfg(feature = "builder")]
    Serve(cmd::serve::Args),
    #[command(
        subcommand,
        after_help = "Examples:\n  update remote add --repo D origin https://updates.example.com/os --key release.key.pub\n  update remote list --repo D\n  update remote remove --repo D origin"
    )]
    Remote(cmd::remote::RemoteCommand),
    Pull(cmd::pull::Args),
    #[cfg(feature = "builder")]
    Mirror(cmd::mirror::Args),
    #[command(
        subcommand,
        after_help = "Examples:\n  update sysroot init --sysroot /mnt/root --os debian --esp /mnt/root/efi --karg root=/dev/vda2"
    )]
    Sysroot(cmd::sysroot::SysrootCommand),
    /// Install a commit onto a new device: a disk, an image file, or mounted filesystems.
    #[cfg(feature = "builder")]
    #[command(
        subcommand,
        after_help = "Examples:\n  update install to-disk disk.img --size 4G --repo R --ref os/stable --key release=release.pub --source https://updates.example.com/repo\n  update install to-filesystem /mnt/root --esp /mnt/esp --repo R --ref os/stable --key release=release.pub"
    )]
    Install(cmd::install::InstallCommand),
    Deploy(cmd::deploy::Args),
    Status(cmd::status::Args),
    Finalize(cmd::finalize::Args),
    MarkGood(cmd::boot::MarkGoodArgs),
    Rollback(cmd::boot::RollbackArgs),
    /// Keep a deployment whatever cleanup decides.
    Pin(cmd::boot::PinArgs),
    /// Let cleanup remove a deployment again.
    Unpin(cmd::boot::PinArgs),
    PrepareRoot(cmd::prepare_root::Args),
    Generate(cmd::generate::Args),
    Config(cmd::config::Args),
    Agent(cmd::front::AgentArgs),
}

fn run(command: Command, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match command {
        #[cfg(feature = "builder")]
        Command::Init(a) => cmd::init::run(a, out),
        #[cfg(feature = "builder")]
        Command::Commit(a) => cmd::commit::run(a, out),
        #[cfg(feature = "builder")]
        Command::Key(a) => cmd::key::run(a, out),
        #[cfg(feature = "builder")]
        Command::Sign(a) => cmd::sign::run(a, out),
        Command::Verify(a) => cmd::verify::run(a, out),
        Command::Log(a) => cmd::log::run(a, out),
        Command::Show(a) => cmd::show::run(a, out),
        Command::Ls(a) => cmd::ls::run(a, out),
        Command::Diff(a) => cmd::diff::run(a, out),
        Command::Refs(a) => cmd::refs::run(a, out),
        #[cfg(feature = "builder")]
        Command::Checkout(a) => cmd::checkout::run(a, out),
        Command::Fsck(a) => cmd::fsck::run(a, out),
        Command::Prune(a) => cmd::prune::run(a, out),
        #[cfg(feature = "builder")]
        Command::Publish(a) => cmd::publish::run(a, out),
        #[cfg(feature = "builder")]
        Command::Serve(a) => cmd::serve::run(a, out),
        Command::Remote(a) => cmd::remote::run(a, out),
        Command::Pull(a) => cmd::pull::run(a, out),
        #[cfg(feature = "builder")]
        Command::Mirror(a) => cmd::mirror::run(a, out),
        Command::Sysroot(a) => cmd::sysroot::run(a, out),
        #[cfg(feature = "builder")]
        Command::Install(a) => cmd::install::run(a, out),
        Command::Deploy(a) => cmd::deploy::run(a, out),
        Command::Status(a) => cmd::status::run(a, out),
        Command::Finalize(a) => cmd::finalize::run(a, out),
        Command::MarkGood(a) => cmd::boot::mark_good(a, out),
        Command::Rollback(a) => cmd::boot::rollback(a, out),
        Command::Pin(a) => cmd::boot::pin(a, true, out),
        Command::Unpin(a) => cmd::boot::pin(a, false, out),
        Command::PrepareRoot(a) => cmd::prepare_root::run(a, out),
        Command::Config(a) => cmd::config::run(a, out),
        Command::Agent(a) => cmd::front::agent(a, out),
        Command::Generate(a) => {
            cmd::generate::run(a, <Cli as clap::CommandFactory>::command(), out)
        }
    }
}

/// Parse the command line. The options of `update` itself (`--now`, ...) conflict with a
/// subcommand; the global `-v` goes anywhere. (clap's `args_conflicts_with_subcommands`
/// would refuse `update -v pull` too, so the conflict is checked here.)
fn parse() -> Result<Cli, clap::Error> {
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((name, _)) = matches.subcommand() {
        // A subcommand's own global option of the same name (`config --root`) shows up
        // here too: only options `update` alone has can conflict.
        let mut sub_globals = Vec::new();
        if let Some(sub) = command.find_subcommand(name) {
            globals_below(sub, &mut sub_globals);
        }
        let given: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_global_set() && !sub_globals.contains(a.get_id()))
            .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
            .map(ToString::to_string)
            .collect();
        if !given.is_empty() {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "the subcommand '{name}' cannot be used with '{}'",
                    given.join("', '")
                ),
            ));
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// The ids of the global options of `command` and of its subcommands, recursively.
fn globals_below(command: &clap::Command, ids: &mut Vec<clap::Id>) {
    ids.extend(
        command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().clone()),
    );
    for sub in command.get_subcommands() {
        globals_below(sub, ids);
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout and succeed; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    diagnostics::init(cli.verbose);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match cli.command {
        Some(c) => run(c, &mut out),
        None => cmd::front::run(cli.run, &mut out),
    }
    .and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever was printed before the error goes out first.
            let _ = out.flush();
            eprintln!("error: {}", error_ext::Chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// A reader that closed our stdout (`update log | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn every_command_shows_an_example() {
        let cmd = super::Cli::command();
        for sub in cmd.get_subcommands() {
            let leaves: Vec<_> = if sub.has_subcommands() {
                sub.get_subcommands().collect()
            } else {
                vec![sub]
            };
            for leaf in leaves {
                let help = leaf
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                assert!(
                    help.contains("update "),
                    "{} has no example",
                    leaf.get_name()
                );
            }
        }
    }
}
