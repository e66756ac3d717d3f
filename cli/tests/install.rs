//! `update install to-disk` and `to-filesystem`: an image file built without root, checked
//! from the outside with sfdisk, mtools and debugfs; the refusals; an install killed after
//! each stage and rerun; and (as root) loop devices: mounted, a partition, end to end.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, update_bin, Run};

const DEADLINE: Duration = Duration::from_secs(300);
/// The root partition's offset with the default 512 MiB ESP.
const ROOT_OFFSET: u64 = 513 << 20;

/// Runs commands as root or, when this test runs as root, as nobody (65534): the image
/// must not need root.
struct Builder {
    dir: tempfile::TempDir,
    nobody: bool,
}

impl Builder {
    fn new() -> Builder {
        let dir = tempfile::tempdir().unwrap();
        let nobody = testkit::is_root();
        if nobody {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        Builder { dir, nobody }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, program: &Path) -> Command {
        if self.nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn update(&self, args: &[&str]) -> Run {
        let mut c = self.cmd(update_bin());
        c.args(args).current_dir(self.dir.path());
        run_command(c, DEADLINE)
    }

    fn sh(&self, script: &str) {
        let mut c = self.cmd(Path::new("sh"));
        c.args(["-ec", script]).current_dir(self.dir.path());
        run_command(c, DEADLINE).success();
    }

    /// A repository of `mode` with a signed bootable commit on `os/main`, and the key.
    fn repo(&self, mode: &str, sign: bool) {
        self.update(&["init", "--repo", "repo", "--mode", mode])
            .success();
        self.update(&["key", "generate", "--output", "release"])
            .success();
        self.sh(
            "mkdir -p src/usr/lib/modules/6.1.0-x src/usr/etc src/efi src/var src/usr/bin \
               src/usr/lib/systemd/boot/efi
             echo kernel-6.1.0-x > src/usr/lib/modules/6.1.0-x/vmlinuz
             echo initramfs > src/usr/lib/modules/6.1.0-x/initramfs.img
             echo fake-systemd-boot > src/usr/lib/systemd/boot/efi/systemd-bootx64.efi
             printf 'ID=testos\\nNAME=Test\\n' > src/usr/etc/os-release
             echo '# static file system information' > src/usr/etc/fstab
             echo hello > src/usr/bin/hello",
        );
        let mut args = vec!["commit", "--repo", "repo", "--branch", "os/main"];
        if sign {
            args.extend(["--sign-with", "release"]);
        }
        args.push("src");
        self.update(&args).success();
    }

    fn install(&self, target: &str, extra: &[&str]) -> Run {
        self.install_ref(target, "os/main", extra)
    }

    fn install_ref(&self, target: &str, rev: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "install",
            "to-disk",
            target,
            "--repo",
            "repo",
            "--ref",
            rev,
            "--key",
            "release=release.pub",
            "--source",
            "http://10.0.2.2:8080/repo#os/main",
            "--karg",
            "console=ttyS0",
        ];
        args.extend_from_slice(extra);
        self.update(&args)
    }
}

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `debugfs -R REQUEST` on the root filesystem inside the image.
fn debugfs(image: &Path, request: &str) -> String {
    let spec = format!("{}?offset={ROOT_OFFSET}", image.display());
    tool("debugfs", &["-R", request, &spec])
}

fn mtype(image: &Path, path: &str) -> String {
    tool("mtype", &["-i", &format!("{}@@1M", image.display()), path])
}

/// The deployment directory inside the root filesystem.
fn deployment(image: &Path) -> String {
    let ls = debugfs(image, "ls -p /update/deploy/testos/deploy");
    let name = ls
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .find(|n| n.len() > 64 && !n.ends_with(".origin"))
        .unwrap_or_else(|| panic!("no deployment in {ls}"))
        .to_owned();
    format!("/update/deploy/testos/deploy/{name}")
}

/// Everything a booting device reads, checked from outside the image.
fn assert_bootable(image: &Path) {
    let json: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", image.to_str().unwrap()])).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(json["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 2, "{json}");
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(parts[0]["size"], 512 * 2048);
    assert_eq!(parts[1]["type"], "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
    assert_eq!(parts[1]["start"].as_u64().unwrap() * 512, ROOT_OFFSET);

    // The ESP: loader.conf as `sysroot init --esp` writes it, systemd-boot from the commit
    // at both paths, the entry and the kernel it names.
    let loader = mtype(image, "::/loader/loader.conf");
    assert!(
        loader.contains("timeout 0") && !loader.contains("\ndefault"),
        "{loader}"
    );
    assert_eq!(
        mtype(image, "::/EFI/systemd/systemd-bootx64.efi"),
        "fake-systemd-boot\n"
    );
    assert_eq!(
        mtype(image, "::/EFI/BOOT/BOOTX64.EFI"),
        "fake-systemd-boot\n"
    );
    let entries = tool(
        "mdir",
        &[
            "-b",
            "-i",
            &format!("{}@@1M", image.display()),
            "::/loader/entries",
        ],
    );
    let entry_path = entries
        .lines()
        .find(|l| l.ends_with(".conf"))
        .expect("an entry")
        .trim()
        .to_owned();
    assert!(entry_path.contains("update-testos-1+3.conf"), "{entries}");
    let entry = mtype(image, &entry_path);
    let linux = entry
        .lines()
        .find_map(|l| l.strip_prefix("linux "))
        .expect("linux line");
    assert_eq!(mtype(image, &format!("::{linux}")), "kernel-6.1.0-x\n");

    // The root filesystem: sysroot.toml names the ESP where the device mounts it, the
    // entry's root= is this filesystem's UUID.
    let toml = debugfs(image, "cat /update/sysroot.toml");
    assert!(toml.contains("boot = \"/efi\""), "{toml}");
    assert!(toml.contains("boot-kind = \"esp\""), "{toml}");
    let uuid = debugfs(image, "stats");
    let uuid = uuid
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem UUID:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        entry.contains(&format!(
            "options root=UUID={uuid} rw console=ttyS0 update.deployment=testos/"
        )),
        "{entry}"
    );

