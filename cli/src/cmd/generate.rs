//! `update generate`: man pages and shell completions from the clap definitions.
//!
//! Both are rendered from the same `clap::Command` that parses the arguments, so they
//! cannot drift from the code: one man page per command and subcommand (`update.1`,
//! `update-remote-add.1`, ...), and a completion script per shell.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::{Generator, Shell};

/// The program name completions and pages are written for.
const BIN: &str = "update";

const EXAMPLE: &str = "\
Examples:
  update generate man /usr/local/share/man/man1
  update generate completions bash > /etc/bash_completion.d/update";

const MAN_EXAMPLE: &str = "\
Examples:
  update generate man /usr/local/share/man/man1
  update generate man target/man && man -l target/man/update-deploy.1

Writes one page per command and subcommand: update.1, update-deploy.1,
update-remote-add.1, ... DIR is created if missing; existing pages are replaced.";

const COMPLETIONS_EXAMPLE: &str = "\
Examples:
  update generate completions bash > /etc/bash_completion.d/update
  update generate completions zsh --output /usr/local/share/zsh/site-functions
  update generate completions fish --output ~/.config/fish/completions

With --output the script is written to DIR under the shell's conventional name
(update.bash, _update, update.fish, update.elv, _update.ps1); otherwise to stdout.";

/// Generate man pages or shell completions.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Write a man page for every command and subcommand into DIR.
    #[command(after_help = MAN_EXAMPLE)]
    Man {
        /// Where to write the pages (a man1 directory).
        dir: PathBuf,
    },
    /// Print the completion script for a shell.
    #[command(after_help = COMPLETIONS_EXAMPLE)]
    Completions {
        /// The shell to complete for.
        shell: Shell,
        /// Write the script into this directory instead of stdout.
        #[arg(long, short, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

/// Run `update generate`; `cli` is the whole `update` command definition.
pub fn run(a: Args, cli: clap::Command, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match a.what {
        What::Man { dir } => {
            let pages = man_pages(cli, &dir)?;
            writeln!(out, "wrote {} man pages to {}", pages.len(), dir.display())?;
        }
        What::Completions { shell, output } => {
            let script = completions(shell, cli)?;
            match output {
                None => out.write_all(&script)?,
                Some(dir) => {
                    let path = dir.join(shell.file_name(BIN));
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    std::fs::write(&path, &script)
                        .with_context(|| format!("writing {}", path.display()))?;
                    writeln!(out, "wrote {}", path.display())?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write a page for `cli` and each of its visible subcommands, recursively; returns the
/// paths written, parents before children.
fn man_pages(cli: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = format!("{BIN} {}", cli.get_version().unwrap_or_default());
    // `help` is clap's own and needs no page; building names the subcommands
    // `update-remote-add` (page and title) and `update remote add` (synopsis).
    let mut cli = cli.bin_name(BIN).disable_help_subcommand(true);
    cli.build();
    let mut written = Vec::new();
    let mut stack = vec![(cli, None::<String>)];
    while let Some((cmd, parent)) = stack.pop() {
        let name = cmd.get_display_name().unwrap_or(BIN).to_owned();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            stack.push((sub.clone(), Some(name.clone())));
        }
        let page = man_page(cmd, &source, parent.as_deref())?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, &page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// One page: clap_mangen's sections, except that the after-help text (examples, exit
/// status) gets sections of its own, kept as written instead of refilled, and a SEE ALSO
/// names the parent command's page.
fn man_page(cmd: clap::Command, source: &str, parent: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let extra = cmd.get_after_long_help().or(cmd.get_after_help());
    let extra = extra.map(ToString::to_string);
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let has_subs = cmd.get_subcommands().any(|s| !s.is_hide_set());
    let has_version = cmd.get_version().is_some();
    let man = clap_mangen::Man::new(cmd).source(source);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if has_args {
        man.render_options_section(&mut page)?;
    }
    if has_subs {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(text) = extra {
        page.extend_from_slice(after_help_sections(&text).as_bytes());
    }
    if has_version {
        man.render_version_section(&mut page)?;
    }
    if let Some(parent) = parent {
        writeln!(page, ".SH \"SEE ALSO\"\n\\fB{}\\fR(1)", roff_escape(parent))?;
    }
    Ok(ascii_roff(&String::from_utf8(page)?).into_bytes())
}

/// The after-help text as roff: a paragraph that opens with a heading line
/// ("Examples:", "Exit status:", "Examples (in an initramfs):") starts a section of that
/// name; everything is printed as written.
fn after_help_sections(text: &str) -> String {
    let mut roff = String::new();
    let mut open = false;
    for block in text.split("\n\n") {
        let (first, rest) = block.split_once('\n').unwrap_or((block, ""));
        let body = match section_name(first) {
            Some((name, detail)) => {
                if open {
                    roff.push_str(".fi\n");
                }
                roff.push_str(&format!(".SH \"{}\"\n.nf\n", name.to_uppercase()));
                open = true;
                // "Examples (in an initramfs):" keeps its qualification as a line.
                if detail {
                    block
                } else {
                    rest
                }
            }
            None => {
                if open {
                    roff.push('\n');
                } else {
                    roff.push_str(".SH NOTES\n.nf\n");
                    open = true;
                }
                block
            }
        };
        for line in body.lines() {
            roff.push_str(&roff_escape(line));
            roff.push('\n');
        }
    }
    if open {
        roff.push_str(".fi\n");
    }
    roff
}

/// The section a heading line names ("Exit status:" is "Exit status"), and whether it
/// says more than the name ("Examples (on a device):"); `None` for an ordinary line.
fn section_name(line: &str) -> Option<(&str, bool)> {
    let heading = line.strip_suffix(':').filter(|h| !h.starts_with(' '))?;
    let name = heading.split(" (").next().unwrap_or(heading).trim_end();
    let short = name.len() <= 30 && !name.contains([':', '.', '`']);
    short.then_some((name, name.len() < heading.len()))
}

/// The page in ASCII: troff reads bytes, so `●` becomes the escape `\\[u25CF]`, which
/// groff and mandoc render whatever the locale, without preconv.
fn ascii_roff(page: &str) -> String {
    page.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect()
}

/// Text safe in a roff body: backslashes and hyphens escaped, no line read as a request.
fn roff_escape(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The completion script for `shell`, in memory so a write error is an error, not a panic.
fn completions(shell: Shell, cli: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut cli = cli.bin_name(BIN);
    cli.build();
    let mut script = Vec::new();
    shell.try_generate(&cli, &mut script)?;
    Ok(script)
}
