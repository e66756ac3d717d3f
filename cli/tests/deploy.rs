//! `update sysroot init`, `deploy`, `status`, `mark-good`, `rollback`, `pin` end to end: a
//! builder publishes, a device sysroot pulls and deploys, and a stand-in firmware boots
//! entries the way systemd-boot does (the VM test runs the real one).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::MetadataExt;

use testkit::cli::update;
use testkit::device::{make_bootable, Device};
use testkit::world::{write, World};

fn world() -> World {
    let w = World::new();
    make_bootable(&w, b"kernel v1");
    w
}

fn release(w: &World, version: &str, ts: u64) -> String {
    let c = w.commit(version, ts);
    w.publish(&[]);
    c
}

/// Publish `version` and pull it on `dev`.
fn release_to(w: &World, dev: &Device, version: &str, ts: u64) -> String {
    let c = release(w, version, ts);
    dev.pull();
    c
}

/// A device that deployed `version`, booted it and marked it good; returns it and the
/// booted deployment.
fn booted_on(w: &World, version: &str, ts: u64) -> (Device, String) {
    release(w, version, ts);
    let dev = Device::new(w, "dev");
    dev.pull();
    dev.deploy(&[]);
    let booted = dev.boot();
    dev.run(&["mark-good"], &[]).success();
    (dev, booted)
}

fn rows(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["deployments"].as_array().unwrap().clone()
}

