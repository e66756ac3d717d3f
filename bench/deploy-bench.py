#!/usr/bin/env python3
"""Deploy benchmark: `update deploy` against `ostree admin deploy` into temp sysroots.

Usage: bench/deploy-bench.py [--runs N] [--quick]
(normally through `bench/run deploy`, which installs deps and builds first).

Two measurements, both sides in the same run, alternating which goes first:

1. A rootfs-like tree (the store bench's tree from real Debian packages, laid
   out the way both systems expect: the kernel's vmlinuz and a small
   initramfs.img in /usr/lib/modules/KVER/, /etc moved to /usr/etc). Timed: the
   FIRST deploy into an empty sysroot, then the SECOND deploy of a v2 tree
   (5 % of the files changed, some added and removed, changed /etc defaults and
   initramfs) after local edits in the first deployment's /etc, so the /etc
   merge runs against it: the common case on a device.
2. A small tree whose /usr/etc has 1,000 config files; the running
   deployment's /etc has ~100 local edits (plus added and deleted files) and v2
   changes ~100 defaults. The deploy of v2 bounds the 3-way merge's time. The
   same sequence on the same tree with an empty /etc gives an estimate of the
   merge alone (the difference).

Setup is never timed: our commits are signed and published from a builder
archive repo, and each sysroot pulls them over file:// as a device would
(`update deploy` then verifies the signature, as it does by default); OSTree
commits into a builder bare repo and each sysroot does `pull-local`. Sysroots
are deleted between runs, outside the timed region. Everything big lives under
${BENCH_DIR:-/var/tmp/update-bench}/deploy-work and is deleted at the end.
Warm page cache, no cache dropping: both sides run under the same conditions.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    FULL_MIN_FILES,
    FULL_PACKAGES,
    GNU_TIME,
    MB,
    QUICK_PACKAGES,
    REPO_ROOT,
    Apt,
    CommandError,
    build_tree,
    log,
    med,
    ratio,
    rm_rf,
    run,
    timed,
    tree_stats,
    verdict,
)

WORK = BENCH_DIR / "deploy-work"
OS_NAME = "bench"

TARGETS = {
    "deploy_speedup": 2.0,  # ostree admin deploy time / ours, at least (first and second deploy)
    "etc_merge_seconds": 1.0,  # our deploy with a 1,000-file /etc merge, below
}

ETC_FILES = 1000  # /usr/etc files of the merge tree
ETC_LOCAL_EDITS = 100  # files the user changed in the running /etc
ETC_LOCAL_ADDED = 10
ETC_LOCAL_DELETED = 10
ETC_NEW_DEFAULTS = 100  # defaults v2 changes (10 of them also edited locally: conflicts)
ROOTFS_CHANGE_EVERY = 20  # v2 of the rootfs: every 20th regular file rewritten (5 %)
ROOTFS_LOCAL_EDITS = 10  # /etc files edited in the first deployment before the second deploy
INITRAMFS_BYTES = 4 * 1024 * 1024


def rm_tree(path: Path) -> None:
    """rm -rf, after clearing the immutable bit OSTree sets on deployment roots."""
    pattern = "ostree/deploy/*/deploy/*"
    for d in glob.glob(f"{path}/{pattern}") + glob.glob(f"{path}/*/{pattern}"):
        if os.path.isdir(d) and not os.path.islink(d):
            run(["chattr", "-i", d])
    rm_rf(path)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# --------------------------------------------------------------------------
# Trees


def kernel_deb(apt) -> Path:
    """The store bench's kernel package (cached in BENCH_DIR/debs)."""
    debs = BENCH_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    return apt.download(apt.kernel_package(), debs)


def extract_vmlinuz(deb: Path, dest: Path) -> tuple[str, Path]:
    """Only /boot/vmlinuz-KVER of the kernel package, into dest: (KVER, path)."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "./boot/vmlinuz-*"',
         "sh", str(deb), str(dest)])
    found = glob.glob(str(dest / "boot" / "vmlinuz-*"))
    if len(found) != 1:
        raise CommandError(f"expected one vmlinuz in {deb}, found {found}")
    return Path(found[0]).name.removeprefix("vmlinuz-"), Path(found[0])


def write_file(path: Path, data: bytes) -> None:
    """Replace path by a new file (never writes through a hardlink to another tree)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".bench-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def os_release(dest: Path, version: str) -> None:
    """usr/lib/os-release and the usual /etc symlink to it (`ostree admin deploy` reads it)."""
    write_file(dest / "usr/lib/os-release",
               f'NAME="Bench"\nID=bench\nVERSION_ID="{version}"\nPRETTY_NAME="Bench {version}"\n'.encode())
    link = dest / "usr/etc/os-release"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink("../usr/lib/os-release", link)


