//! A real Debian device in a VM (issue 15): from a stock debootstrap rootfs to a device that
//! boots with systemd from our deployment, updates itself from its own timer, and falls back
//! by itself when an update does not come up.
//!
//! `tests/device/run-scenario.sh` does the work (tests/device/README.md): the cached Debian
//! bookworm base tree plus the project's `.deb` (installed with apt in a chroot, its
//! initramfs-tools hook picked up by `update-initramfs`) is v1, committed with
//! `update commit --bootable`, published and served on 127.0.0.1; `update install to-disk`
//! makes the disk; qemu (TCG, OVMF, systemd-boot) boots it with user networking restricted to
//! one forward to that server. The guest's probe (tests/device/guest/vmtest-driver) only
//! reports and edits; update.timer does the updates. v2 adds a package and changes an /etc
//! default; v3 has a health check that fails before boot-complete.target.
//!
//! This test checks the console's markers, the status JSON and audit log the guest printed
//! at the end, and the ESP's entries after the run; it prints the timeline. Needs root, the
//! packages of `scripts/install-deps.sh`, and on the first run the Debian archive (the base
//! tree is cached in /var/cache/update-tests/device). The run's directory under
//! /var/tmp/update-device is removed afterwards; its small logs stay in
//! /var/tmp/update-device/last-run/.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, update_bin, workspace_root, Run};
use testkit::console::{clean, markers, word};

/// Where the test keeps its big artefacts (never in the repository or /tmp).
const WORK: &str = "/var/tmp/update-device";

