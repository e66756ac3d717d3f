//! The Debian package (issue 15): `scripts/build-deb.sh` builds `update_VERSION_ARCH.deb`, each
//! file lands in its Debian place, lintian finds no error, and the package installs into a
//! real Debian chroot with `apt install ./update_*.deb`, where `update-initramfs` (run by the
//! package's trigger) puts the early-boot binary and the boot script into the initramfs. The
//! dracut module builds into a dracut initramfs.
//!
//! The package is built once per test run, into a temp dir, with the release build in the
//! cargo target dir the tests run in (`CARGO_TARGET_DIR`, else the workspace's `target/`), so
//! only the first run pays for it. The chroot test needs root and the debootstrap tree at
//! /var/tmp/deb-trial/root (it works on a copy); the dracut test needs root (a private mount
//! namespace) and dracut.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, workspace_root, Run};

/// The debootstrap bookworm rootfs (systemd, initramfs-tools, a kernel) the chroot test copies.
const TRIAL_ROOT: &str = "/var/tmp/deb-trial/root";

/// No step here should take longer: the release build on a cold target dir, then each
/// package, chroot or initramfs step.
const DEADLINE: Duration = Duration::from_secs(1800);

/// Run `cmd`, failing the test with its output unless it succeeds.
fn ok(cmd: &mut Command) -> Run {
    let cmd = std::mem::replace(cmd, Command::new("false"));
    let run = run_command(cmd, DEADLINE);
    run.success();
    run
}

/// The .deb under test (testkit::deb: `$UPDATE_DEB`, or built once per test binary).
fn deb() -> &'static Path {
    testkit::deb::deb()
}

/// `[workspace.package] version` of the root Cargo.toml.
fn workspace_version() -> String {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let table: toml::Table = manifest.parse().unwrap();
    table["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One line of `dpkg-deb -c`: mode string, owner, path (without the leading `.`), symlink
/// target.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
    path: String,
}

fn contents(deb: &Path) -> Vec<Entry> {
    let run = ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    run.stdout
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            Entry {
                mode: cols[0].to_owned(),
                owner: cols[1].to_owned(),
                path: cols[5].trim_start_matches('.').to_owned(),
            }
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    let run = ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name));
    run.stdout.trim().to_owned()
}

#[test]
fn deb_puts_each_file_in_its_debian_place() {
    let deb = deb();
    let entries = contents(deb);
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} is not in the package: {entries:#?}"))
    };
    let executables = [
        "/usr/bin/update",
        "/usr/lib/update/update-prepare-root",
        "/usr/share/initramfs-tools/hooks/update",
        "/usr/share/initramfs-tools/scripts/local-bottom/update",
        "/usr/lib/dracut/modules.d/50update/module-setup.sh",
        "/usr/lib/dracut/modules.d/50update/update-prepare-root.sh",
    ];
    for path in executables {
        assert_eq!(find(path).mode, "-rwxr-xr-x", "{path}");
    }
    let mut files = vec![
        "/usr/share/man/man1/update.1.gz".to_owned(),
        "/usr/share/man/man1/update-deploy.1.gz".to_owned(),
        "/usr/share/bash-completion/completions/update".to_owned(),
        "/usr/share/zsh/vendor-completions/_update".to_owned(),
        "/usr/share/fish/vendor_completions.d/update.fish".to_owned(),
        "/usr/share/doc/update/copyright".to_owned(),
        "/usr/share/doc/update/changelog.Debian.gz".to_owned(),
    ];
    // Every unit the repository ships, where Debian 12 keeps them.
    for unit in std::fs::read_dir(workspace_root().join("dist/systemd")).unwrap() {
        let name = unit.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".service") || name.ends_with(".timer") {
            files.push(format!("/lib/systemd/system/{name}"));
        }
    }
    for path in &files {
        assert_eq!(find(path).mode, "-rw-r--r--", "{path}");
    }
    for e in &entries {
        assert_eq!(e.owner, "root/root", "{e:?}");
        assert!(
            e.mode == "drwxr-xr-x" || e.mode == "-rw-r--r--" || e.mode == "-rwxr-xr-x",
            "{e:?}"
        );
    }

    assert_eq!(field(deb, "Package"), "update");
    assert_eq!(field(deb, "Version"), format!("{}-1", workspace_version()));
    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field(deb, "Architecture"), arch.stdout.trim());
    let depends = field(deb, "Depends");
    assert!(depends.starts_with("libc6 (>= 2."), "Depends: {depends}");

    // The control area: md5sums of every file, the maintainer scripts, the trigger.
    let control = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(control.path()));
    let md5sums = std::fs::read_to_string(control.path().join("md5sums")).unwrap();
    for path in executables
        .iter()
        .copied()
        .chain(files.iter().map(String::as_str))
    {
        let relative = path.trim_start_matches('/');
        assert!(
            md5sums
                .lines()
                .any(|l| l.ends_with(&format!("  {relative}"))),
            "{relative} not in md5sums:\n{md5sums}"
        );
    }
    let triggers = std::fs::read_to_string(control.path().join("triggers")).unwrap();
    assert!(
        triggers
            .lines()
            .any(|l| l == "activate-noawait update-initramfs"),
        "{triggers}"
    );
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    let units = postinst
        .lines()
        .find_map(|l| l.strip_prefix("UNITS=\""))
        .unwrap_or_else(|| panic!("postinst names no UNITS:\n{postinst}"));
    for unit in ["update-mark-good.service", "update-finalize.service"] {
        assert!(
            units.split(['"', ' ']).any(|u| u == unit),
            "postinst does not enable {unit}:\n{postinst}"
        );
    }
}

