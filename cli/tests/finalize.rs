//! `update finalize` end to end (issue 15): `/etc` changes made on the booted system after
//! `update deploy` (or `update --noreboot`) and before the reboot reach the pending
//! deployment; nothing pending, or pending but not merged from the booted one, is a no-op;
//! leftovers of a killed run are cleaned; a kill at any filesystem step leaves either the
//! deploy-time or the finalized `/etc`, both complete. Also `update mark-good` finding the
//! entry blessed by systemd-bless-boot first.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::cli::{run_command, update_bin};
use testkit::device::{make_bootable, Device};
use testkit::kill::{copy_tree, verdict};
use testkit::snapshot::Snapshot;
use testkit::world::{write, World};

const TEMP: &str = ".update-finalize-etc";

/// v1 published with a default `drop.conf` besides make_bootable's `os-release` and
/// `app.conf`.
fn world() -> World {
    let w = World::new();
    make_bootable(&w, b"kernel v1");
    write(&w.src.join("usr/etc/drop.conf"), b"drop\n");
    w.commit("1", 1_700_000_000);
    w.publish(&[]);
    w
}

/// v2: a new default file and a changed default.
fn release_v2(w: &World) {
    write(&w.src.join("usr/etc/new.conf"), b"new\n");
    write(&w.src.join("usr/etc/os-release"), b"NAME=test2\n");
    w.commit("2", 1_700_000_100);
    w.publish(&[]);
}

fn id_of(report: &serde_json::Value) -> String {
    let d = report["deployment"].as_str().unwrap();
    d.split_once('/').unwrap().1.to_owned()
}

/// A device that deployed v1 (A), booted it and marked it good, then pulled and deployed
/// v2 (B) without rebooting. Returns the device, A and B.
fn pending_b(w: &World) -> (Device, String, String) {
    let dev = Device::new(w, "dev");
    dev.pull();
    let a = id_of(&dev.deploy(&[]));
    assert_eq!(dev.boot(), a);
    dev.run(&["mark-good"], &[]).success();
    release_v2(w);
    dev.pull();
    let b = id_of(&dev.deploy(&[]));
    (dev, a, b)
}

/// Add a file, change one, delete one, and change one the new defaults changed too.
fn edit_booted_etc(etc: &Path) {
    write(&etc.join("mine.conf"), b"mine\n");
    write(&etc.join("app.conf"), b"level=9\n");
    std::fs::remove_file(etc.join("drop.conf")).unwrap();
    write(&etc.join("os-release"), b"NAME=mine\n");
}

/// B's `/etc` once the edits are carried: the local changes, and B's new default.
fn assert_finalized(etc: &Path) {
    let read = |n: &str| std::fs::read(etc.join(n)).unwrap();
    assert_eq!(read("mine.conf"), b"mine\n");
    assert_eq!(read("app.conf"), b"level=9\n");
    assert!(!etc.join("drop.conf").exists());
    assert_eq!(
        read("os-release"),
        b"NAME=mine\n",
        "local wins the conflict"
    );
    assert_eq!(read("new.conf"), b"new\n", "B's new default");
}

fn finalize_json(dev: &Device) -> serde_json::Value {
    let run = dev.run(&["finalize", "--json"], &[]);
    run.success();
    serde_json::from_str(run.out().trim()).unwrap()
}

