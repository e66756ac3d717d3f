//! `update-prepare-root`, the initramfs's binary, run as the initramfs runs it: against a
//! sysroot laid out as `update deploy` leaves it (docs/deploy.md), mounted at any path
//! (`/sysroot` for dracut, `/root` for initramfs-tools). `update prepare-root`, the same
//! code, is tested in cli/tests/deploy.rs.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::cli::{run_command, Run};

const COMMIT: &str = "7a1ce5f0c2b35e1d4a6f8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_update-prepare-root")
}

fn prepare_root(args: &[&str]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    run_command(cmd, Duration::from_secs(60))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A physical root holding one deployment of OS `os`, at `parent/name`, and a command line
/// file naming it.
struct Sysroot {
    root: PathBuf,
    cmdline: PathBuf,
    deploy_path: PathBuf,
    var_path: PathBuf,
}

fn sysroot(parent: &Path, name: &str) -> Sysroot {
    let root = parent.join(name);
    let os_dir = root.join("update/deploy/os");
    let deploy_path = os_dir.join(format!("deploy/{COMMIT}.0"));
    for d in ["usr/bin", "var", "sysroot", "etc", "run"] {
        std::fs::create_dir_all(deploy_path.join(d)).unwrap();
    }
    std::fs::write(deploy_path.join("usr/bin/hello"), "v1\n").unwrap();
    let var_path = os_dir.join("var");
    std::fs::create_dir_all(var_path.join("lib")).unwrap();
    std::fs::write(var_path.join("lib/state"), "kept\n").unwrap();
    let cmdline = parent.join(format!("{name}.cmdline"));
    std::fs::write(
        &cmdline,
        format!("root=/dev/vda2 rw update.deployment=os/{COMMIT}.0 quiet\n"),
    )
    .unwrap();
    Sysroot {
        root,
        cmdline,
        deploy_path,
        var_path,
    }
}

#[test]
fn dry_run_prints_the_plan_for_any_sysroot_path() {
    let tmp = tempfile::tempdir().unwrap();
    // dracut mounts the root at /sysroot, initramfs-tools at /root.
    for name in ["sysroot", "root"] {
        let sys = sysroot(tmp.path(), name);
        let run = prepare_root(&[
            "--sysroot",
            s(&sys.root),
            "--proc-cmdline",
            s(&sys.cmdline),
            "--dry-run",
        ]);
        run.success();
        assert_eq!(
            run.stdout,
            format!(
                "prepare-root: deployment os/{COMMIT}.0 from {}\n  /var from {}\n  physical root at {}/sysroot, /usr read-only\n",
                sys.deploy_path.display(),
                sys.var_path.display(),
                sys.root.display()
            ),
            "{}",
            run.describe()
        );
        // `--opt=value` works too, as in `update prepare-root`.
        let run = prepare_root(&[
            &format!("--sysroot={}", s(&sys.root)),
            &format!("--proc-cmdline={}", s(&sys.cmdline)),
            "--dry-run",
        ]);
        run.success();
    }
}

#[test]
fn errors_are_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let sys = sysroot(tmp.path(), "root");
    std::fs::remove_dir(sys.deploy_path.join("sysroot")).unwrap();
    let run = prepare_root(&[
        "--sysroot",
        s(&sys.root),
        "--proc-cmdline",
        s(&sys.cmdline),
        "--dry-run",
    ]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "one line on stderr: {}",
        run.describe()
    );
    assert!(
        run.stderr.starts_with("update-prepare-root: ")
            && run.stderr.contains(&format!("os/{COMMIT}.0"))
            && run.stderr.contains("/sysroot"),
        "{}",
        run.describe()
    );

    // No deployment named on the command line: nothing to boot.
    std::fs::write(&sys.cmdline, "root=/dev/vda2 quiet\n").unwrap();
    let run = prepare_root(&["--sysroot", s(&sys.root), "--proc-cmdline", s(&sys.cmdline)]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr.starts_with("update-prepare-root: ")
            && run.stderr.lines().count() == 1
            && run.stderr.contains("update.deployment="),
        "{}",
        run.describe()
    );
}

#[test]
fn help_and_bad_flags_print_the_usage() {
    let run = prepare_root(&["--help"]);
    run.success();
    assert!(
        run.stdout
            .starts_with("Usage: update-prepare-root [--sysroot DIR]")
            && run.stderr.is_empty(),
        "{}",
        run.describe()
    );
    for bad in [&["--root", "/x"][..], &["--sysroot"], &["/root"]] {
        let run = prepare_root(bad);
        assert_eq!(run.code(), Some(2), "{}", run.describe());
        assert!(
            run.stderr.starts_with("update-prepare-root: ")
                && run.stderr.contains("Usage: update-prepare-root")
                && run.stdout.is_empty(),
            "{}",
            run.describe()
        );
    }
}

/// The real thing, in a mount namespace of its own: the physical root mounted at
/// `.../root` (as initramfs-tools mounts it), with mount propagation `shared` as under a
/// systemd initrd (dracut), where moving a mount below a shared one is refused unless
/// prepare-root makes it private first.
#[test]
fn mounts_the_deployment_at_a_root_not_named_sysroot() {
    testkit::require_root!("mounts in a mount namespace of its own");
    let tmp = tempfile::tempdir().unwrap();
    let sys = sysroot(tmp.path(), "root");
    let r = s(&sys.root);
    // After prepare-root the shell checks what the initramfs would switch_root into.
    // `--propagation private` first cuts every tie to this machine's mounts; `shared` then
    // makes the namespace's own mounts shared among themselves, as a systemd initrd has it.
    let script = r#"set -e
if [ "$P" = shared ]; then mount --make-rshared /; fi
mount --bind "$R" "$R"
"$BIN" --sysroot "$R" --proc-cmdline "$C"
test "$(cat "$R/usr/bin/hello")" = v1
test "$(cat "$R/var/lib/state")" = kept
test -d "$R/sysroot/update/deploy/os/deploy"
if touch "$R/usr/bin/x" 2>/dev/null; then echo "/usr is writable"; exit 1; fi
touch "$R/var/lib/new"
echo checked"#;
    for propagation in ["private", "shared"] {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", script])
            .env("P", propagation)
            .env("R", r)
            .env("BIN", bin())
            .env("C", &sys.cmdline);
        let run = run_command(cmd, Duration::from_secs(60));
        assert!(
            run.code() == Some(0) && run.stdout.ends_with("checked\n"),
            "propagation {propagation}: {}",
            run.describe()
        );
        assert!(
            run.stdout
                .contains(&format!("prepare-root: os/{COMMIT}.0 is ready at {r}")),
            "{}",
            run.describe()
        );
        // The namespace is gone: the shared /var got the file, nothing stays mounted here.
        assert!(sys.var_path.join("lib/new").is_file());
        std::fs::remove_file(sys.var_path.join("lib/new")).unwrap();
        assert!(!sys.root.join("usr").exists());
    }
}
