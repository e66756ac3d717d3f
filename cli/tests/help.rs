//! Every command documents itself (issue 5 item 8): `update ... --help` shows an example,
//! `update generate man` writes a valid page for each command and subcommand, and
//! `update generate completions` produces a script for every shell.
//!
//! The commands are discovered from the binary itself (the `Commands:` list of each
//! `--help`, recursively; hidden commands are not listed), so a new command is covered
//! without touching this file.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use testkit::cli::{self, Run};

/// Shells `update generate completions` supports, and the file `--output` writes for each.
const SHELLS: [(&str, &str); 5] = [
    ("bash", "update.bash"),
    ("zsh", "_update"),
    ("fish", "update.fish"),
    ("elvish", "update.elv"),
    ("powershell", "_update.ps1"),
];

/// `update PATH... --help`, which must succeed.
fn help(path: &[String]) -> Run {
    let run = cli::update(path.iter().map(String::as_str).chain(["--help"]));
    run.success();
    run
}

/// The subcommand names listed under `Commands:` in a help text, without clap's `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    let Some((_, rest)) = help.split_once("\nCommands:\n") else {
        return Vec::new();
    };
    rest.lines()
        .take_while(|l| !l.trim().is_empty())
        // A name sits at a two-space indent; anything deeper is a wrapped description.
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path, the root (`[]`) first, each with its `--help` output.
fn all_commands() -> Vec<(Vec<String>, Run)> {
    let mut found = Vec::new();
    let mut queue = vec![Vec::new()];
    while let Some(path) = queue.pop() {
        let run = help(&path);
        for sub in listed_subcommands(&run.stdout) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        found.push((path, run));
    }
    found
}

fn display(path: &[String]) -> String {
    ["update"]
        .into_iter()
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `prog` is on $PATH.
fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
}

fn run(prog: &str, args: &[&OsStr]) -> Run {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "100");
    cli::run_command(cmd, Duration::from_secs(60))
}

#[test]
fn discovery_finds_nested_commands() {
    // Guards the parser above: if clap's help layout changed, the walk would silently find
    // nothing and every other test here would pass vacuously.
    let paths: BTreeSet<String> = all_commands().iter().map(|(p, _)| display(p)).collect();
    for expected in [
        "update",
        "update init",
        "update remote add",
        "update generate man",
    ] {
        assert!(
            paths.contains(expected),
            "`{expected}` not discovered; found {paths:#?}"
        );
    }
    assert!(
        !paths.contains("update help"),
        "clap's `help` is not a command"
    );
}

#[test]
fn every_help_shows_an_example() {
    let missing: Vec<String> = all_commands()
        .into_iter()
        .filter(|(_, run)| !run.stdout.contains("Example"))
        .map(|(path, _)| display(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "`--help` of these commands shows no example (add an `after_help` \"Examples:\" \
         block):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn man_pages_cover_every_command() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("man1");
    cli::update([OsStr::new("generate"), "man".as_ref(), dir.as_os_str()]).success();

    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = all_commands()
        .iter()
        .map(|(path, _)| format!("{}.1", display(path).replace(' ', "-")))
        .collect();
    assert_eq!(
        pages, expected,
        "one man page per command, none for hidden ones"
    );

    let man = have("man");
    let groff = have("groff");
    for (path, _) in all_commands() {
        let name = display(&path).replace(' ', "-");
        let file = dir.join(format!("{name}.1"));
        check_page(&file, &name, &display(&path));
        if groff {
            // -ww: all warnings; -z: parse and typeset for a terminal, print nothing.
            let r = run(
                "groff",
                &[
                    "-man".as_ref(),
                    "-Tutf8".as_ref(),
                    "-ww".as_ref(),
                    "-z".as_ref(),
                    file.as_os_str(),
                ],
            );
            r.success();
            assert!(
                r.stderr.is_empty(),
                "groff warns about {name}.1\n{}",
                r.describe()
            );
        }
        if man {
            let r = run("man", &["-l".as_ref(), file.as_os_str()]);
            r.success();
            assert!(
                r.stdout.contains("NAME") && r.stdout.contains("SYNOPSIS"),
                "man -l {name}.1 renders no NAME or SYNOPSIS\n{}",
                r.describe()
            );
        }
    }
}

/// A roff page: after clap_mangen's string definitions, `.TH NAME 1` comes first; the
/// synopsis names the command as typed and the examples are there.
fn check_page(file: &Path, name: &str, typed: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let first = text
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el ") && !l.starts_with(".\\\""))
        .unwrap_or_default();
    assert!(
        first.starts_with(&format!(".TH {name} 1")),
        "{} does not start with `.TH {name} 1`:\n{text}",
        file.display()
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
        assert!(text.contains(section), "{name}.1 has no {section}:\n{text}");
    }
    assert!(
        text.contains(&format!("\\fB{}\\fR", typed.replace('-', "\\-"))),
        "the synopsis of {name}.1 does not name `{typed}`:\n{text}"
    );
}

#[test]
fn completions_for_every_shell() {
    let tmp = TempDir::new().unwrap();
    let top: Vec<String> = listed_subcommands(&help(&[]).stdout);
    for (shell, file_name) in SHELLS {
        let printed = cli::update(["generate", "completions", shell]);
        printed.success();
        for cmd in &top {
            assert!(
                printed.stdout.contains(cmd.as_str()),
                "{shell} completions do not mention `{cmd}`"
            );
        }

        let dir = tmp.path().join(shell);
        let wrote = cli::update([
            OsStr::new("generate"),
            "completions".as_ref(),
            shell.as_ref(),
            "--output".as_ref(),
            dir.as_os_str(),
        ]);
        wrote.success();
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, [file_name], "{shell}: file written by --output");
        let script = dir.join(file_name);
        assert_eq!(
            std::fs::read_to_string(&script).unwrap(),
            printed.stdout,
            "{shell}: --output writes what stdout gets"
        );

        // Syntax-check with the shell itself where it is installed (bash always is).
        let check: &[&str] = match shell {
            "bash" => &["bash", "-n"],
            "zsh" => &["zsh", "-n"],
            "fish" => &["fish", "--no-execute"],
            _ => &[],
        };
        if let Some((prog, flags)) = check.split_first() {
            if *prog == "bash" || have(prog) {
                let mut args: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
                args.push(script.as_os_str());
                run(prog, &args).success();
            }
        }
    }
}

#[test]
fn bad_shell_is_a_usage_error() {
    let r = cli::update(["generate", "completions", "tcsh"]);
    r.exit_code(2);
    assert!(
        r.stderr.contains("possible values") && r.stderr.contains("bash"),
        "{}",
        r.describe()
    );
}
