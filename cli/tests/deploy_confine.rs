//! `update deploy` never reaches outside its sysroot and never deploys a damaged copy
//! (issue 14, items 1-4): commits whose `usr`, `usr/etc` or kernel directory is a symlink
//! are refused before anything is written, kernel and `/etc` defaults are verified against
//! their object ids while copied, and special files left out of `/etc` are reported.
//!
//! Every refusal is checked the same way: a clear error, nothing changed outside the
//! sysroot, no new deployment, entry or boot file, `fsck` clean, and the next good commit
//! deploys.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use testkit::cli::update;
use testkit::device::{make_bootable, Device};
use testkit::world::{write, World};

/// Every path below `dir` (not following symlinks) with its content (files), target
/// (symlinks) or nothing (directories).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let v = if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                b"special".to_vec()
            };
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), v);
        }
    }
    out
}

/// A device that deployed, booted and marked good version 1; the world's source is ready
/// for the next commit.
fn booted() -> (World, Device, String) {
    let w = World::new();
    make_bootable(&w, b"kernel v1");
    w.commit("1", 1_700_000_000);
    w.publish(&[]);
    let dev = Device::new(&w, "dev");
    dev.pull();
    dev.deploy(&[]);
    let booted = dev.boot();
    dev.run(&["mark-good"], &[]).success();
    (w, dev, booted)
}

/// Publish the source as `version` and pull it.
fn release(w: &World, dev: &Device, version: &str, ts: u64) {
    w.commit(version, ts);
    w.publish(&[]);
    dev.pull();
}

/// What a refused deploy must leave alone.
struct Before {
    esp: BTreeMap<PathBuf, Vec<u8>>,
    deployments: BTreeMap<PathBuf, Vec<u8>>,
    outside: Vec<(PathBuf, BTreeMap<PathBuf, Vec<u8>>)>,
}

impl Before {
    fn take(dev: &Device, outside: &[&Path]) -> Before {
        Before {
            esp: snapshot(&dev.esp),
            deployments: snapshot(&dev.sysroot.join("update/deploy/os/deploy")),
            outside: outside
                .iter()
                .map(|p| (p.to_path_buf(), snapshot(p)))
                .collect(),
        }
    }

    /// `update deploy` fails naming every one of `needles`, and leaves everything as it was.
    fn refused(&self, dev: &Device, needles: &[&str]) {
        let run = dev.run(&["deploy"], &["origin:main"]);
        assert!(
            run.status.is_some_and(|s| !s.success()),
            "{}",
            run.describe()
        );
        for n in needles {
            assert!(run.stderr.contains(n), "{n:?} not in {}", run.describe());
        }
        self.unchanged(dev);
    }

    fn unchanged(&self, dev: &Device) {
        assert_eq!(snapshot(&dev.esp), self.esp, "the ESP changed");
        assert_eq!(
            snapshot(&dev.sysroot.join("update/deploy/os/deploy")),
            self.deployments,
            "the deployments changed"
        );
        for (p, s) in &self.outside {
            assert_eq!(&snapshot(p), s, "{} changed", p.display());
        }
    }
}

fn fsck_clean(dev: &Device) {
    update(["fsck", "--repo", dev.repo().to_str().unwrap()]).success();
}

/// Make the source good again (a real `/usr` with kernel and defaults), release it as
/// `version` and deploy it.
fn good_deploy_after(w: &World, dev: &Device, version: &str, ts: u64) {
    for p in ["usr", "etc"] {
        let p = w.src.join(p);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&p).unwrap();
        } else {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    make_bootable(w, b"kernel v1");
    write(&w.src.join("usr/bin/tool"), b"tool");
    release(w, dev, version, ts);
    let r = dev.deploy(&[]);
    assert_eq!(r["version"], version);
    fsck_clean(dev);
}

/// A directory outside every sysroot that looks like a `/usr` with a kernel.
fn host_usr(w: &World) -> PathBuf {
    let host = w.root.join("host-usr");
    write(&host.join("lib/modules/6.1.0-test/vmlinuz"), b"HOST KERNEL");
    write(&host.join("share/keep"), b"keep");
    host
}

#[test]
fn usr_symlink_to_an_absolute_path_is_refused() {
    let (w, dev, _) = booted();
    let host = host_usr(&w);
    std::fs::remove_dir_all(w.src.join("usr")).unwrap();
    std::os::unix::fs::symlink(&host, w.src.join("usr")).unwrap();
    write(&w.src.join("etc/app.conf"), b"level=2\n");
    release(&w, &dev, "2", 1_700_000_100);
    let before = Before::take(&dev, &[&host]);
    before.refused(
        &dev,
        &[
            "the commit's /usr must be a directory",
            &format!("a symlink to {}", host.display()),
        ],
    );
    assert!(!host.join("etc").exists());
    fsck_clean(&dev);
    good_deploy_after(&w, &dev, "3", 1_700_000_200);
}

#[test]
fn usr_symlink_to_parent_is_refused() {
    let (w, dev, _) = booted();
    std::fs::remove_dir_all(w.src.join("usr")).unwrap();
    std::os::unix::fs::symlink("..", w.src.join("usr")).unwrap();
    write(&w.src.join("etc/app.conf"), b"level=2\n");
    write(&w.src.join("lib/modules/6.1.0-test/vmlinuz"), b"kernel v2");
    release(&w, &dev, "2", 1_700_000_100);
    // `..` of the staging tree is the deployments directory, of a deployment too.
    let before = Before::take(&dev, &[&dev.sysroot.join("update")]);
    before.refused(
        &dev,
        &["the commit's /usr must be a directory", "a symlink to .."],
    );
    fsck_clean(&dev);
    good_deploy_after(&w, &dev, "3", 1_700_000_200);
}