def initramfs(version: str) -> bytes:
    # Incompressible like a real (compressed) initramfs; differs per version.
    return random.Random(f"initramfs-{version}").randbytes(INITRAMFS_BYTES)


def bootable(base: Path, dest: Path, vmlinuz_src: tuple[str, Path] | None, version: str) -> str:
    """A hardlinked copy of `base` laid out as both systems want it; returns KVER.

    /etc becomes /usr/etc, lib/modules/KVER moves to usr/lib/modules/KVER (the
    Debian trees are not usr-merged), boot/{vmlinuz,config,System.map}-KVER move
    into it (as vmlinuz, config, System.map), and an initramfs.img is added.
    """
    rm_rf(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-al", str(base), str(dest)])
    if (dest / "etc").is_dir() and not (dest / "usr/etc").exists():
        (dest / "usr").mkdir(exist_ok=True)
        os.rename(dest / "etc", dest / "usr/etc")
    found = glob.glob(str(dest / "boot" / "vmlinuz-*"))
    if found:
        kver = Path(found[0]).name.removeprefix("vmlinuz-")
    elif vmlinuz_src:
        kver = vmlinuz_src[0]
        (dest / "boot").mkdir(exist_ok=True)
        os.link(vmlinuz_src[1], dest / "boot" / f"vmlinuz-{kver}")
    else:
        raise CommandError(f"no kernel in {base}")
    mods = dest / "usr/lib/modules" / kver
    mods.parent.mkdir(parents=True, exist_ok=True)
    if (dest / "lib/modules" / kver).is_dir() and not mods.exists():
        os.rename(dest / "lib/modules" / kver, mods)
    mods.mkdir(exist_ok=True)
    for name in ("vmlinuz", "config", "System.map"):
        src = dest / "boot" / f"{name}-{kver}"
        if src.exists():
            os.rename(src, mods / name)
    write_file(mods / "initramfs.img", initramfs(version))
    os_release(dest, version)
    return kver


def regular_files(root: Path, under: str) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root / under):
        dirnames.sort()
        for n in sorted(filenames):
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return out


def rootfs_v2(v1: Path, v2: Path) -> dict:
    """v2 of the rootfs: a hardlinked copy with every 20th /usr file rewritten,
    some added and removed, changed /etc defaults and a new initramfs."""
    rm_rf(v2)
    run(["cp", "-al", str(v1), str(v2)])
    files = regular_files(v2, "usr")
    changed = 0
    for p in files[::ROOTFS_CHANGE_EVERY]:
        if p.name == "vmlinuz":
            continue
        write_file(p, p.read_bytes() + b"\n# v2\n")
        changed += 1
    removed = 0
    for p in files[7::500]:
        if "/usr/lib/modules/" not in str(p) and p.exists():
            p.unlink()
            removed += 1
    for i in range(50):
        write_file(v2 / "usr/share/bench-v2" / f"new-{i}.txt", f"added in v2 {i}\n".encode() * 40)
    etc = regular_files(v2, "usr/etc")
    for p in etc[1::3][:10]:
        write_file(p, p.read_bytes() + b"\n# new default in v2\n")
    for kdir in (v2 / "usr/lib/modules").iterdir():
        write_file(kdir / "initramfs.img", initramfs("v2"))
    os_release(v2, "v2")
    return {"changed": changed, "removed": removed, "added": 50, "etc_defaults_changed": min(10, len(etc[1::3]))}