#[test]
fn deb_is_lintian_clean_of_errors() {
    let deb = deb();
    if Command::new("lintian").arg("--version").output().is_err() {
        testkit::skip(
            "lintian is not installed",
            "scripts/install-deps.sh installs it",
        );
        return;
    }
    let mut lintian = Command::new("lintian");
    lintian
        .args(["--fail-on", "error", "--tag-display-limit", "0"])
        .arg(deb);
    let run = run_command(lintian, DEADLINE);
    assert_eq!(
        run.code(),
        Some(0),
        "lintian found errors: {}",
        run.describe()
    );
}

/// Bind mounts of /proc, /sys and /dev into a chroot, undone (deepest first) on drop.
struct Binds(Vec<PathBuf>);

impl Drop for Binds {
    fn drop(&mut self) {
        for target in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(target).status();
        }
    }
}

/// Run a shell script in the chroot at `root`, without network (a network namespace of its
/// own), failing the test unless it succeeds.
fn chroot(root: &Path, script: &str) -> Run {
    ok(Command::new("unshare")
        .args(["--net", "chroot"])
        .arg(root)
        .args(["/bin/sh", "-ec", script])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

/// What `lsinitramfs` lists for the chroot's one kernel.
fn initramfs_listing(root: &Path) -> String {
    chroot(root, "lsinitramfs /boot/initrd.img-*").stdout
}

/// THE use case: `apt install ./update_*.deb` in an image chroot where systemd is not running.
/// Runtime here: about 2.5 min on 2 busy cores (two initramfs builds, about 60 s each).
#[test]
#[ignore = "about 2.5 min: copies a Debian rootfs and builds its initramfs twice"]
fn deb_installs_into_a_debian_chroot_and_its_initramfs_gets_the_hook() {
    testkit::require_root!("chroot, bind mounts and a copy of a root-owned tree");
    if !Path::new(TRIAL_ROOT)
        .join("usr/sbin/update-initramfs")
        .exists()
    {
        testkit::skip(
            "no Debian rootfs with initramfs-tools at /var/tmp/deb-trial/root",
            "make one with debootstrap bookworm, with systemd-sysv, linux-image-amd64 and initramfs-tools",
        );
        return;
    }
    let deb = deb();
    let work = tempfile::Builder::new()
        .prefix("deb-chroot.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = work.path().join("root");
    ok(Command::new("cp").arg("-a").arg(TRIAL_ROOT).arg(&root));
    let mut binds = Binds(Vec::new());
    for fs in ["proc", "sys", "dev"] {
        let target = root.join(fs);
        ok(Command::new("mount")
            .args(["--rbind", "--make-rslave"])
            .arg(format!("/{fs}"))
            .arg(&target));
        binds.0.push(target);
    }
    std::fs::copy(deb, root.join("tmp/update.deb")).unwrap();

    let before = initramfs_listing(&root);
    assert!(!before.contains("update-prepare-root"), "{before}");

    // apt resolves Depends against the chroot's dpkg status: no network needed. Without
    // --no-install-recommends apt would download systemd-boot-efi (Recommends).
    let run = chroot(
        &root,
        "apt-get install -y --no-install-recommends ./tmp/update.deb",
    );
    assert!(
        run.stdout.contains("update-initramfs") || run.stderr.contains("update-initramfs"),
        "the trigger did not run update-initramfs: {}",
        run.describe()
    );
    // postinst enabled the units with an [Install] section, without systemd running.
    let wants = root.join("etc/systemd/system/basic.target.wants/update-mark-good.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/lib/systemd/system/update-mark-good.service")
    );
    // The trigger's update-initramfs took the hook and the boot script.
    let listing = initramfs_listing(&root);
    for path in [
        "usr/lib/update/update-prepare-root",
        "scripts/local-bottom/update",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} is not in the initramfs:\n{listing}"
        );
    }
    let order = chroot(
        &root,
        "d=$(mktemp -d); cd $d; unmkinitramfs /boot/initrd.img-* .; \
         cat main/scripts/local-bottom/ORDER 2>/dev/null || cat scripts/local-bottom/ORDER; \
         rm -rf $d",
    );
    assert!(
        order.stdout.contains("/scripts/local-bottom/update"),
        "the boot script is not in local-bottom/ORDER: {}",
        order.describe()
    );

    // Purge: the units' symlinks go, and the next initramfs has no hook.
    chroot(&root, "apt-get purge -y update");
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "purge left {}",
        wants.display()
    );
    let after = initramfs_listing(&root);
    assert!(!after.contains("update-prepare-root"), "{after}");

    drop(binds);
}