#[test]
fn etc_edits_after_the_deploy_reach_the_pending_deployment() {
    let w = world();
    let (dev, a, b) = pending_b(&w);
    let origin = std::fs::read_to_string(
        dev.sysroot
            .join(format!("update/deploy/os/deploy/{b}.origin")),
    )
    .unwrap();
    assert!(
        origin.contains(&format!("etc-merged-from = \"{a}\"")),
        "{origin}"
    );
    let (root_a, root_b) = (dev.deployment(&a), dev.deployment(&b));
    let deploy_time = Snapshot::take(&root_b.join("etc")).unwrap();
    edit_booted_etc(&root_a.join("etc"));
    let a_before = Snapshot::take(&root_a).unwrap();

    let run = dev.run(&["finalize"], &[]);
    run.success();
    let out = run.out();
    assert!(
        out.contains(&format!(
            "finalized os/{b}: /etc merged again from the booted {a}"
        )),
        "{out}"
    );
    assert!(
        out.contains("/etc: 4 local changes carried over, 1 conflicts"),
        "{out}"
    );
    assert!(out.contains("conflict /etc/os-release: "), "{out}");
    assert_finalized(&root_b.join("etc"));
    assert!(!root_b.join(TEMP).exists());
    assert!(
        !deploy_time
            .diff(&Snapshot::take(&root_b.join("etc")).unwrap())
            .is_empty(),
        "the deploy-time /etc was replaced"
    );
    a_before.assert_same(&Snapshot::take(&root_a).unwrap(), "the booted deployment");
    // /usr/etc still holds B's default, readable beside the user's version.
    assert_eq!(
        std::fs::read(root_b.join("usr/etc/os-release")).unwrap(),
        b"NAME=test2\n"
    );

    // Again: the same result. A file written straight into B's /etc is replaced: the
    // booted /etc wins (docs/deploy.md).
    let first = Snapshot::take(&root_b.join("etc")).unwrap();
    write(&root_b.join("etc/direct.conf"), b"written into B\n");
    let r = finalize_json(&dev);
    assert_eq!(r["finalized"], true, "{r}");
    assert_eq!(r["pending"], format!("os/{b}"));
    assert_eq!(r["booted"], format!("os/{a}"));
    assert_eq!(r["etc_changes_carried"], 4);
    assert_eq!(r["etc_conflicts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["leftovers_removed"], serde_json::json!([]));
    first.assert_same(
        &Snapshot::take(&root_b.join("etc")).unwrap(),
        "a second finalize",
    );

    // The finalized B boots with the edits; then nothing is pending.
    assert_eq!(dev.boot(), b);
    let r = finalize_json(&dev);
    assert_eq!(r["finalized"], false);
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("no deployment is pending"), "{msg}");
}

#[test]
fn nothing_pending_or_nothing_booted_is_a_no_op() {
    let w = world();
    let dev = Device::new(&w, "dev");
    dev.pull();
    let a = id_of(&dev.deploy(&[]));
    // Not booted from a deployment (an image builder's sysroot).
    let run = dev.run(&["finalize"], &[]);
    run.success();
    assert!(
        run.out()
            .contains("nothing to finalize: no deployment is booted"),
        "{}",
        run.out()
    );
    assert_eq!(dev.boot(), a);
    write(&dev.deployment(&a).join("etc/mine.conf"), b"mine\n");
    let before = Snapshot::take(&dev.sysroot).unwrap();
    let run = dev.run(&["finalize"], &[]);
    run.success();
    assert!(
        run.out().contains(&format!(
            "nothing to finalize: no deployment is pending (os/{a} is booted and boots next)"
        )),
        "{}",
        run.out()
    );
    before.assert_same(&Snapshot::take(&dev.sysroot).unwrap(), "a no-op finalize");
}

#[test]
fn a_pending_deployment_not_merged_from_the_booted_one_is_left_alone() {
    let w = world();
    let (dev, a, b) = pending_b(&w);
    // Boot B, then roll back: A boots next, its /etc was never merged from B.
    assert_eq!(dev.boot(), b);
    dev.run(&["mark-good"], &[]).success();
    dev.run(&["rollback"], &[]).success();
    write(&dev.deployment(&b).join("etc/mine.conf"), b"mine\n");
    let before = Snapshot::take(&dev.deployment(&a)).unwrap();
    let r = finalize_json(&dev);
    assert_eq!(r["finalized"], false, "{r}");
    assert_eq!(r["pending"], format!("os/{a}"));
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "was merged from no deployment, not from the booted {b}"
        )),
        "{msg}"
    );
    before.assert_same(
        &Snapshot::take(&dev.deployment(&a)).unwrap(),
        "A after a no-op",
    );
    assert!(!dev.deployment(&a).join("etc/mine.conf").exists());
}

#[test]
fn leftovers_of_a_killed_finalize_are_removed_by_finalize_and_deploy() {
    let w = world();
    let (dev, a, b) = pending_b(&w);
    edit_booted_etc(&dev.deployment(&a).join("etc"));
    // What a run killed while building the new /etc leaves.
    let left = dev.deployment(&b).join(TEMP);
    write(&left.join("half/written.conf"), b"par");
    let r = finalize_json(&dev);
    assert_eq!(r["finalized"], true, "{r}");
    assert_eq!(
        r["leftovers_removed"],
        serde_json::json!([left.display().to_string()])
    );
    assert!(!left.exists());
    assert_finalized(&dev.deployment(&b).join("etc"));

    // A deploy removes them too (here in the booted deployment, which it keeps).
    let left = dev.deployment(&a).join(TEMP);
    write(&left.join("old/etc.conf"), b"old\n");
    dev.deploy(&[]);
    assert!(!left.exists(), "deploy removed {}", left.display());
}

