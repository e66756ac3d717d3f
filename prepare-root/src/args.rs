//! The command line of `update-prepare-root`, parsed by hand: three options do not need
//! clap, which would be most of the binary.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Options;

/// The usage text (`--help`, and after a usage error).
pub const USAGE: &str = "\
Usage: update-prepare-root [--sysroot DIR] [--proc-cmdline FILE] [--dry-run]

Mount the deployment named by update.deployment=OS/COMMIT.SERIAL on the kernel command
line as the root to switch to: run in an initramfs after the physical root is mounted.

Options:
  --sysroot DIR          where the physical root is mounted (default /sysroot;
                         initramfs-tools: --sysroot \"$rootmnt\", which is /root)
  --proc-cmdline FILE    the kernel command line to read (default /proc/cmdline)
  --dry-run              only check and print what would be mounted
  -h, --help             print this help
  -V, --version          print the version

Example (initramfs-tools local-bottom script, or dracut pre-pivot hook):
  /usr/lib/update/update-prepare-root --sysroot \"$rootmnt\"

Exit status: 0 success, 1 error (one line on stderr), 2 usage error.
The same as `update prepare-root`; see docs/deploy.md, section 5.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Prepare the root (or print the plan, with `--dry-run`).
    Prepare(Options),
    /// Print the usage and succeed.
    Help,
    /// Print the version and succeed.
    Version,
}

/// A command line that cannot be understood; the message names the argument.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// An option or argument that is not one of ours.
    #[error("unexpected argument '{0}'")]
    Unexpected(String),
    /// An option that takes a value came last.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// An option given twice.
    #[error("{0} given twice")]
    Repeated(&'static str),
    /// An empty value (`--sysroot ""`).
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// Parse the arguments after the program name. `--opt VALUE` and `--opt=VALUE` both work.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Action, UsageError> {
    let mut opts = Options::default();
    let (mut sysroot, mut cmdline, mut dry_run) = (None, None, false);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = split_inline(&arg);
        let slot = match name.as_deref() {
            Some("-h" | "--help") if inline.is_none() => return Ok(Action::Help),
            Some("-V" | "--version") if inline.is_none() => return Ok(Action::Version),
            Some("--dry-run") if inline.is_none() => {
                if dry_run {
                    return Err(UsageError::Repeated("--dry-run"));
                }
                dry_run = true;
                continue;
            }
            Some("--sysroot") => (&mut sysroot, "--sysroot"),
            Some("--proc-cmdline") => (&mut cmdline, "--proc-cmdline"),
            _ => return Err(UsageError::Unexpected(arg.to_string_lossy().into_owned())),
        };
        let (value, flag) = slot;
        if value.is_some() {
            return Err(UsageError::Repeated(flag));
        }
        let v = match inline {
            Some(v) => v,
            None => args.next().ok_or(UsageError::MissingValue(flag))?,
        };
        if v.is_empty() {
            return Err(UsageError::Empty(flag));
        }
        *value = Some(PathBuf::from(v));
    }
    if let Some(s) = sysroot {
        opts.sysroot = s;
    }
    if let Some(c) = cmdline {
        opts.proc_cmdline = c;
    }
    opts.dry_run = dry_run;
    Ok(Action::Prepare(opts))
}

/// `--name=value` into its two halves; any other argument into its UTF-8 name (if it is
/// UTF-8) and no value. Values stay `OsString`: paths need not be UTF-8.
fn split_inline(arg: &OsString) -> (Option<String>, Option<OsString>) {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = arg.as_bytes();
    match bytes.iter().position(|&b| b == b'=') {
        Some(i) if bytes.starts_with(b"--") => (
            std::str::from_utf8(&bytes[..i]).ok().map(str::to_owned),
            Some(OsString::from_vec(bytes[i + 1..].to_vec())),
        ),
        _ => (arg.to_str().map(str::to_owned), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Action, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults_and_both_value_forms() {
        assert_eq!(p(&[]), Ok(Action::Prepare(Options::default())));
        let want = Options {
            sysroot: "/root".into(),
            proc_cmdline: "c.txt".into(),
            dry_run: true,
        };
        assert_eq!(
            p(&["--sysroot", "/root", "--dry-run", "--proc-cmdline", "c.txt"]),
            Ok(Action::Prepare(want.clone()))
        );
        assert_eq!(
            p(&["--dry-run", "--sysroot=/root", "--proc-cmdline=c.txt"]),
            Ok(Action::Prepare(want))
        );
        // A value may itself start with dashes or hold '='.
        assert_eq!(
            p(&["--sysroot", "--x=y"]),
            Ok(Action::Prepare(Options {
                sysroot: "--x=y".into(),
                ..Options::default()
            }))
        );
    }

    #[test]
    fn help_and_version_win_over_the_rest() {
        assert_eq!(p(&["--sysroot", "/r", "--help"]), Ok(Action::Help));
        assert_eq!(p(&["-h"]), Ok(Action::Help));
        assert_eq!(p(&["-V"]), Ok(Action::Version));
    }

    #[test]
    fn bad_command_lines_are_named() {
        let e = |a: &[&str]| p(a).unwrap_err().to_string();
        assert_eq!(e(&["--sysroot"]), "--sysroot needs a value");
        assert_eq!(e(&["--root", "/x"]), "unexpected argument '--root'");
        assert_eq!(e(&["/root"]), "unexpected argument '/root'");
        assert_eq!(e(&["--dry-run=yes"]), "unexpected argument '--dry-run=yes'");
        assert_eq!(e(&["--help=1"]), "unexpected argument '--help=1'");
        assert_eq!(
            e(&["--sysroot=/a", "--sysroot", "/b"]),
            "--sysroot given twice"
        );
        assert_eq!(e(&["--dry-run", "--dry-run"]), "--dry-run given twice");
        assert_eq!(e(&["--sysroot="]), "--sysroot must not be empty");
    }
}
