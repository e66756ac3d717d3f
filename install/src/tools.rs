//! The external tools that write filesystems and the partition table: `mkfs.ext4`,
//! `mkfs.vfat`, `mcopy` (mtools) and `sfdisk`. Each writes straight into the target at a
//! byte offset, so no partition image and no second copy of the tree is made.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Run `cmd` (feeding it `input` on stdin), failing with its stderr.
pub fn run(mut cmd: Command, input: Option<&str>) -> Result<()> {
    let tool = format!("{cmd:?}").replace('"', "");
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // mtools refuses images whose geometry it finds odd; the offset is ours.
    .env("MTOOLS_SKIP_CHECK", "1");
    let mut child = cmd.spawn().map_err(|source| Error::ToolMissing {
        tool: program,
        source,
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits early closes its stdin; its status says why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::ToolMissing {
            tool: tool.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Tool {
        tool,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// `mkfs.ext4 -d STAGE -U UUID -E offset=OFFSET DISK SIZE`: the root filesystem, filled
/// from the staged sysroot.
pub fn mkfs_ext4(disk: &Path, offset: u64, size: u64, uuid: &str, stage: &Path) -> Result<()> {
    let mut c = Command::new("mkfs.ext4");
    c.args(["-q", "-F", "-L", "root", "-U", uuid, "-E"])
        .arg(format!("offset={offset}"))
        .arg("-d")
        .arg(stage)
        .arg(disk)
        .arg(format!("{}k", size / 1024));
    run(c, None)
}

/// `mkfs.vfat -F 32 --offset SECTORS -i VOLID DISK SIZE`: the ESP.
pub fn mkfs_vfat(disk: &Path, offset: u64, size: u64, volid: &str) -> Result<()> {
    let mut c = Command::new("mkfs.vfat");
    c.args(["-F", "32", "-n", "ESP", "-i", volid])
        .arg(format!("--offset={}", offset / crate::layout::SECTOR))
        .arg(disk)
        .arg((size / 1024).to_string());
    run(c, None)
}

/// `mcopy -s -i DISK@@OFFSET ENTRY... ::/`: the staged ESP's top-level entries.
pub fn mcopy(disk: &Path, offset: u64, esp: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(esp)
        .map_err(|source| Error::Io {
            path: esp.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Ok(());
    }
    let mut c = Command::new("mcopy");
    c.args(["-s", "-Q", "-p", "-m", "-i"])
        .arg(format!("{}@@{offset}", disk.display()))
        .args(&entries)
        .arg("::/");
    run(c, None)
}

/// `sfdisk` with `script` on `disk`: the partition table, written last.
pub fn sfdisk(disk: &Path, script: &str) -> Result<()> {
    let mut c = Command::new("sfdisk");
    c.args([
        "--quiet",
        "--no-reread",
        "--no-tell-kernel",
        "--wipe",
        "never",
        "--wipe-partitions",
        "never",
    ])
    .arg(disk);
    run(c, Some(script))
}

/// `findmnt -no UUID --mountpoint PATH`: the UUID of the filesystem mounted at `path`.
pub fn mount_uuid(path: &Path) -> std::result::Result<String, String> {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "UUID", "--mountpoint"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run findmnt: {e}"))?;
    let uuid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!("{} is not a mount point", path.display()));
    }
    if uuid.is_empty() {
        return Err("its filesystem has no UUID".to_owned());
    }
    Ok(uuid)
}