/// strace kills `update finalize` at the N-th call of each group of system calls that
/// touches the filesystem, for N = 1, 2, ... until a run is no longer killed (the group
/// has fewer calls) or [`MAX_PER_GROUP`] (then Fibonacci-spaced up to the count).
/// After each kill, B's `/etc` is the complete deploy-time one or the complete finalized
/// one, A is untouched, and the next `update finalize` ends with the finalized one and no
/// leftover.
#[test]
fn finalize_survives_a_kill_at_every_step() {
    testkit::require_root!("deployments keep the tree's owners");
    testkit::require_tool("strace");
    let start = Instant::now();
    let w = world();
    let (dev, a, b) = pending_b(&w);
    edit_booted_etc(&dev.deployment(&a).join("etc"));
    let deploy_time = Snapshot::take(&dev.deployment(&b).join("etc")).unwrap();
    let a_before = Snapshot::take(&dev.deployment(&a)).unwrap();
    // The finalized /etc, from an uninterrupted run on a copy.
    let reference = w.root.join("reference");
    copy_tree(&dev.sysroot, &reference);
    let rdev = Device {
        sysroot: reference.clone(),
        esp: reference.join("efi"),
        cmdline: dev.cmdline.clone(),
    };
    rdev.run(&["finalize"], &[]).success();
    let finalized = Snapshot::take(&rdev.deployment(&b).join("etc")).unwrap();
    assert!(!deploy_time.diff(&finalized).is_empty());
    std::fs::remove_dir_all(&reference).unwrap();

    const GROUPS: &[&str] = &[
        "renameat2",
        "unlinkat",
        "mkdirat",
        "openat",
        "write,pwrite64,copy_file_range,sendfile",
        "fsync,syncfs",
        "fchownat,fchown,fchmodat,fchmod,fsetxattr",
    ];
    const MAX_PER_GROUP: usize = 12;
    let (mut runs, mut killed, mut failures) = (0, 0, Vec::new());
    for names in GROUPS {
        let mut n = 1;
        let mut prev = 1;
        loop {
            let here = w.root.join(format!("run-{runs}"));
            copy_tree(&dev.sysroot, &here);
            let kdev = Device {
                sysroot: here.clone(),
                esp: here.join("efi"),
                cmdline: dev.cmdline.clone(),
            };
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-o", "/dev/null"]);
            cmd.arg(format!("-etrace={names}"));
            cmd.arg(format!("-einject={names}:signal=KILL:when={n}"));
            cmd.arg(update_bin()).args([
                "finalize",
                "--sysroot",
                here.to_str().unwrap(),
                "--proc-cmdline",
                dev.cmdline.to_str().unwrap(),
            ]);
            let run = run_command(cmd, Duration::from_secs(60));
            runs += 1;
            let was_killed = run.code() != Some(0);
            killed += usize::from(was_killed);
            let label = format!("killed at {names} #{n}");
            let etc = Snapshot::take(&kdev.deployment(&b).join("etc")).unwrap();
            if !deploy_time.diff(&etc).is_empty() && !finalized.diff(&etc).is_empty() {
                failures.push(format!(
                    "{label}: B's /etc is neither the deploy-time nor the finalized one: {:?}",
                    finalized.diff(&etc)
                ));
            }
            let a_now = Snapshot::take(&kdev.deployment(&a)).unwrap();
            if !a_before.diff(&a_now).is_empty() {
                failures.push(format!("{label}: A changed: {:?}", a_before.diff(&a_now)));
            }
            let again = kdev.run(&["finalize"], &[]);
            if again.code() != Some(0) {
                failures.push(format!("{label}: the next finalize: {}", again.describe()));
            } else {
                let etc = Snapshot::take(&kdev.deployment(&b).join("etc")).unwrap();
                if !finalized.diff(&etc).is_empty() {
                    failures.push(format!(
                        "{label}: after the next finalize: {:?}",
                        finalized.diff(&etc)
                    ));
                }
                if kdev.deployment(&b).join(TEMP).exists() {
                    failures.push(format!("{label}: a leftover stayed"));
                }
            }
            std::fs::remove_dir_all(&here).unwrap();
            if !was_killed || n > 1000 {
                break;
            }
            // Every call up to MAX_PER_GROUP, then Fibonacci-spaced.
            let next = if n < MAX_PER_GROUP { n + 1 } else { n + prev };
            prev = n;
            n = next;
        }
    }
    verdict("", runs, killed, &failures, start);
}