/// The dracut module: in a private mount namespace the package's files are laid over /usr
/// (an overlay, so the machine's /usr is untouched) and dracut builds an initramfs with it.
#[test]
fn dracut_module_builds_into_an_initramfs() {
    testkit::require_root!("a private mount namespace with an overlay on /usr");
    if Command::new("dracut").arg("--help").output().is_err() {
        testkit::skip(
            "dracut is not installed",
            "scripts/install-deps.sh installs dracut-core",
        );
        return;
    }
    let deb = deb();
    let work = tempfile::tempdir().unwrap();
    let unpacked = work.path().join("unpacked");
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked));
    let (upper, scratch) = (work.path().join("upper"), work.path().join("work"));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::rename(unpacked.join("usr"), &upper).unwrap();
    let image = work.path().join("initramfs.img");
    let script = format!(
        "mount --make-rprivate / && \
         mount -t overlay overlay -o lowerdir=/usr,upperdir={upper},workdir={scratch} /usr && \
         dracut --quiet --force --no-kernel --no-hostonly --no-compress \
           --modules 'base update' {image}",
        upper = upper.display(),
        scratch = scratch.display(),
        image = image.display(),
    );
    ok(Command::new("unshare").args(["--mount", "sh", "-ec", &script]));
    let listing = ok(Command::new("lsinitrd").arg(&image)).stdout;
    let has = |path: &str| listing.lines().any(|l| l.ends_with(&format!(" {path}")));
    assert!(has("usr/lib/update/update-prepare-root"), "{listing}");
    assert!(
        has("usr/lib/dracut/hooks/pre-pivot/50-update-prepare-root.sh"),
        "{listing}"
    );
}