#[test]
fn usr_etc_symlink_is_refused() {
    let (w, dev, _) = booted();
    let host_etc = w.root.join("host-etc");
    write(&host_etc.join("shadow"), b"secret\n");
    std::fs::remove_dir_all(w.src.join("usr/etc")).unwrap();
    std::os::unix::fs::symlink(&host_etc, w.src.join("usr/etc")).unwrap();
    release(&w, &dev, "2", 1_700_000_100);
    let before = Before::take(&dev, &[&host_etc]);
    before.refused(
        &dev,
        &[
            "the commit's /usr/etc must be a directory",
            &format!("a symlink to {}", host_etc.display()),
        ],
    );
    fsck_clean(&dev);
    good_deploy_after(&w, &dev, "3", 1_700_000_200);
}

#[test]
fn kernel_directory_symlink_to_a_host_directory_is_refused() {
    let (w, dev, _) = booted();
    let host = host_usr(&w);
    let kdir = host.join("lib/modules/6.1.0-test");
    std::fs::remove_dir_all(w.src.join("usr/lib/modules/6.1.0-test")).unwrap();
    std::os::unix::fs::symlink(&kdir, w.src.join("usr/lib/modules/6.1.0-test")).unwrap();
    release(&w, &dev, "2", 1_700_000_100);
    let before = Before::take(&dev, &[&host]);
    before.refused(
        &dev,
        &[
            "the commit's /usr/lib/modules/6.1.0-test must be a directory",
            &format!("a symlink to {}", kdir.display()),
        ],
    );
    assert!(!snapshot(&dev.esp)
        .values()
        .any(|v| v.as_slice() == b"HOST KERNEL"));
    fsck_clean(&dev);
    good_deploy_after(&w, &dev, "3", 1_700_000_200);
}

/// The bare object file holding `content` in the device's store, and its id.
fn object_with(dev: &Device, content: &[u8]) -> (PathBuf, String) {
    let objects = dev.repo().join("objects");
    for (rel, v) in snapshot(&objects) {
        let p = objects.join(&rel);
        if v == content && p.extension().is_some_and(|e| e == "file") {
            let fanout = rel.parent().unwrap().to_str().unwrap();
            let rest = p.file_stem().unwrap().to_str().unwrap();
            return (p.clone(), format!("{fanout}{rest}"));
        }
    }
    panic!("no object holds {:?}", String::from_utf8_lossy(content));
}

/// Flip one byte of a read-only object file; returns its original bytes.
fn flip_byte(path: &Path) -> Vec<u8> {
    let orig = std::fs::read(path).unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o200)).unwrap();
    let mut bad = orig.clone();
    bad[3] ^= 0x20;
    // In place: the inode is the one the checkout hardlinks.
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bad))
        .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    orig
}

fn restore(path: &Path, orig: &[u8]) {
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o200)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, orig))
        .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn fsck_reports(dev: &Device, id: &str) {
    let run = update(["fsck", "--repo", dev.repo().to_str().unwrap()]);
    assert!(
        run.status.is_some_and(|s| !s.success()),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains(id) || run.stderr.contains(id),
        "{}",
        run.describe()
    );
}

#[test]
fn corrupt_kernel_object_is_refused_naming_it() {
    let (w, dev, _) = booted();
    let kernel = b"kernel v2, not yet on the ESP";
    write(&w.src.join("usr/lib/modules/6.1.0-test/vmlinuz"), kernel);
    release(&w, &dev, "2", 1_700_000_100);
    let (path, id) = object_with(&dev, kernel);
    let orig = flip_byte(&path);
    fsck_reports(&dev, &id);
    let before = Before::take(&dev, &[]);
    before.refused(
        &dev,
        &[&id, "/usr/lib/modules/6.1.0-test/vmlinuz", "corrupt"],
    );
    restore(&path, &orig);
    fsck_clean(&dev);
    let r = dev.deploy(&[]);
    assert_eq!(r["version"], "2");
    assert_eq!(r["boot_files_copied"], true);
}

#[test]
fn corrupt_etc_default_is_refused_naming_it() {
    let (w, dev, _) = booted();
    let conf = b"level=2, a new default\n";
    write(&w.src.join("usr/etc/app.conf"), conf);
    release(&w, &dev, "2", 1_700_000_100);
    let (path, id) = object_with(&dev, conf);
    let orig = flip_byte(&path);
    let before = Before::take(&dev, &[]);
    before.refused(&dev, &[&id, "/usr/etc/app.conf", "corrupt"]);
    restore(&path, &orig);
    fsck_clean(&dev);
    let r = dev.deploy(&[]);
    assert_eq!(r["version"], "2");
    let d = r["deployment"].as_str().unwrap().split_once('/').unwrap().1;
    assert_eq!(
        std::fs::read(dev.deployment(d).join("etc/app.conf")).unwrap(),
        conf
    );
}

#[test]
fn fifo_in_local_etc_is_reported_in_text_and_json() {
    let (w, dev, booted) = booted();
    let fifo = dev.deployment(&booted).join("etc/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    write(&w.src.join("usr/bin/tool"), b"tool v2");
    release(&w, &dev, "2", 1_700_000_100);

    let run = dev.run(&["deploy"], &["origin:main"]);
    run.success();
    assert!(
        run.out().contains("skipped /etc/fifo: FIFO in /etc"),
        "{}",
        run.describe()
    );
    let r = dev.deploy(&[]);
    let skipped = r["etc_skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{r}");
    assert_eq!(skipped[0]["path"], "/etc/fifo");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("FIFO in /etc: special files are not"),
        "{r}"
    );
    let d = r["deployment"].as_str().unwrap().split_once('/').unwrap().1;
    assert!(!dev.deployment(d).join("etc/fifo").exists());
}
