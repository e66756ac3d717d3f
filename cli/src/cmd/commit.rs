//! `update commit`: commit a directory, tarball or git tree to a branch.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use store::commit::{commit, BootableOptions, BootableReport, CommitOptions, EtcMove, Source};
use store::RefName;

use super::RepoArg;
use crate::format::parse_key_value;

const EXAMPLE: &str = "\
Examples:
  update commit --repo repo --branch os/stable --subject 'nightly' --version 1.2 rootfs/
  update commit --repo repo --branch os/stable --owner-uid 0 --owner-gid 0 rootfs.tar.zst
  update commit --repo repo --branch app git:../app:v1.0
  update commit --repo repo --branch os/stable --bootable debian-rootfs/

SOURCE is a directory, a tar archive (plain, gzip or zstd), or git:PATH[:REV].
The new commit's id is printed on stdout; a summary goes to stderr.

--bootable turns a stock root filesystem (debootstrap, mkosi, a container export)
into a tree `update deploy` boots, without copying it: /etc becomes /usr/etc, the
kernel and its initramfs move to /usr/lib/modules/KVER/, /var and the writable
directories (/home, /root, /opt, /srv, /mnt, /media, /usr/local) become seed data
that systemd-tmpfiles creates at boot where a device lacks it (docs/device.md).";

/// Commit a tree to a branch.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The branch to move to the new commit (its current commit becomes the parent).
    #[arg(long, short)]
    branch: String,
    /// One-line subject.
    #[arg(long, short)]
    subject: Option<String>,
    /// Longer description.
    #[arg(long)]
    body: Option<String>,
    /// Version string, stored as the metadata key `version`.
    #[arg(long)]
    version: Option<String>,
    /// Extra metadata; repeatable.
    #[arg(long = "add-metadata", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    metadata: Vec<(String, String)>,
    /// Record this owner for every entry instead of the source's.
    #[arg(long, value_name = "UID")]
    owner_uid: Option<u32>,
    /// Record this group for every entry instead of the source's.
    #[arg(long, value_name = "GID")]
    owner_gid: Option<u32>,
    /// Sign the new commit with this secret key file.
    #[arg(long, value_name = "KEYFILE")]
    sign_with: Option<PathBuf>,
    /// Commit time in seconds since the epoch (for reproducible tests).
    #[arg(long, hide = true)]
    timestamp: Option<u64>,
    /// Reshape a stock root filesystem into a commit `update deploy` boots.
    #[arg(long)]
    bootable: bool,
    /// With --bootable: the kernel version to boot when the tree has several (the
    /// others' kernel files are dropped, their modules kept).
    #[arg(long, value_name = "KVER", requires = "bootable")]
    kernel: Option<String>,
    /// Directory, tar archive, or `git:PATH[:REV]`.
    source: String,
}

/// Run `update commit`.
pub fn run(args: Args, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let repo = args.repo.open()?;
    let branch = RefName::new(args.branch)?;
    let source = Source::parse(&args.source)?;
    // Load the key first: a bad key should fail before anything is written.
    let key = args
        .sign_with
        .as_deref()
        .map(store::sign::load_secret_key)
        .transpose()?;
    let opts = CommitOptions {
        branch: Some(branch),
        subject: args.subject,
        body: args.body,
        version: args.version,
        metadata: args.metadata,
        owner_uid: args.owner_uid,
        owner_gid: args.owner_gid,
        timestamp: args.timestamp,
        sign_with: key,
        bootable: args.bootable.then_some(BootableOptions {
            kernel: args.kernel,
        }),
        ..Default::default()
    };
    let outcome = commit(&repo, &source, &opts)?;
    writeln!(out, "{}", outcome.commit)?;
    if let Some(r) = &outcome.bootable {
        eprint!("{}", bootable_summary(r));
    }
    let s = outcome.stats;
    eprintln!(
        "{} files, {} dirs, {} symlinks, {} bytes; {} new objects{}",
        s.files,
        s.dirs,
        s.symlinks,
        s.bytes,
        s.objects_written,
        if opts.sign_with.is_some() {
            "; signed"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// What a bootable conversion did, a line each.
fn bootable_summary(r: &BootableReport) -> String {
    let mut out = format!(
        "bootable: kernel {} (from {}, initramfs from {}) in /usr/lib/modules/{}/\n",
        r.kver, r.kernel_from, r.initramfs_from, r.kver
    );
    if !r.kernels_dropped.is_empty() {
        out += &format!(
            "bootable: kernel files of {} dropped (modules kept)\n",
            r.kernels_dropped.join(", ")
        );
    }
    out += match r.etc {
        EtcMove::Moved => "bootable: /etc moved to /usr/etc\n",
        EtcMove::AlreadyInUsr => "bootable: /etc already in /usr/etc\n",
        EtcMove::Identical => "bootable: /etc identical to /usr/etc, dropped\n",
        EtcMove::Absent => "bootable: no /etc\n",
    };
    out += &format!(
        "bootable: {} /var entries seeded from /usr/share/factory ({} lines in /{})\n",
        r.var_entries,
        r.tmpfiles_lines,
        store::commit::TMPFILES_CONF
    );
    out += &format!(
        "bootable: {} device nodes and {} other entries of /dev, /proc, /sys, /run, /tmp dropped\n",
        r.dev_nodes_dropped, r.api_entries_dropped
    );
    if !r.boot_dropped.is_empty() {
        out += &format!("bootable: dropped {}\n", r.boot_dropped.join(", "));
    }
    let links: Vec<String> = r
        .symlinked
        .iter()
        .map(|(p, t)| format!("{p} -> {t}"))
        .collect();
    out += &format!("bootable: symlinked {}\n", links.join(", "));
    if !r.created.is_empty() {
        out += &format!("bootable: created {}\n", r.created.join(", "));
    }
    out
}