    let dep = deployment(image);
    // Files of the deployment are hardlinks of the repository's objects.
    let stat = debugfs(image, &format!("stat {dep}/usr/bin/hello"));
    assert!(stat.contains("Links: 2"), "{stat}");
    // The device's front end: source and key, as `update config` writes them.
    let config = debugfs(image, &format!("cat {dep}/etc/update/update.toml"));
    assert!(
        config.contains("source = \"http://10.0.2.2:8080/repo#os/main\""),
        "{config}"
    );
    assert!(
        config.contains("[keys]") && config.contains("release = "),
        "{config}"
    );
    // The ESP mounted at /efi by its vfat UUID, after the commit's own fstab.
    let fstab = debugfs(image, &format!("cat {dep}/etc/fstab"));
    let vfat = tool("minfo", &["-i", &format!("{}@@1M", image.display()), "::"]);
    let serial = vfat
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial number:"))
        .expect("a serial number")
        .trim()
        .to_uppercase();
    let want = format!("UUID={}-{} /efi vfat", &serial[..4], &serial[4..]);
    assert!(
        fstab.starts_with("# static file system information\n") && fstab.contains(&want),
        "{fstab}\nwant {want}"
    );
    // The remote the built-in backend keeps in step with the config, and its ref.
    let remotes = debugfs(image, "ls -p /update/repo/remotes");
    assert!(remotes.contains("/update/"), "{remotes}");
}

#[test]
fn to_disk_builds_a_bootable_image_without_root() {
    let b = Builder::new();
    b.repo("bare", true);
    let run = b.install("disk.img", &["--size", "1G", "--schedule", "minute 5"]);
    run.success();
    assert!(
        run.stdout.contains(
            "systemd-boot from the commit's /usr/lib/systemd/boot/efi/systemd-bootx64.efi"
        ),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("hardlinked"), "{}", run.describe());
    let image = b.path("disk.img");
    assert_bootable(&image);
    let dep = deployment(&image);
    let timer = debugfs(
        &image,
        &format!("cat {dep}/etc/systemd/system/update.timer"),
    );
    assert!(timer.contains("OnCalendar="), "{timer}");
    // Nothing left beside the image.
    let left: Vec<_> = std::fs::read_dir(b.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().contains("update-install")),
        "{left:?}"
    );
    if b.nobody {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&image).unwrap().uid(),
            65534,
            "built by nobody"
        );
    }
}

#[test]
fn to_disk_unpacks_an_archive_repository() {
    let b = Builder::new();
    b.repo("archive", true);
    let run = b.install("disk.img", &["--size", "1G"]);
    run.success();
    assert!(run.stdout.contains("0 hardlinked"), "{}", run.describe());
    assert_bootable(&b.path("disk.img"));
}

