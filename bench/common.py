"""What the three benches share: running and timing commands, the bench tree made of
real Debian packages, and the medians, ratios and verdicts of their reports.

Imported by bench/store-bench.py, bench/transport-bench.py and bench/deploy-bench.py
(Python puts a script's own directory first on sys.path, so `import common` finds this
file however a bench is started).
"""

from __future__ import annotations

import glob
import json
import os
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/var/tmp/update-bench"))
GNU_TIME = "/usr/bin/time"
MB = 1_000_000

# Big, many-file packages that all exist in bookworm, chosen to look like a
# real rootfs: kernel modules (large binaries), firmware, perl/python/emacs
# libraries (thousands of small text files), locales and mesa (big blobs).
# "@kernel" is resolved to the real linux-image-6.1.0-NN-amd64 package.
FULL_PACKAGES = [
    "@kernel",
    "firmware-linux-free",
    "libc6",
    "locales",
    "coreutils",
    "systemd",
    "perl-modules-5.36",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "vim-runtime",
    "emacs-common",
    "git",
    "git-man",
    "gcc-12",
    "cpp-12",
    "libgl1-mesa-dri",
    "tzdata",
]
# A few packages: enough for a smoke test and to show RSS does not grow with
# tree size, small enough to commit in a second or two.
QUICK_PACKAGES = ["coreutils", "tzdata", "git-man", "libpython3.11-stdlib", "perl-modules-5.36"]

FULL_MIN_FILES = 10_000
FULL_MIN_BYTES = 300 * MB


class CommandError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], *, cwd: Path | None = None, capture: bool = True) -> str:
    """Run a command; on failure raise with its stderr so the cause is visible."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise CommandError(
            f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stderr ---\n{proc.stderr.strip()}\n"
            + (f"--- stdout ---\n{proc.stdout.strip()}\n" if capture and proc.stdout else "")
        )
    return proc.stdout if capture else ""


def sudo_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def timed(cmd: list[str], *, cwd: Path | None = None) -> tuple[float, int, str]:
    """Wall-clock seconds, peak RSS (KiB) and stdout of one command.

    `sync` first so that writeback left by the previous step is not billed to
    this one. GNU time writes RSS to a file so the command's own stderr stays
    intact for error reports; its fork/exec adds well under a millisecond.
    """
    run(["sync"])
    with tempfile.NamedTemporaryFile("r", prefix="bench-rss-") as rss:
        start = time.perf_counter()
        out = run([GNU_TIME, "-f", "%M", "-o", rss.name, *cmd], cwd=cwd)
        secs = time.perf_counter() - start
        return secs, int(rss.read().strip().splitlines()[-1]), out


def du_bytes(path: Path) -> int:
    return int(run(["du", "-sb", str(path)]).split()[0])


def rm_rf(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        # Trees from dpkg -x can contain read-only dirs; rm -rf as root copes,
        # shutil.rmtree would need chmod dances.
        run(["rm", "-rf", "--one-file-system", str(path)])


# --------------------------------------------------------------------------
# The bench tree


class Apt:
    """Package downloads, running `apt-get update` at most once and only if needed."""

    def __init__(self) -> None:
        self.updated = False

    def update(self) -> None:
        if not self.updated:
            log("apt-get update ...")
            run([*sudo_prefix(), "apt-get", "update", "-qq"])
            self.updated = True

    def _retry(self, fn):
        # On a fresh machine the package lists may be missing or stale.
        try:
            return fn()
        except CommandError:
            if self.updated:
                raise
            self.update()
            return fn()

    def kernel_package(self) -> str:
        def resolve() -> str:
            out = run(["apt-cache", "depends", "linux-image-amd64"])
            for line in out.splitlines():
                dep = line.strip().removeprefix("Depends:").strip()
                if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
                    return dep
            raise CommandError("no linux-image-* dependency in:\n" + out)

        return self._retry(resolve)

    def download(self, pkg: str, dest: Path) -> Path:
        """The cached .deb for pkg, downloading it if it is not there yet."""
        found = sorted(glob.glob(str(dest / f"{pkg}_*.deb")))
        if found:
            return Path(found[-1])
        log(f"  apt-get download {pkg}")
        cmd = ["apt-get", "download", "-qq", pkg]
        if os.geteuid() == 0:
            # The _apt sandbox user cannot write into root's cache dir.
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        self._retry(lambda: run(cmd, cwd=dest))
        found = sorted(glob.glob(str(dest / f"{pkg}_*.deb")))
        if not found:
            raise CommandError(f"apt-get download {pkg} left no {pkg}_*.deb in {dest}")
        return Path(found[-1])


def tree_stats(root: Path) -> dict:
    files = dirs = symlinks = other = size = 0
    # Hardlinked content counted once too: what a store has to keep, and
    # what `du` reports for the tree.
    inodes: dict[tuple[int, int], int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += 1
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
                inodes[(st.st_dev, st.st_ino)] = st.st_size
            elif stat.S_ISLNK(st.st_mode):
                symlinks += 1
            else:
                other += 1
    return {
        "files": files,
        "dirs": dirs,
        "symlinks": symlinks,
        "other": other,
        "bytes": size,
        "unique_files": len(inodes),
        "unique_bytes": sum(inodes.values()),
    }


def unpack_debs(name: str, debs: list[Path]) -> tuple[Path, dict]:
    """Unpack `debs` into BENCH_DIR/tree-NAME, reusing it if already built.

    A stamp file records the exact .deb files the tree came from, so a
    changed package list (or a new kernel ABI) rebuilds it.
    """
    tree = BENCH_DIR / f"tree-{name}"
    stamp = BENCH_DIR / f"tree-{name}.stamp"
    stats_file = BENCH_DIR / f"tree-{name}.json"
    want = "\n".join(d.name for d in debs) + "\n"
    if tree.is_dir() and stamp.exists() and stamp.read_text() == want:
        if not stats_file.exists():
            stats_file.write_text(json.dumps({**tree_stats(tree), "packages": [d.name for d in debs]}))
        return tree, json.loads(stats_file.read_text())

    log(f"building {tree} from {len(debs)} packages")
    stamp.unlink(missing_ok=True)
    rm_rf(tree)
    tree.mkdir(parents=True)
    for deb in debs:
        run(["dpkg", "-x", str(deb), str(tree)])
    stats = tree_stats(tree)
    stats["packages"] = [d.name for d in debs]
    stats_file.write_text(json.dumps(stats, indent=1))
    stamp.write_text(want)
    return tree, stats


def build_tree(name: str, packages: list[str], apt: Apt) -> tuple[Path, dict]:
    """The newest versions of `packages` ("@kernel": the current kernel), downloaded
    into BENCH_DIR/debs and unpacked into BENCH_DIR/tree-NAME (`unpack_debs`)."""
    debs_dir = BENCH_DIR / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    kernel = None
    debs = []
    for pkg in packages:
        if pkg == "@kernel":
            kernel = kernel or apt.kernel_package()
            pkg = kernel
        debs.append(apt.download(pkg, debs_dir))
    return unpack_debs(name, debs)


# --------------------------------------------------------------------------
# Reporting


def med(runs: list[dict], op: str, key: str = "seconds") -> float | None:
    """The median of `run[op][key]` over the runs that have it (None when none has)."""
    vals = [r[op][key] for r in runs if (r.get(op) or {}).get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")