/// The front end: `update --now --noreboot` deploys v2 while v1 runs, an `/etc` edit
/// follows, and `update finalize` (what update-finalize.service runs at shutdown) carries it.
#[test]
fn update_noreboot_then_an_etc_edit_then_finalize_carries_it() {
    let w = world();
    // The front end's root is the world's temp dir: the sysroot is ROOT/sysroot.
    let dev = Device::new(&w, "sysroot");
    let up = |args: &[&str]| {
        let mut cmd = Command::new(update_bin());
        cmd.args(args)
            .env("UPDATE_ROOT", &w.root)
            .env("UPDATE_PROC_CMDLINE", &dev.cmdline);
        let run = run_command(cmd, Duration::from_secs(60));
        run.success();
        run
    };
    up(&["config", "source", &w.url()]);
    up(&[
        "config",
        "key",
        "add",
        "release",
        w.pubkey().to_str().unwrap(),
    ]);
    let log = w.root.join("audit.jsonl");
    up(&["config", "log", log.to_str().unwrap()]);
    up(&["--now", "--noreboot"]);
    let a = dev.boot();
    dev.run(&["mark-good"], &[]).success();
    release_v2(&w);
    let run = up(&["--now", "--noreboot"]);
    assert!(
        run.out().contains("boots at the next reboot"),
        "{}",
        run.out()
    );
    let status = dev.status();
    let pending = status["deployments"][0]["deployment"].as_str().unwrap();
    assert_eq!(status["deployments"][0]["pending"], true, "{status}");
    let b = pending.to_owned();
    assert_ne!(a, b);
    edit_booted_etc(&dev.deployment(&a).join("etc"));
    assert_eq!(finalize_json(&dev)["finalized"], true);
    assert_finalized(&dev.deployment(&b).join("etc"));
    assert_eq!(dev.boot(), b);
}

/// systemd-bless-boot (Debian 12: added by its generator when systemd-boot counts tries)
/// renames the same entry after boot-complete.target; `update mark-good` ordered after it
/// finds the blessed name and succeeds.
#[test]
fn mark_good_after_systemd_bless_boot_says_already_good() {
    let w = world();
    let dev = Device::new(&w, "dev");
    dev.pull();
    dev.deploy(&[]);
    let a = dev.boot();
    assert_eq!(dev.entries(), ["update-os-1+2-1.conf"]);
    // What systemd-bless-boot does: drop the counter from the name.
    let entries = dev.esp.join("loader/entries");
    std::fs::rename(
        entries.join("update-os-1+2-1.conf"),
        entries.join("update-os-1.conf"),
    )
    .unwrap();
    let run = dev.run(&["mark-good"], &[]);
    run.success();
    assert!(
        run.out()
            .contains(&format!("{a} was already marked good (update-os-1.conf)")),
        "{}",
        run.out()
    );
    assert_eq!(dev.entries(), ["update-os-1.conf"]);
}

/// `update config schedule` writes update-finalize.service beside the other units, with
/// the ostree-finalize-staged shape, and enables it.
#[test]
fn config_schedule_writes_and_enables_the_finalize_unit() {
    let t = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(update_bin());
    cmd.args(["config", "--root", t.path().to_str().unwrap()])
        .args(["schedule", "hourly", "6"]);
    run_command(cmd, Duration::from_secs(60)).success();
    let units = t.path().join("etc/systemd/system");
    let unit = std::fs::read_to_string(units.join("update-finalize.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStop="))
        .expect(&unit);
    assert!(
        exec.starts_with('/') && exec.ends_with(" finalize --sysroot /sysroot"),
        "{unit}"
    );
    for line in [
        "ConditionKernelCommandLine=update.deployment",
        "DefaultDependencies=no",
        "RequiresMountsFor=/sysroot",
        "After=local-fs.target",
        "Before=basic.target final.target",
        "Conflicts=final.target",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "TimeoutStopSec=5min",
        "WantedBy=basic.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "lacks {line:?}:\n{unit}");
    }
    assert!(!unit.contains("ExecStart="), "{unit}");
    let link = units.join("basic.target.wants/update-finalize.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../update-finalize.service")
    );
    let mark_good = std::fs::read_to_string(units.join("update-mark-good.service")).unwrap();
    assert!(
        mark_good
            .lines()
            .any(|l| l.starts_with("After=") && l.contains("systemd-bless-boot.service")),
        "{mark_good}"
    );
}