#[test]
fn to_disk_refuses_before_writing() {
    let b = Builder::new();
    b.repo("bare", true);
    let cases = [
        (
            "small.img",
            "os/main",
            "560M",
            "too small: 587202560 bytes leave a root partition of 48234496 bytes",
        ),
        ("tiny.img", "os/main", "100M", "too small"),
        ("missing.img", "os/nope", "1G", "os/nope"),
        (
            "src",
            "os/main",
            "1G",
            "is a directory, not a block device or an image file",
        ),
    ];
    for (target, rev, size, needle) in cases {
        let run = b.install_ref(target, rev, &["--size", size]);
        assert_eq!(run.code(), Some(1), "{}", run.describe());
        assert!(
            run.stderr.contains(needle),
            "want {needle:?}\n{}",
            run.describe()
        );
        if target != "src" {
            assert!(
                !b.path(target).exists(),
                "{target} was written\n{}",
                run.describe()
            );
        }
    }
    // An existing image file is kept unless --force.
    std::fs::write(b.path("old.img"), b"precious").unwrap();
    let run = b.install("old.img", &["--size", "1G"]);
    assert!(
        run.stderr
            .contains("old.img: exists already; give --force to replace it"),
        "{}",
        run.describe()
    );
    assert_eq!(std::fs::read(b.path("old.img")).unwrap(), b"precious");
    b.install("old.img", &["--size", "1G", "--force"]).success();
    assert_bootable(&b.path("old.img"));
}

#[test]
fn to_disk_refuses_an_unsigned_commit_unless_told() {
    let b = Builder::new();
    b.repo("bare", false);
    let run = b.install("disk.img", &["--size", "1G"]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stderr.contains("is unsigned"), "{}", run.describe());
    assert!(!b.path("disk.img").exists());
    let run = b.install("disk.img", &["--size", "1G", "--no-verify"]);
    run.success();
    assert!(
        run.stdout.contains("signature: NOT VERIFIED"),
        "{}",
        run.describe()
    );
}

