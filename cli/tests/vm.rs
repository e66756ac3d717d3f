//! The deploy engine in a real VM (issue 4): a Debian kernel booted by OVMF and systemd-boot
//! under qemu (TCG), from a disk packed from a staging sysroot that `update` set up.
//!
//! `tests/vm/run-scenario.sh` builds three OS versions (A, B good; C fails its health check),
//! deploys A into a staging sysroot with B and C pulled beside it, packs the disk and boots it
//! once; the guest reboots itself (tests/vm/guest-init.sh):
//!
//! A blesses itself, edits /etc and /var, deploys B → B is tried (`+3` entry), blesses itself,
//! finds A's local /etc edits, deploys C → C is tried three times (`+3`, `+2-1`, `+1-2`) and
//! never blesses itself → systemd-boot falls back to B, which prints `update status --json`
//! and powers off.
//!
//! This test runs that script and checks the serial console's markers, the status JSON and
//! the ESP's entries after the run. It needs root, the packages of `scripts/install-deps.sh`
//! and, on the first run, the Debian archive (the kernel is downloaded into
//! /var/tmp/update-vm/kernel and kept there). Everything else lives in a temp directory under
//! /var/tmp/update-vm and is removed afterwards; the logs of the last run are copied to
//! /var/tmp/update-vm/last-run/.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, update_bin, workspace_root, Run};
use testkit::console::{clean, word};

/// Where the VM test keeps its big artefacts (never in the repository or /tmp).
const VM_WORK: &str = "/var/tmp/update-vm";

/// One `VMTEST-BOOTED:` line: which deployment booted, through which entry.
#[derive(Debug)]
struct Boot {
    version: String,
    deployment: String,
    selected: String,
    countpath: String,
}

/// Fail with the remedy when a tool or file the VM needs is missing.
fn require_vm_host() {
    for tool in [
        "qemu-system-x86_64",
        "mkfs.vfat",
        "mdir",
        "sfdisk",
        "mkfs.ext4",
        "cpio",
        "depmod",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is not installed: run scripts/install-deps.sh"
        );
    }
    for file in [
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
        "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
        "/bin/busybox",
    ] {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: run scripts/install-deps.sh (it installs ovmf, systemd-boot-efi, \
             busybox-static)"
        );
    }
}

fn boots(console: &str) -> Vec<Boot> {
    console
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("VMTEST-BOOTED:"))
        .map(|l| Boot {
            version: word(l, "version").to_owned(),
            deployment: word(l, "deployment").to_owned(),
            selected: word(l, "selected").to_owned(),
            countpath: word(l, "countpath").to_owned(),
        })
        .collect()
}

fn marker_lines<'a>(console: &'a str, marker: &str) -> Vec<&'a str> {
    console
        .lines()
        .filter(|l| l.trim_start().starts_with(marker))
        .collect()
}