fn flagged(status: &serde_json::Value, flag: &str) -> Vec<String> {
    rows(status)
        .iter()
        .filter(|r| r[flag] == true)
        .map(|r| r["version"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn deploy_boot_mark_good_and_update_carry_etc_and_clean_up() {
    let w = world();
    let v1 = release(&w, "1", 1_700_000_000);
    let dev = Device::new(&w, "dev");
    dev.pull();
    let r = dev.deploy(&[]);
    assert_eq!(r["commit"], v1.as_str());
    assert_eq!(r["signers"][0], "release");
    assert_eq!(r["boot_files_copied"], true);
    let d1 = r["deployment"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    assert_eq!(dev.entries(), ["update-os-1+3.conf"]);

    // The deployment: /usr hardlinked to the store, /etc a real copy of /usr/etc.
    let root = dev.deployment(&d1);
    assert!(
        std::fs::metadata(root.join("usr/bin/tool"))
            .unwrap()
            .nlink()
            >= 2
    );
    assert_eq!(
        std::fs::metadata(root.join("etc/app.conf"))
            .unwrap()
            .nlink(),
        1
    );
    assert_eq!(
        std::fs::read(root.join("etc/app.conf")).unwrap(),
        b"level=1\n"
    );
    let entry = std::fs::read_to_string(dev.esp.join("loader/entries/update-os-1+3.conf")).unwrap();
    assert!(
        entry.contains(&format!("update.deployment=os/{d1}")),
        "{entry}"
    );
    assert!(entry.contains("root=/dev/vda2 quiet"), "{entry}");

    assert_eq!(dev.boot(), d1);
    assert_eq!(dev.entries(), ["update-os-1+2-1.conf"]);
    let run = dev.run(&["mark-good"], &[]);
    run.success();
    assert!(
        run.out()
            .contains("update-os-1+2-1.conf -> update-os-1.conf"),
        "{}",
        run.out()
    );
    assert_eq!(dev.entries(), ["update-os-1.conf"]);
    dev.run(&["mark-good"], &[]).success();

    // A local edit, a local addition, a local deletion.
    write(&root.join("etc/app.conf"), b"level=9\n");
    write(&root.join("etc/mine.conf"), b"mine\n");
    std::fs::remove_file(root.join("etc/os-release")).unwrap();

    // v2: new default for a file the user did not touch, a new default file.
    write(&w.src.join("usr/etc/new.conf"), b"new\n");
    write(&w.src.join("usr/bin/tool"), b"tool v2");
    let v2 = release_to(&w, &dev, "2", 1_700_000_100);
    let r = dev.deploy(&["--karg", "debug"]);
    assert_eq!(r["commit"], v2.as_str());
    assert_eq!(
        r["boot_files_copied"], false,
        "same kernel: boot files are shared"
    );
    assert_eq!(r["etc_changes_carried"], 3);
    let d2 = r["deployment"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    let root2 = dev.deployment(&d2);
    assert_eq!(
        std::fs::read(root2.join("etc/app.conf")).unwrap(),
        b"level=9\n"
    );
    assert_eq!(
        std::fs::read(root2.join("etc/mine.conf")).unwrap(),
        b"mine\n"
    );
    assert_eq!(std::fs::read(root2.join("etc/new.conf")).unwrap(), b"new\n");
    assert!(!root2.join("etc/os-release").exists());
    assert_eq!(dev.entries(), ["update-os-1.conf", "update-os-2+3.conf"]);
    let entry = std::fs::read_to_string(dev.esp.join("loader/entries/update-os-2+3.conf")).unwrap();
    assert!(
        entry.contains("root=/dev/vda2 quiet debug"),
        "kargs inherited and added: {entry}"
    );

    let st = dev.status();
    assert_eq!(flagged(&st, "booted"), ["1"]);
    assert_eq!(flagged(&st, "pending"), ["2"]);
    assert_eq!(flagged(&st, "rollback"), ["1"]);
    assert_eq!(
        rows(&st)[0]["version"],
        "2",
        "the new deployment boots next"
    );

    assert_eq!(dev.boot(), d2);
    dev.run(&["mark-good"], &[]).success();
    // v3 with a new kernel: v2 (booted) stays, v1 goes with nothing else using its files.
    make_bootable(&w, b"kernel v3");
    let v3 = release_to(&w, &dev, "3", 1_700_000_200);
    let r = dev.deploy(&[]);
    assert_eq!(r["commit"], v3.as_str());
    assert_eq!(r["boot_files_copied"], true);
    assert_eq!(r["removed"], serde_json::json!([d1]));
    assert!(!dev.deployment(&d1).exists());
    assert_eq!(dev.entries(), ["update-os-2.conf", "update-os-3+3.conf"]);
    let boot_dirs = std::fs::read_dir(dev.esp.join("update/os"))
        .unwrap()
        .count();
    assert_eq!(boot_dirs, 2, "one kernel directory per kernel in use");
    // Local changes made in v2 carry into v3 as well.
    let d3 = r["deployment"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1
        .to_owned();
    assert_eq!(
        std::fs::read(dev.deployment(&d3).join("etc/mine.conf")).unwrap(),
        b"mine\n"
    );
    update(["fsck", "--repo", dev.repo().to_str().unwrap()]).success();
}

#[test]
fn a_deployment_never_marked_good_falls_back_and_shows_failed() {
    let w = world();
    let (dev, d1) = booted_on(&w, "1", 1_700_000_000);
    release_to(&w, &dev, "2", 1_700_000_100);
    dev.deploy(&["--retries", "2"]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(dev.boot());
        seen.push(dev.entries().join(" "));
    }
    let d2 = seen[0].clone();
    assert_ne!(d1, d2);
    assert_eq!(
        seen,
        [
            d2.as_str(),
            "update-os-1.conf update-os-2+1-1.conf",
            d2.as_str(),
            "update-os-1.conf update-os-2+0-2.conf",
            d1.as_str(),
            "update-os-1.conf update-os-2+0-2.conf",
            d1.as_str(),
            "update-os-1.conf update-os-2+0-2.conf",
        ]
    );
    let st = dev.status();
    assert_eq!(flagged(&st, "failed"), ["2"]);
    assert_eq!(flagged(&st, "booted"), ["1"]);
    assert!(flagged(&st, "pending").is_empty());
    // The next deploy replaces the failed one and keeps the booted one.
    release_to(&w, &dev, "3", 1_700_000_200);
    let r = dev.deploy(&[]);
    assert_eq!(r["removed"], serde_json::json!([d2]));
    assert_eq!(dev.entries(), ["update-os-1.conf", "update-os-3+3.conf"]);
}

#[test]
fn rollback_pin_and_unpin() {
    let w = world();
    let (dev, d1) = booted_on(&w, "1", 1_700_000_000);
    release_to(&w, &dev, "2", 1_700_000_100);
    dev.deploy(&[]);
    // Pending v2 not booted yet: rollback keeps the booted v1.
    let run = dev.run(&["rollback"], &[]);
    run.success();
    assert!(run.out().contains(&d1), "{}", run.out());
    assert_eq!(rows(&dev.status())[0]["version"], "1");
    assert_eq!(dev.boot(), d1);

    // Deploy v2 again, boot it, bless it, then roll back to v1.
    dev.deploy(&[]);
    let d2 = dev.boot();
    dev.run(&["mark-good"], &[]).success();
    let run = dev.run(&["pin", &d1[..12]], &[]);
    run.success();
    dev.run(&["rollback"], &[]).success();
    assert_eq!(dev.boot(), d1);
    assert_eq!(flagged(&dev.status(), "pinned"), ["1"]);

    // Pinned v1 survives deploys that would remove it: boot v2 again by rolling back.
    dev.run(&["rollback"], &[]).success();
    assert_eq!(dev.boot(), d2);
    release_to(&w, &dev, "3", 1_700_000_200);
    dev.deploy(&[]);
    assert!(dev.deployment(&d1).exists(), "pinned");
    assert_eq!(rows(&dev.status()).len(), 3);
    dev.run(&["unpin", "2"], &[]).success();
    release_to(&w, &dev, "4", 1_700_000_300);
    let r = dev.deploy(&[]);
    assert!(
        r["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == d1.as_str()),
        "{r}"
    );
    assert!(!dev.deployment(&d1).exists());
}

#[test]
fn refusals_name_the_problem_and_leave_nothing_behind() {
    let w = world();
    let (dev, _) = booted_on(&w, "2", 1_700_000_100);
    let before = dev.entries();
    let deployments = || {
        std::fs::read_dir(dev.sysroot.join("update/deploy/os/deploy"))
            .unwrap()
            .count()
    };
    let n = deployments();

    // Older than the booted commit.
    release(&w, "1", 1_600_000_000);
    dev.pull_allow_downgrade();
    let run = dev.run(&["deploy", "origin:main"], &[]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("older than the booted commit"),
        "{}",
        run.describe()
    );
    dev.run(&["deploy", "origin:main", "--allow-downgrade"], &[])
        .success();
    assert_eq!(dev.entries().len(), 2);
    dev.run(&["rollback"], &[]).success();

    // Unsigned local commit.
    let src = w.root.join("unsigned");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(src.join("usr/lib/modules/6.1.0-test")).unwrap();
    write(&src.join("usr/lib/modules/6.1.0-test/vmlinuz"), b"k");
    update([
        "commit",
        "--repo",
        dev.repo().to_str().unwrap(),
        "-b",
        "local",
        src.to_str().unwrap(),
        "--timestamp",
        "1800000000",
    ])
    .success();
    let entries = dev.entries();
    let run = dev.run(&["deploy", "local"], &[]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("is unsigned"),
        "{}",
        run.describe()
    );
    assert_eq!(dev.entries(), entries);
    let run = dev.run(&["deploy", "local", "--no-verify"], &[]);
    run.success();
    assert!(run.stderr.contains("WARNING"), "{}", run.describe());

    // No kernel in the tree.
    std::fs::remove_dir_all(src.join("usr/lib/modules")).unwrap();
    update([
        "commit",
        "--repo",
        dev.repo().to_str().unwrap(),
        "-b",
        "nokernel",
        src.to_str().unwrap(),
        "--timestamp",
        "1800000001",
    ])
    .success();
    let entries = dev.entries();
    let n2 = deployments();
    let run = dev.run(&["deploy", "nokernel", "--no-verify"], &[]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("no /usr/lib/modules"),
        "{}",
        run.describe()
    );
    assert_eq!(dev.entries(), entries);
    assert_eq!(deployments(), n2, "no staging tree left behind");
    let _ = (before, n);

    // Bad arguments.
    let run = dev.run(&["deploy", "origin:main", "--karg", "a b"], &[]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("kernel argument"),
        "{}",
        run.describe()
    );
    let run = dev.run(
        &["deploy", "origin:main", "--karg", "update.deployment=x"],
        &[],
    );
    assert!(
        run.code() == Some(1) && run.stderr.contains("set by `update deploy`"),
        "{}",
        run.describe()
    );
    let run = update([
        "sysroot",
        "init",
        "--sysroot",
        w.root.to_str().unwrap(),
        "--os",
        "../x",
    ]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("OS name"),
        "{}",
        run.describe()
    );
    let run = update([
        "status",
        "--sysroot",
        w.root.join("nothing").to_str().unwrap(),
    ]);
    assert!(
        run.code() == Some(1) && run.stderr.contains("not a sysroot"),
        "{}",
        run.describe()
    );
}

#[test]
fn boot_partition_on_ext4_and_prepare_root_plan() {
    let w = world();
    release(&w, "1", 1_700_000_000);
    let dev = Device::on_boot_partition(&w, "plain");
    dev.pull();
    dev.run(&["deploy"], &["origin:main"]).success();
    let sysroot = &dev.sysroot;
    assert_eq!(dev.entries(), ["update-os-1+3.conf"]);
    let entry =
        std::fs::read_to_string(sysroot.join("boot/loader/entries/update-os-1+3.conf")).unwrap();
    let opts = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap();
    let cmdline = w.root.join("cmdline");
    std::fs::write(&cmdline, opts).unwrap();
    let run = update([
        "prepare-root",
        "--dry-run",
        "--sysroot",
        sysroot.to_str().unwrap(),
        "--proc-cmdline",
        cmdline.to_str().unwrap(),
    ]);
    run.success();
    assert!(run.out().contains("update/deploy/os/var"), "{}", run.out());
    std::fs::write(
        &cmdline,
        "update.deployment=os/0000000000000000000000000000000000000000000000000000000000000000.0",
    )
    .unwrap();
    let run = update([
        "prepare-root",
        "--dry-run",
        "--sysroot",
        sysroot.to_str().unwrap(),
        "--proc-cmdline",
        cmdline.to_str().unwrap(),
    ]);
    assert!(
        run.code() == Some(1)
            && run
                .stderr
                .contains("0000000000000000000000000000000000000000000000000000000000000000.0"),
        "{}",
        run.describe()
    );
}

/// Unmounts on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn no_space_on_the_boot_partition_is_refused_before_anything_is_written() {
    testkit::require_root!("mounting a tmpfs as a small boot partition");
    let w = World::new();
    make_bootable(&w, &testkit::tree::rand_bytes(3 << 20, 9));
    release(&w, "1", 1_700_000_000);
    let dev = Device::new(&w, "dev");
    dev.pull();
    // A 1 MiB boot partition for a 3 MiB kernel.
    let small = w.root.join("small-esp");
    std::fs::create_dir_all(&small).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "mounting a tmpfs needs root (the test suite runs as root)"
    );
    let _m = Mounted(small.clone());
    let run = dev.run(
        &[
            "deploy",
            "origin:main",
            "--boot-dir",
            small.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("not enough free space")
            && run.stderr.contains(small.to_str().unwrap())
            && run.stderr.contains("bytes needed"),
        "{}",
        run.describe()
    );
    let left: Vec<_> = std::fs::read_dir(dev.sysroot.join("update/deploy/os/deploy"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "nothing left in the deploy directory");
    let entries: Vec<_> = std::fs::read_dir(small.join("loader/entries"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(entries.iter().all(|n| *n == 0), "no entry written");
    // With room, the same deploy succeeds.
    dev.deploy(&[]);
    assert_eq!(dev.entries().len(), 1);
}
