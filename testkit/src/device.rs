//! A device for deploy tests: a sysroot with an ESP directory, the builder's remote added to
//! its repository, and a stand-in for the firmware that picks an entry the way systemd-boot
//! does and counts the try by renaming it. The real firmware is exercised by the VM test.

use std::path::{Path, PathBuf};

use deploy::bls::{boot_order, EntriesDir};

use crate::cli::{update, Run};
use crate::world::{write, World};

/// A kernel and initramfs in the builder's source tree, and `/etc` defaults in `/usr/etc`.
pub fn make_bootable(w: &World, kernel: &[u8]) {
    let _ = std::fs::remove_dir_all(w.src.join("etc"));
    write(&w.src.join("usr/lib/modules/6.1.0-test/vmlinuz"), kernel);
    write(
        &w.src.join("usr/lib/modules/6.1.0-test/initramfs.img"),
        b"initramfs",
    );
    write(&w.src.join("usr/etc/os-release"), b"NAME=test\n");
    write(&w.src.join("usr/etc/app.conf"), b"level=1\n");
}

/// A sysroot at `root/name` tracking the builder's `origin`.
pub struct Device {
    /// The physical root.
    pub sysroot: PathBuf,
    /// The boot partition: the ESP, or SYSROOT/boot for [`Device::on_boot_partition`].
    pub esp: PathBuf,
    /// The kernel command line the next command sees as booted.
    pub cmdline: PathBuf,
}

impl Device {
    /// Lay out a sysroot for OS `os` with its entries on an ESP, and add the builder's
    /// remote as `origin`.
    pub fn new(w: &World, name: &str) -> Device {
        Device::init(w, name, true)
    }

    /// The same with the entries on an ext4-style `SYSROOT/boot` (`sysroot init` without
    /// `--esp`).
    pub fn on_boot_partition(w: &World, name: &str) -> Device {
        Device::init(w, name, false)
    }

    fn init(w: &World, name: &str, esp: bool) -> Device {
        let sysroot = w.root.join(name);
        std::fs::create_dir_all(&sysroot).unwrap();
        let boot = sysroot.join(if esp { "efi" } else { "boot" });
        let mut args = vec!["sysroot", "init", "--sysroot", s(&sysroot), "--os", "os"];
        if esp {
            args.extend(["--esp", s(&boot)]);
        }
        args.extend(["--karg", "root=/dev/vda2", "--karg", "quiet"]);
        update(args).success();
        let esp = boot;
        let repo = sysroot.join("update/repo");
        update([
            "remote",
            "add",
            "--repo",
            s(&repo),
            "origin",
            &w.url(),
            "--key",
            s(&w.pubkey()),
        ])
        .success();
        let cmdline = w.root.join(format!("{name}.cmdline"));
        std::fs::write(&cmdline, "BOOT_IMAGE=/vmlinuz quiet\n").unwrap();
        Device {
            sysroot,
            esp,
            cmdline,
        }
    }

    /// The repository.
    pub fn repo(&self) -> PathBuf {
        self.sysroot.join("update/repo")
    }

    /// Run an `update` command against this sysroot (`--sysroot` and `--proc-cmdline` added
    /// after the subcommand).
    pub fn run(&self, cmd: &[&str], extra: &[&str]) -> Run {
        let mut args: Vec<String> = cmd.iter().map(|a| a.to_string()).collect();
        args.extend(["--sysroot".into(), s(&self.sysroot).into()]);
        args.extend(["--proc-cmdline".into(), s(&self.cmdline).into()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        update(args)
    }

    /// Pull `origin:main`.
    pub fn pull(&self) {
        update(["pull", "--repo", s(&self.repo()), "origin:main"]).success();
    }

    /// Pull `origin:main` even if it moved back in time.
    pub fn pull_allow_downgrade(&self) {
        update([
            "pull",
            "--repo",
            s(&self.repo()),
            "origin:main",
            "--allow-downgrade",
        ])
        .success();
    }

    /// `update deploy origin:main --json`, returning its report.
    pub fn deploy(&self, extra: &[&str]) -> serde_json::Value {
        let mut e = vec!["origin:main", "--json"];
        e.extend_from_slice(extra);
        let run = self.run(&["deploy"], &e);
        run.success();
        serde_json::from_str(run.out().trim()).unwrap()
    }

    /// `update status --json` for OS `os`.
    pub fn status(&self) -> serde_json::Value {
        let run = self.run(&["status", "--json"], &[]);
        run.success();
        let v: serde_json::Value = serde_json::from_str(run.out().trim()).unwrap();
        v["oses"][0].clone()
    }

    /// Entry file names, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.esp.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Power on: pick the entry systemd-boot would, count the try by renaming it (what the
    /// firmware does), and make its options the booted command line. Returns the booted
    /// `COMMIT.SERIAL`.
    pub fn boot(&self) -> String {
        let dir = EntriesDir::open(&self.esp, false).unwrap();
        let mut entries = dir.list().unwrap();
        boot_order(&mut entries);
        let (name, entry) = entries.first().expect("an entry to boot").clone();
        if name.is_counting() && !name.is_bad() {
            let left = name.tries_left().unwrap();
            let done = name.tries_done().unwrap_or(0);
            let counted = deploy::bls::EntryName::parse(&format!(
                "{}+{}-{}.conf",
                name.stem(),
                left - 1,
                done + 1
            ))
            .unwrap();
            dir.rename(&name, &counted).unwrap();
        }
        let opts = entry.options();
        std::fs::write(&self.cmdline, format!("BOOT_IMAGE=/vmlinuz {opts}\n")).unwrap();
        let d = opts
            .split_whitespace()
            .find_map(|w| w.strip_prefix("update.deployment="))
            .unwrap();
        d.split_once('/').unwrap().1.to_owned()
    }

    /// The directory of deployment `id`.
    pub fn deployment(&self, id: &str) -> PathBuf {
        self.sysroot.join("update/deploy/os/deploy").join(id)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