/// Write to the real stderr, past the test harness's capture, so the timings always show.
fn report(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Copy the small results of a run to /var/tmp/update-vm/last-run for a post-mortem.
fn keep_logs(out: &Path, run: &Run) {
    let last = Path::new(VM_WORK).join("last-run");
    let _ = std::fs::remove_dir_all(&last);
    let _ = std::fs::create_dir_all(&last);
    for f in [
        "serial.log",
        "timeline.txt",
        "status.json",
        "entries.txt",
        "entries-content.txt",
        "esp-files.txt",
        "loader.conf",
        "timings.txt",
        "qemu-result",
        "serial-broken.log",
        "qemu-result-broken",
    ] {
        let _ = std::fs::copy(out.join(f), last.join(f));
    }
    let _ = std::fs::write(last.join("run-scenario.txt"), run.describe());
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn deploy_bless_fail_and_fall_back_in_a_vm() {
    testkit::require_root!(
        "the staging sysroot keeps file owners and the kernel is fetched with apt"
    );
    require_vm_host();
    std::fs::create_dir_all(VM_WORK).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(VM_WORK)
        .unwrap();
    let out: PathBuf = dir.path().to_path_buf();
    let script = workspace_root().join("tests/vm/run-scenario.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&out).env("UPDATE_BIN", update_bin());
    // Measured: setup ≈ 20 s, six UEFI boots ≈ 105 s under TCG, the failing direct boot ≈ 9 s.
    // The qemu run itself is capped at 600 s.
    let run = run_command(cmd, Duration::from_secs(1200));
    keep_logs(&out, &run);
    let console = clean(&std::fs::read(out.join("serial.log")).unwrap_or_default());
    let timeline = read(&out.join("timeline.txt"));
    let timings = read(&out.join("timings.txt"));
    report(&format!(
        "\nvm test timings (seconds):\n{timings}vm test timeline (seconds since qemu started):\n{timeline}"
    ));
    let tail = || {
        let lines: Vec<&str> = console.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "\n--- timeline ---\n{timeline}--- last console lines (all in {VM_WORK}/last-run/serial.log) ---\n{}",
            lines[from..].join("\n")
        )
    };
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        run.code(),
        Some(0),
        "tests/vm/run-scenario.sh failed: {}\n{}{}",
        errors.join("\n"),
        run.describe(),
        tail()
    );
    let qemu = read(&out.join("qemu-result"));
    assert!(
        qemu.starts_with("qemu_rc=0 "),
        "qemu should end by the guest powering off, got {qemu:?} (124: killed at the timeout){}",
        tail()
    );
    for bad in ["VMTEST-ERROR", "update-init: FAILED", "Kernel panic"] {
        let hits = marker_lines(&console, bad);
        assert!(hits.is_empty(), "the guest printed {hits:?}{}", tail());
    }

    // The boots: A, B, then C three times, then B again.
    let boots = boots(&console);
    let versions: Vec<&str> = boots.iter().map(|b| b.version.as_str()).collect();
    assert_eq!(
        versions,
        ["A", "B", "C", "C", "C", "B"],
        "booted versions{}",
        tail()
    );
    let commit = |v: &str| read(&out.join(format!("commit-{v}"))).trim().to_owned();
    for b in &boots {
        let want = format!("vmos/{}.", commit(&b.version));
        assert!(
            b.deployment.starts_with(&want),
            "{b:?}: update.deployment= should name {want}SERIAL"
        );
    }
    assert_eq!(
        boots[1].deployment, boots[5].deployment,
        "the fallback boots B's deployment"
    );
    // Which entries systemd-boot picked (`update-OS-GENERATION[+LEFT[-DONE]].conf`): A's first
    // entry, B's new entry counted, C's counting down, then B's blessed entry (no counter).
    let selected: Vec<&str> = boots.iter().map(|b| b.selected.as_str()).collect();
    assert_eq!(
        selected,
        [
            "update-vmos-1+3.conf",
            "update-vmos-2+3.conf",
            "update-vmos-3+3.conf",
            "update-vmos-3+2-1.conf",
            "update-vmos-3+1-2.conf",
            "update-vmos-2.conf",
        ],
        "LoaderEntrySelected of each boot{}",
        tail()
    );
    let countpaths: Vec<&str> = boots.iter().map(|b| b.countpath.as_str()).collect();
    assert_eq!(
        countpaths,
        [
            "/loader/entries/update-vmos-1+2-1.conf",
            "/loader/entries/update-vmos-2+2-1.conf",
            "/loader/entries/update-vmos-3+2-1.conf",
            "/loader/entries/update-vmos-3+1-2.conf",
            "/loader/entries/update-vmos-3+0-3.conf",
            "",
        ],
        "LoaderBootCountPath of each boot (B's blessed entry has no counter)"
    );

    // What each booted system saw: /usr read-only, the shared /var mounted, its own /etc.
    let mounts = marker_lines(&console, "VMTEST-MOUNTS:");
    assert_eq!(mounts.len(), boots.len(), "{mounts:?}");
    for (m, b) in mounts.iter().zip(&boots) {
        assert_eq!(word(m, "usr"), "ro", "{m} ({b:?})");
        assert_eq!(word(m, "var"), "mounted", "{m} ({b:?})");
        assert_eq!(
            word(m, "etc-version"),
            b.version,
            "/etc/os-release follows the new defaults: {m}"
        );
    }
    assert_eq!(
        marker_lines(&console, "VMTEST-ETC-CARRIED").len(),
        2,
        "A's /etc edits in B{}",
        tail()
    );
    assert_eq!(
        marker_lines(&console, "VMTEST-VAR-SHARED").len(),
        2,
        "A's /var file in B{}",
        tail()
    );
    assert_eq!(
        marker_lines(&console, "VMTEST-HEALTH-FAILED").len(),
        3,
        "C's three tries"
    );
    assert_eq!(marker_lines(&console, "VMTEST-FALLBACK").len(), 1);

    // `update status --json` as B printed it after the fallback.
    let status_text = read(&out.join("status.json"));
    let status: serde_json::Value = serde_json::from_str(&status_text)
        .unwrap_or_else(|e| panic!("bad status JSON ({e}):\n{status_text}{}", tail()));
    let oses = status["oses"]
        .as_array()
        .unwrap_or_else(|| panic!("status JSON has no \"oses\" array:\n{status:#}"));
    let vmos = oses
        .iter()
        .find(|o| o["os"] == "vmos")
        .unwrap_or_else(|| panic!("no OS vmos in the status:\n{status:#}"));
    assert_eq!(
        vmos["booted"],
        boots[5].deployment.trim_start_matches("vmos/")
    );
    let deployments = vmos["deployments"]
        .as_array()
        .unwrap_or_else(|| panic!("OS vmos has no deployments array:\n{status:#}"));
    let find = |v: &str| {
        let c = commit(v);
        deployments
            .iter()
            .find(|d| d["commit"] == c.as_str())
            .unwrap_or_else(|| panic!("no deployment of {v} ({c}) in the status:\n{status:#}"))
    };
    let (b, c) = (find("B"), find("C"));
    assert_eq!(b["booted"], true, "B is booted:\n{status:#}");
    assert_eq!(b["failed"], false, "{status:#}");
    assert_eq!(b["version"], "B");
    assert_eq!(c["booted"], false, "{status:#}");
    assert_eq!(c["failed"], true, "C used up its tries:\n{status:#}");
    assert_eq!(c["tries_left"], 0, "{status:#}");
    // Deploying C kept the new deployment, the booted one and the previous default (both B):
    // A is gone.
    assert_eq!(deployments.len(), 2, "B and C only:\n{status:#}");

    // The ESP after the run: B's entry blessed, C's exhausted.
    let entries = read(&out.join("entries.txt"));
    let entries: Vec<&str> = entries.lines().collect();
    assert_eq!(
        entries,
        ["update-vmos-2.conf", "update-vmos-3+0-3.conf"],
        "loader/entries on the ESP"
    );

    // The boot files: A and B share one kernel + initramfs directory, C (another initramfs)
    // has its own; both are in use, nothing else is left on the ESP.
    let content = read(&out.join("entries-content.txt"));
    let key = |entry: &str, k: &str| -> String {
        content
            .split("== ")
            .find(|e| e.starts_with(entry))
            .and_then(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            })
            .unwrap_or_else(|| panic!("no {k} line in {entry}:\n{content}"))
    };
    let (b_initrd, c_initrd) = (
        key("update-vmos-2.conf", "initrd"),
        key("update-vmos-3+0-3.conf", "initrd"),
    );
    assert_ne!(
        b_initrd, c_initrd,
        "C's initramfs differs from B's:\n{content}"
    );
    let dir_of = |p: &str| {
        p.rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default()
    };
    let esp_files = read(&out.join("esp-files.txt"));
    let mut want_files: Vec<String> = [&b_initrd, &c_initrd]
        .iter()
        .flat_map(|p| {
            let d = dir_of(p);
            [
                format!("::{d}/"),
                format!("::{d}/initramfs.img"),
                format!("::{d}/vmlinuz"),
            ]
        })
        .chain(["::/update/vmos/".to_owned()])
        .collect();
    want_files.sort();
    let got_files: Vec<&str> = esp_files.lines().collect();
    assert_eq!(
        got_files, want_files,
        "the ESP's /update after the run:\n{content}"
    );

    // Hardlink checkouts survived mkfs.ext4 -d and the guest's own deploys: at the end, B's
    // busybox is one inode with the repo object and C's.
    let links = marker_lines(&console, "VMTEST-LINKS:");
    assert_eq!(links.len(), boots.len(), "{links:?}");
    let last: u32 = word(links[5], "busybox").parse().unwrap_or(0);
    assert!(
        last >= 3,
        "busybox in B, C and the repo should be one inode: {links:?}"
    );
    // systemd-boot picks the first entry by its own order: loader.conf must not set `default`
    // (a pattern there would keep booting an exhausted entry).
    let loader_conf = read(&out.join("loader.conf"));
    assert!(
        !loader_conf
            .lines()
            .any(|l| l.split_whitespace().next() == Some("default")),
        "loader.conf has a default:\n{loader_conf}"
    );

    // The boot with a deployment that does not exist: update-init says so and exits, the
    // kernel panics and (panic=-1) reboots, which ends this -no-reboot run.
    let broken = clean(&std::fs::read(out.join("serial-broken.log")).unwrap_or_default());
    let failed = marker_lines(&broken, "update-init: FAILED:");
    assert_eq!(
        failed,
        ["update-init: FAILED: update prepare-root --sysroot /sysroot failed"],
        "the broken boot's console:\n{broken}"
    );
    assert!(
        broken.contains("0000000000000000000000000000000000000000000000000000000000000000.0"),
        "prepare-root's error names the missing deployment:\n{broken}"
    );
    assert!(
        broken.contains("Kernel panic"),
        "PID 1 exited: a panic\n{broken}"
    );
    assert!(
        read(&out.join("qemu-result-broken")).starts_with("qemu_rc=0 "),
        "panic=-1 reboots at once (qemu -no-reboot exits)"
    );
}