def etc_tree(dest: Path, vmlinuz_src: tuple[str, Path], n_etc: int, version: str) -> None:
    """A small bootable tree whose /usr/etc has n_etc config files (20 per dir).

    v2 changes ETC_NEW_DEFAULTS of them, removes 5 and adds 10; kernel and
    initramfs stay the same, so the second deploy's boot files are shared and
    the deploy is mostly checkout plus /etc merge.
    """
    rm_rf(dest)
    kver, vmlinuz = vmlinuz_src
    mods = dest / "usr/lib/modules" / kver
    mods.mkdir(parents=True)
    os.link(vmlinuz, mods / "vmlinuz")
    write_file(mods / "initramfs.img", initramfs("etc"))
    for i in range(200):
        write_file(dest / "usr/bin" / f"tool{i}", f"#!/bin/sh\necho tool {i}\n".encode())
    for d in ("var", "usr/etc"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os_release(dest, version)
    rnd = random.Random("etc")
    for i in range(n_etc):
        p = dest / "usr/etc" / f"conf{i // 20:02d}.d" / f"file{i:04d}.conf"
        body = "".join(f"key{j} = {rnd.randrange(10**6)}\n" for j in range(rnd.randrange(4, 60)))
        if version == "v2":
            if i < ETC_NEW_DEFAULTS * 10 and i % 10 == 3:  # 100 changed defaults
                body += "# default changed in v2\n"
            if i >= n_etc - 5:
                continue  # removed in v2
        write_file(p, body.encode())
    if version == "v2":
        for i in range(10):
            write_file(dest / "usr/etc/new.d" / f"new{i}.conf", b"added = v2\n")


def etc_local_edits(etc: Path, n_etc: int) -> None:
    """The user's changes to a running /etc of the merge tree: 100 edited files
    (10 of them also changed by v2's defaults: conflicts), 10 added, 10 deleted."""
    if n_etc == 0:
        for i in range(ETC_LOCAL_ADDED):
            write_file(etc / "local.d" / f"local{i}.conf", b"mine = yes\n")
        return
    for i in range(ETC_LOCAL_EDITS):
        # i*10+3 for i < 10 collides with v2's changed defaults; the rest do not.
        n = i * 10 + 3 if i < 10 else i * 10 + 5
        p = etc / f"conf{n // 20:02d}.d" / f"file{n:04d}.conf"
        write_file(p, p.read_bytes() + b"# local edit\n")
    for i in range(ETC_LOCAL_ADDED):
        write_file(etc / "local.d" / f"local{i}.conf", b"mine = yes\n")
    for i in range(ETC_LOCAL_DELETED):
        n = i * 10 + 7
        (etc / f"conf{n // 20:02d}.d" / f"file{n:04d}.conf").unlink()


def rootfs_local_edits(etc: Path) -> None:
    files = regular_files(etc, ".")
    for p in files[::max(1, len(files) // ROOTFS_LOCAL_EDITS)][:ROOTFS_LOCAL_EDITS]:
        write_file(p, p.read_bytes() + b"\n# local edit\n")
    write_file(etc / "bench-local.conf", b"added locally\n")


# --------------------------------------------------------------------------
# The two systems


class Ours:
    name = "ours"

    def __init__(self, binary: Path, work: Path) -> None:
        self.bin = str(binary)
        self.work = work
        self.key = work / "ours.key"
        self.builder = work / "ours-builder"
        self.pub = work / "ours-pub"

    def u(self, *args) -> str:
        return run([self.bin, *map(str, args)])

    def build(self, trees: dict[str, Path]) -> None:
        """Commit every tree (branch = its name), signed, and publish them."""
        self.u("key", "generate", "--output", self.key)
        self.u("init", "--repo", self.builder, "--mode", "archive")
        for ref, tree in trees.items():
            self.u("commit", "--repo", self.builder, "--branch", ref, "--version", ref,
                   "--sign-with", self.key, tree)
            time.sleep(1.1)  # distinct commit timestamps: v2 is never older than v1
        self.u("publish", "--repo", self.builder, "--key", self.key, "--output", self.pub,
               "--no-deltas", "--pack-level", "3")

    def sysroot(self, s: Path) -> None:
        s.mkdir(parents=True)
        self.u("sysroot", "init", "--sysroot", s, "--os", OS_NAME, "--boot", s / "boot")
        self.u("remote", "add", "--repo", s / "update/repo", "bench", f"file://{self.pub}",
               "--key", f"{self.key}.pub")

    def pull(self, s: Path, ref: str) -> None:
        self.u("pull", "--repo", s / "update/repo", f"bench:{ref}")

    def deploy_cmd(self, s: Path, ref: str) -> list[str]:
        return [self.bin, "deploy", "--sysroot", str(s), "--os", OS_NAME, f"bench:{ref}", "--json"]

    def deploy(self, s: Path, ref: str) -> dict:
        secs, rss, out = timed(self.deploy_cmd(s, ref))
        rep = json.loads(out)
        return {"seconds": secs, "rss_kib": rss, "files": rep.get("files"),
                "etc_carried": rep.get("etc_changes_carried"),
                "etc_conflicts": len(rep.get("etc_conflicts") or []),
                "boot_files_copied": rep.get("boot_files_copied"),
                "signers": len(rep.get("signers") or [])}

    def running_etc(self, s: Path) -> Path:
        found = sorted(glob.glob(str(s / "update/deploy" / OS_NAME / "deploy" / "*" / "etc")))
        if len(found) != 1:
            raise CommandError(f"expected one deployment in {s}, found {found}")
        return Path(found[0])


class OSTree:
    name = "ostree"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.builder = work / "ostree-builder"

    def build(self, trees: dict[str, Path]) -> None:
        run(["ostree", f"--repo={self.builder}", "init", "--mode=bare"])
        for ref, tree in trees.items():
            run(["ostree", f"--repo={self.builder}", "commit", f"--branch={ref}", f"--tree=dir={tree}",
                 f"--add-metadata-string=version={ref}"])

    def sysroot(self, s: Path) -> None:
        s.mkdir(parents=True)
        run(["ostree", "admin", "init-fs", str(s)])
        run(["ostree", "admin", "os-init", OS_NAME, f"--sysroot={s}"])

    def pull(self, s: Path, ref: str) -> None:
        run(["ostree", f"--repo={s}/ostree/repo", "pull-local", str(self.builder), ref])

    def deploy_cmd(self, s: Path, ref: str) -> list[str]:
        return ["ostree", "admin", "deploy", f"--sysroot={s}", f"--os={OS_NAME}", ref]

    def deploy(self, s: Path, ref: str) -> dict:
        secs, rss, _ = timed(self.deploy_cmd(s, ref))
        return {"seconds": secs, "rss_kib": rss}

    def running_etc(self, s: Path) -> Path:
        found = sorted(p for p in glob.glob(str(s / "ostree/deploy" / OS_NAME / "deploy" / "*" / "etc")))
        if len(found) != 1:
            raise CommandError(f"expected one deployment in {s}, found {found}")
        return Path(found[0])


# --------------------------------------------------------------------------
# Runs


SCENARIOS = {
    # name: (v1 ref, v2 ref, local edits)
    "rootfs": ("rootfs/v1", "rootfs/v2", lambda etc: rootfs_local_edits(etc)),
    "etc": ("etc/v1", "etc/v2", lambda etc: etc_local_edits(etc, ETC_FILES)),
    "etc0": ("etc0/v1", "etc0/v2", lambda etc: etc_local_edits(etc, 0)),
}


class Bench:
    def __init__(self, sides: list, work: Path) -> None:
        self.sides = sides
        self.work = work
        self.counter = 0

    def one_run(self, i: int) -> dict:
        """Every scenario on both sides; the side that goes first alternates."""
        sides = self.sides if i % 2 == 0 else list(reversed(self.sides))
        r: dict = {}
        made = []
        for scen, (v1, v2, edit) in SCENARIOS.items():
            self.counter += 1
            roots = {side.name: self.work / f"sysroot-{side.name}-{scen}-{self.counter}" for side in sides}
            for side in sides:
                side.sysroot(roots[side.name])
                side.pull(roots[side.name], v1)
            for side in sides:
                r[f"{side.name}_{scen}_first"] = side.deploy(roots[side.name], v1)
            for side in sides:
                edit(side.running_etc(roots[side.name]))
                side.pull(roots[side.name], v2)
            for side in sides:
                r[f"{side.name}_{scen}_second"] = side.deploy(roots[side.name], v2)
            made += roots.values()
        # Deleted only now, outside the timed region: on this ext4 (mounted with
        # `discard`) deleting a GB-sized repo leaves seconds of discard work behind
        # that slowed the next scenario's deploys several-fold when deleted between them.
        for s in made:
            rm_tree(s)
        run(["sync"])
        time.sleep(10)
        return r


# --------------------------------------------------------------------------
# Reporting


def fs(v):
    return "–" if v is None else f"{v:.3f} s"


def fx(v, suffix=""):
    return "–" if v is None else f"{v:.2f}x{suffix}"


def report(runs: list[dict], stats: dict, info: dict, ours_cmd: str, ostree_cmd: str) -> tuple[str, dict]:
    d: dict = {}
    rows = []
    for scen, label in (("rootfs", "rootfs"),):
        for which, what in (("first", "first deploy (empty sysroot)"),
                            ("second", "second deploy (v2, /etc merge)")):
            o, p = med(runs, f"ours_{scen}_{which}"), med(runs, f"ostree_{scen}_{which}")
            sp = ratio(p, o)
            ok = None if sp is None else sp >= TARGETS["deploy_speedup"]
            d[f"{scen}_{which}_speedup"] = sp
            d[f"{scen}_{which}_ok"] = ok
            rows.append(f"| {label} {what} | {fs(o)} | ostree {fs(p)} | {fx(sp, ' faster')} "
                        f"| >= {TARGETS['deploy_speedup']:g}x | {verdict(ok)} |")
    o = med(runs, "ours_etc_second")
    p = med(runs, "ostree_etc_second")
    ok = None if o is None else o < TARGETS["etc_merge_seconds"]
    d["etc_merge_deploy_seconds"] = o
    d["etc_merge_ok"] = ok
    rows.append(f"| deploy with {ETC_FILES:,}-file /etc merge | {fs(o)} | ostree {fs(p)} "
                f"| {fx(ratio(p, o), ' faster')} | < {TARGETS['etc_merge_seconds']:g} s | {verdict(ok)} |")
    o0 = med(runs, "ours_etc0_second")
    p0 = med(runs, "ostree_etc0_second")
    est = None if o is None or o0 is None else o - o0
    pest = None if p is None or p0 is None else p - p0
    d["etc_merge_estimate_seconds"] = est
    rows.append(f"| (same tree, empty /etc: merge ≈ difference) | {fs(o0)}; merge ≈ {fs(est)} "
                f"| ostree {fs(p0)}; merge ≈ {fs(pest)} | – | – | – |")
    rss = max((r[k]["rss_kib"] for r in runs for k in r if k.startswith("ours_")), default=None)
    prss = max((r[k]["rss_kib"] for r in runs for k in r if k.startswith("ostree_")), default=None)
    rows.append(f"| deploy peak RSS (max) | {rss / 1024:.1f} MiB | ostree {prss / 1024:.1f} MiB | – | – | – |")

    last = runs[-1]
    ours_first, ours_second = last.get("ours_rootfs_first", {}), last.get("ours_rootfs_second", {})
    ours_etc = last.get("ours_etc_second", {})
    lines = [
        f"### Deploy bench: rootfs {stats['files']:,} files ({stats['bytes'] / MB:,.0f} MB, "
        f"{stats['unique_files']:,} files without hardlinks), kernel {info['kver']}; "
        f"median of {len(runs)} run(s)",
        "",
        "| operation | ours | peer | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Commands (timed, nothing else): `{ours_cmd}` and `{ostree_cmd}`, each into its own "
        f"temp sysroot ({OS_NAME}, `update sysroot init --boot S/boot` / `ostree admin init-fs` + "
        f"`os-init`). Setup, not timed: our commits are signed, published (`update publish`) and "
        f"pulled over file:// into S/update/repo, so the deploy verifies the signature "
        f"(signers: {ours_first.get('signers')}); OSTree's are committed to a bare builder repo and "
        f"`pull-local`ed into S/ostree/repo (no GPG).",
        f"rootfs v2: {info['v2']['changed']:,} files rewritten, {info['v2']['removed']} removed, "
        f"{info['v2']['added']} added, {info['v2']['etc_defaults_changed']} /etc defaults changed, new "
        f"initramfs ({INITRAMFS_BYTES // 2**20} MiB); before the second deploy {ROOTFS_LOCAL_EDITS} files "
        f"of the first deployment's /etc were edited and one added. Our report (last run): first "
        f"{ours_first.get('files')} files, second {ours_second.get('files')} files, "
        f"{ours_second.get('etc_carried')} /etc changes carried, {ours_second.get('etc_conflicts')} conflicts.",
        f"/etc merge tree: {ETC_FILES:,} files in /usr/etc, 200 files in /usr/bin, same kernel and "
        f"initramfs in v1 and v2 (boot files shared); local: {ETC_LOCAL_EDITS} edited, "
        f"{ETC_LOCAL_ADDED} added, {ETC_LOCAL_DELETED} deleted; v2: {ETC_NEW_DEFAULTS} defaults "
        f"changed, 10 added, 5 removed. Our report (last run): {ours_etc.get('etc_carried')} changes "
        f"carried, {ours_etc.get('etc_conflicts')} conflicts. The deploy time bounds the merge time.",
        "Warm page cache; `sync` before every timed command; sysroots deleted at the end of each run "
        "(then `sync` and 10 s for the discards to drain), outside the timed region; the side "
        "that goes first alternates between runs.",
    ]
    return "\n".join(lines), d


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default 5, --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="the store bench's small tree, 2 runs")
    ap.add_argument("--update-bin", type=Path, default=REPO_ROOT / "target/release/update")
    args = ap.parse_args()
    runs_n = args.runs if args.runs is not None else (2 if args.quick else 5)
    if runs_n < 1:
        ap.error("--runs must be at least 1")
    if not os.access(args.update_bin, os.X_OK):
        log(f"error: {args.update_bin} missing; build it with `cargo build --release -p update-cli` (or use bench/run)")
        return 1
    for tool in ("ostree", "dpkg", "dpkg-deb", "apt-get", GNU_TIME):
        if not shutil.which(tool):
            log(f"error: {tool} not found; run scripts/install-deps.sh --bench")
            return 1

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    apt = Apt()
    if args.quick:
        base, stats = build_tree("quick", QUICK_PACKAGES, apt)
    else:
        base, stats = build_tree("full", FULL_PACKAGES, apt)
        if stats["files"] < FULL_MIN_FILES:
            log(f"warning: tree smaller than intended ({FULL_MIN_FILES} files)")

    # Two bare repos and two sysroots of the tree at a time, plus builders: ~5x
    # the tree's unique bytes, with room to spare.
    need = 6 * stats["unique_bytes"] + 2_000 * MB
    have = free_bytes(BENCH_DIR)
    if have < need:
        log(f"error: {BENCH_DIR} has {have / 1e9:.1f} GB free, the bench needs about {need / 1e9:.1f} GB")
        return 1

    rm_tree(WORK)
    WORK.mkdir(parents=True)
    try:
        vmlinuz = extract_vmlinuz(kernel_deb(apt), WORK / "kernel")
        trees = {
            "rootfs/v1": WORK / "trees/rootfs-v1",
            "rootfs/v2": WORK / "trees/rootfs-v2",
            "etc/v1": WORK / "trees/etc-v1",
            "etc/v2": WORK / "trees/etc-v2",
            "etc0/v1": WORK / "trees/etc0-v1",
            "etc0/v2": WORK / "trees/etc0-v2",
        }
        log("laying out trees ...")
        kver = bootable(base, trees["rootfs/v1"], vmlinuz, "v1")
        v2info = rootfs_v2(trees["rootfs/v1"], trees["rootfs/v2"])
        for n, key in ((ETC_FILES, "etc"), (0, "etc0")):
            for v in ("v1", "v2"):
                etc_tree(trees[f"{key}/{v}"], vmlinuz, n, v)
        rstats = tree_stats(trees["rootfs/v1"])
        log(f"rootfs {trees['rootfs/v1']}: {rstats['files']:,} files, kernel {kver}; v2: {v2info}")

        ours, ostree = Ours(args.update_bin, WORK), OSTree(WORK)
        log("committing (setup) ...")
        ours.build(trees)
        ostree.build(trees)
        for t in trees.values():
            rm_rf(t)

        bench = Bench([ours, ostree], WORK)
        runs = []
        for i in range(runs_n):
            log(f"run {i + 1}/{runs_n} ...")
            runs.append(bench.one_run(i))
            log("  " + ", ".join(f"{k} {v['seconds']:.3f}s" for k, v in runs[-1].items()))
    finally:
        rm_tree(WORK)

    s = Path("S")
    ours_cmd = " ".join(Ours(Path("update"), WORK).deploy_cmd(s, "rootfs/v2")).replace("bench:rootfs/v2", "bench:REF")
    ostree_cmd = " ".join(OSTree(WORK).deploy_cmd(s, "REF"))
    text, derived = report(runs, rstats, {"kver": kver, "v2": v2info}, ours_cmd, ostree_cmd)
    print(text)

    result = {
        "tree": {"base": str(base), "quick": args.quick, **rstats},
        "runs": runs,
        "derived": derived,
        "targets": TARGETS,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "ostree": run(["ostree", "--version"]).splitlines()[1].split(":", 1)[1].strip(" '"),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = BENCH_DIR / ("deploy-bench-quick.json" if args.quick else "deploy-bench.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"results written to {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