/// Killed (SIGKILL, by strace) right after each external tool returns: the target is not
/// there, or not a disk, and the rerun says so and builds it.
#[test]
fn to_disk_killed_after_each_stage_starts_over() {
    testkit::require_tool("strace");
    let b = Builder::new();
    b.repo("bare", true);
    let strace = which("strace");
    for n in 1..=4 {
        let img = format!("k{n}.img");
        let mut c = b.cmd(&strace);
        c.args([
            "-o",
            "/dev/null",
            &format!("-einject=wait4:signal=KILL:when={n}"),
        ])
        .arg(update_bin())
        .args([
            "install", "to-disk", &img, "--size", "1G", "--repo", "repo", "--ref", "os/main",
        ])
        .args([
            "--key",
            "release=release.pub",
            "--source",
            "http://10.0.2.2:8080/repo",
        ])
        .current_dir(b.dir.path());
        let run = run_command(c, DEADLINE);
        assert_ne!(
            run.code(),
            Some(0),
            "not killed at wait4 #{n}\n{}",
            run.describe()
        );
        assert!(
            !b.path(&img).exists(),
            "killed at wait4 #{n}, yet {img} is there"
        );
        let run = b.install(&img, &["--size", "1G"]);
        run.success();
        assert!(
            run.stderr.contains(&format!(
                "{img} holds an install that did not finish; starting over"
            )),
            "{}",
            run.describe()
        );
        assert_bootable(&b.path(&img));
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}

/// A loop device, detached on drop.
struct Loop(String);

impl Loop {
    fn new(file: &Path, partscan: bool) -> Loop {
        let mut args = vec!["--find", "--show"];
        if partscan {
            args.push("-P");
        }
        let f = file.to_str().unwrap();
        args.push(f);
        Loop(tool("losetup", &args).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// An unmount on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn to_disk_onto_loop_devices() {
    testkit::require_root!("loop devices");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let run = |args: &[&str]| {
        let mut c = Command::new(update_bin());
        c.args(args).current_dir(root);
        run_command(c, DEADLINE)
    };
    run(&["init", "--repo", "repo", "--mode", "bare"]).success();
    run(&["key", "generate", "--output", "release"]).success();
    for (p, text) in [
        ("src/usr/lib/modules/6.1.0-x/vmlinuz", "kernel-6.1.0-x\n"),
        ("src/usr/lib/modules/6.1.0-x/initramfs.img", "initramfs\n"),
        (
            "src/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
            "fake-systemd-boot\n",
        ),
        ("src/usr/etc/os-release", "ID=testos\n"),
        ("src/usr/etc/fstab", "# static file system information\n"),
        ("src/usr/bin/hello", "hello\n"),
    ] {
        std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
        std::fs::write(root.join(p), text).unwrap();
    }
    std::fs::create_dir_all(root.join("src/efi")).unwrap();
    run(&[
        "commit",
        "--repo",
        "repo",
        "--branch",
        "os/main",
        "--sign-with",
        "release",
        "src",
    ])
    .success();
    let install = |target: &str| {
        run(&[
            "install",
            "to-disk",
            target,
            "--repo",
            "repo",
            "--ref",
            "os/main",
            "--key",
            "release=release.pub",
            "--source",
            "http://10.0.2.2:8080/repo#os/main",
            "--karg",
            "console=ttyS0",
        ])
    };
    let backing = root.join("backing.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();

    // A mounted one is refused, and left as it was.
    {
        let lo = Loop::new(&backing, false);
        tool("mkfs.ext4", &["-q", &lo.0]);
        let mnt = root.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        tool("mount", &[&lo.0, mnt.to_str().unwrap()]);
        let _m = Mount(mnt.clone());
        let r = install(&lo.0);
        assert_eq!(r.code(), Some(1), "{}", r.describe());
        assert!(
            r.stderr.contains("is mounted at") && r.stderr.contains(mnt.to_str().unwrap()),
            "{}",
            r.describe()
        );
    }
    // A disk image with a partition: the partition is refused, the whole disk is taken.
    let lo = Loop::new(&backing, false);
    let r = install(&lo.0);
    r.success();
    drop(lo);
    assert_bootable(&backing);
    let lo = Loop::new(&backing, true);
    let name = Path::new(&lo.0)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // The scan at attach does not always list them without udev; partx asks again.
    let _ = Command::new("partx").args(["-a", &lo.0]).status();
    let dev = std::fs::read_to_string(format!("/sys/block/{name}/{name}p1/dev"))
        .expect("partition scanned");
    let (maj, min) = dev.trim().split_once(':').unwrap();
    let node = root.join("p1");
    tool("mknod", &[node.to_str().unwrap(), "b", maj, min]);
    let r = install(node.to_str().unwrap());
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(
        r.stderr.contains(&format!(
            "is a partition of {name}; give the whole disk (/dev/{name})"
        )),
        "{}",
        r.describe()
    );
    // An install onto a block device that was cut off: the marker says so.
    drop(lo);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap();
        f.write_all(b"update-install: unfinished\n").unwrap();
    }
    let lo = Loop::new(&backing, false);
    let r = install(&lo.0);
    r.success();
    assert!(
        r.stderr
            .contains("holds an install that did not finish; starting over"),
        "{}",
        r.describe()
    );
    drop(lo);
    assert_bootable(&backing);
}

/// `to-filesystem` into directories: without a mount, root= must be given; with it, the
/// sysroot and ESP are laid out in place, the ESP without an fstab line (said).
#[test]
fn to_filesystem_needs_root_karg_off_a_mount_and_lays_out_in_place() {
    let b = Builder::new();
    b.repo("bare", true);
    b.sh("mkdir -p mnt/root mnt/esp");
    let base = [
        "install",
        "to-filesystem",
        "mnt/root",
        "--esp",
        "mnt/esp",
        "--repo",
        "repo",
        "--ref",
        "os/main",
        "--key",
        "release=release.pub",
        "--source",
        "http://10.0.2.2:8080/repo",
    ];
    let run = b.update(&base);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stderr.contains("mnt/root: cannot tell the filesystem UUID for root= (mnt/root is not a mount point); give --root-karg"), "{}", run.describe());
    assert!(
        std::fs::read_dir(b.path("mnt/root"))
            .unwrap()
            .next()
            .is_none(),
        "nothing written"
    );
    let mut args = base.to_vec();
    args.extend(["--root-karg", "root=/dev/md0"]);
    let run = b.update(&args);
    run.success();
    assert!(
        run.stdout.contains("root=/dev/md0 (as given)"),
        "{}",
        run.describe()
    );
    assert!(
        run.stderr
            .contains("warning: no /etc/fstab line for the ESP"),
        "{}",
        run.describe()
    );
    let toml = std::fs::read_to_string(b.path("mnt/root/update/sysroot.toml")).unwrap();
    assert!(
        toml.contains("boot = \"/efi\"") && toml.contains("root=/dev/md0"),
        "{toml}"
    );
    assert_eq!(
        std::fs::read(b.path("mnt/esp/EFI/BOOT/BOOTX64.EFI")).unwrap(),
        b"fake-systemd-boot\n"
    );
    let entries: Vec<_> = std::fs::read_dir(b.path("mnt/esp/loader/entries"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(entries.len(), 1);
    // Not empty any more: a second install is refused.
    let run = b.update(&args);
    assert!(
        run.stderr.contains("not empty (holds update)"),
        "{}",
        run.describe()
    );
}