/// Copy the small results of a run to WORK/last-run for a post-mortem.
fn keep_logs(out: &Path, run: &Run) {
    let last = Path::new(WORK).join("last-run");
    let _ = std::fs::remove_dir_all(&last);
    let _ = std::fs::create_dir_all(&last);
    for f in [
        "serial.log",
        "console.txt",
        "timeline.txt",
        "timings.txt",
        "status.json",
        "audit.jsonl",
        "entries.txt",
        "access.log",
        "serve.log",
    ] {
        let _ = std::fs::copy(out.join(f), last.join(f));
    }
    let _ = std::fs::write(last.join("run-scenario.txt"), run.describe());
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Write to the real stderr, past the test harness's capture, so the timeline always shows.
fn report(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[test]
fn a_debian_device_installs_updates_itself_and_falls_back() {
    testkit::require_root!("debootstrap, chroot and the .deb's installation need root");
    for tool in [
        "qemu-system-x86_64",
        "debootstrap",
        "mdir",
        "sfdisk",
        "mkfs.ext4",
    ] {
        testkit::require_tool(tool);
    }
    std::fs::create_dir_all(WORK).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(WORK)
        .unwrap();
    let out: PathBuf = dir.path().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("tests/device/run-scenario.sh"))
        .arg(&out)
        .env("UPDATE_BIN", update_bin())
        .env("DEB", testkit::deb::deb());
    // Each wait is capped by the script (TIMEOUT, 900 s); the whole run by this deadline.
    let run = run_command(cmd, Duration::from_secs(3600));
    keep_logs(&out, &run);
    let console = clean(&std::fs::read(out.join("serial.log")).unwrap_or_default());
    let timeline = read(&out.join("timeline.txt"));
    let timings = read(&out.join("timings.txt"));
    report(&format!(
        "\ndevice test timings (seconds):\n{timings}device test timeline (seconds since qemu started):\n{timeline}"
    ));
    let tail = || {
        let lines: Vec<&str> = console.lines().collect();
        let from = lines.len().saturating_sub(80);
        format!(
            "\n--- timeline ---\n{timeline}--- last console lines (all in {WORK}/last-run/console.txt) ---\n{}",
            lines[from..].join("\n")
        )
    };
    assert_eq!(
        run.code(),
        Some(0),
        "tests/device/run-scenario.sh failed:\n{}{}",
        run.describe(),
        tail()
    );

    // Boots, in order: v1 (counted entry, blessed), v2 (counted, blessed, every edit carried),
    // v3 failing its health check boot-retry-limit (3) times, v2 again through its blessed
    // entry: the fallback.
    let booted = markers(&console, "VMTEST-BOOTED");
    let versions: Vec<&str> = booted.iter().map(|b| word(b, "version")).collect();
    assert_eq!(versions, ["1", "2", "2"], "booted versions{}", tail());
    for b in &booted[..2] {
        assert!(
            word(b, "selected").contains('+'),
            "a new deployment boots through its counted entry: {b}{}",
            tail()
        );
        assert_eq!(word(b, "mark_good"), "active", "{b}{}", tail());
        assert_eq!(word(b, "usr"), "ro", "/usr is read-only: {b}");
        assert!(
            word(b, "var").contains("/update/deploy/"),
            "/var is the shared one: {b}"
        );
    }
    let fallback = booted[2];
    assert!(
        !word(fallback, "selected").contains('+'),
        "the fallback boots v2's blessed entry: {fallback}{}",
        tail()
    );
    assert_eq!(word(fallback, "deployment"), word(booted[1], "deployment"));
    let fails = markers(&console, "VMTEST-HEALTH-FAIL");
    assert_eq!(
        fails.len(),
        3,
        "v3 is tried boot-retry-limit times{}",
        tail()
    );

    // The device's local state survives the update, and v2's new default arrives.
    let checks = markers(&console, "VMTEST-CHECK version=2");
    let check = |name: &str| -> String {
        let line = checks
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no check {name}{}", tail()));
        line[name.len() + 1..].to_owned()
    };
    assert_eq!(check("local-edit"), "edited-on-device", "local /etc edit");
    assert_eq!(check("default"), "v2", "v2's new /etc default");
    assert_eq!(
        check("late-edit"),
        "late-edit-from-v1",
        "an /etc edit made after the deploy, before the reboot (finalization)"
    );
    assert_eq!(check("var"), "written-on-v1", "/var survives");
    assert_eq!(check("hello"), "Hello, world!", "v2's new package");
    assert_eq!(check("dpkg-var"), "present", "/var/lib/dpkg seeded");
    assert!(
        !markers(&console, "VMTEST-LATE-EDIT version=1").is_empty(),
        "the late edit was made at shutdown{}",
        tail()
    );

    // What the device said about it: status, audit log, and the ESP.
    let status: serde_json::Value = serde_json::from_str(&read(&out.join("status.json")))
        .unwrap_or_else(|e| panic!("status.json: {e}{}", tail()));
    let text = status.to_string();
    assert!(text.contains("\"failed\":true"), "v3 is failed: {text}");
    // The audit lines as they were logged, boot after boot (the guest's journal copied to
    // the console), and the journal the fallback boot read back at the end.
    let results = |lines: Vec<&str>| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.find('{').map(|at| &l[at..]))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .map(|v| {
                format!(
                    "{} {}->{}",
                    v["result"].as_str().unwrap_or(""),
                    v["from"]["version"].as_str().unwrap_or("?"),
                    v["to"]["version"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    let logged = results(markers(&console, "VMTEST-LOG"));
    for expected in ["success 1->2", "success 2->3", "rollback 3->2"] {
        assert!(
            logged.iter().any(|r| r == expected),
            "audit log: no {expected} in {logged:?}{}",
            tail()
        );
    }
    let journal = results(read(&out.join("audit.jsonl")).lines().collect());
    assert!(
        journal.iter().any(|r| r == "rollback 3->2"),
        "the journal read on the device names the rollback: {journal:?}"
    );
    let entries = read(&out.join("entries.txt"));
    let names: Vec<&str> = entries.lines().collect();
    assert_eq!(names.len(), 2, "entries on the ESP: {entries}");
    assert!(names.iter().any(|e| e.ends_with("+0-3.conf")), "{entries}");
}
