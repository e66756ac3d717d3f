#!/usr/bin/env python3
"""Store benchmark: `update` against OSTree and `cp -al` on a real rootfs tree.

Usage: bench/store-bench.py [--runs N] [--quick] [--skip-ours]
(normally through `bench/run store`, which installs deps and builds first).

The tree is made of real Debian packages (`apt-get download` + `dpkg -x`),
because synthetic trees get the file-size distribution and compressibility
wrong, and both drive commit speed and repo size. It is cached under
${BENCH_DIR:-/var/tmp/update-bench}; repos and checkouts are made beside it so
that hardlink checkouts and `cp -al` stay on one filesystem.

All timings are warm page cache (the tree is read once while building it and
fits in RAM many times over): that isolates the store's own CPU and write
cost, which is what the targets are about. Timings never fail the script;
only a command that errors does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    FULL_MIN_BYTES,
    FULL_MIN_FILES,
    FULL_PACKAGES,
    GNU_TIME,
    MB,
    QUICK_PACKAGES,
    REPO_ROOT,
    Apt,
    CommandError,
    build_tree,
    du_bytes,
    log,
    med,
    ratio,
    rm_rf,
    run,
    timed,
    verdict,
)

TARGETS = {
    "archive_commit_speedup": 8.0,  # ostree time / ours, at least
    "bare_commit_speedup": 3.0,  # ostree time / ours, at least
    "checkout_vs_cp": 1.2,  # ours / cp -al, at most
    "commit_rss_mib": 64.0,  # peak RSS of our commit, at most
}

# Default compression level of an archive repo; the floor compresses at it too.
ARCHIVE_ZSTD_LEVEL = 5

# --------------------------------------------------------------------------
# The measured operations


class Bench:
    def __init__(self, update_bin: Path | None, floor_bin: Path, work: Path) -> None:
        self.update = update_bin
        self.floor = floor_bin
        self.work = work
        self.counter = 0

    def fresh(self, name: str) -> Path:
        # A new path every time, and nothing big is deleted until the bench ends:
        # on this ext4 (mounted with `discard`) deleting a GB-sized repo leaves
        # seconds of discard work behind that slows whichever command runs next,
        # which made the timings depend on what ran before them.
        self.counter += 1
        return self.work / f"{name}-{self.counter}"

    def ours_commit(self, tree: Path, mode: str) -> dict:
        repo = self.fresh(f"ours-{mode}")
        run([str(self.update), "init", "--repo", str(repo), "--mode", mode])
        secs, rss, _ = timed(
            [str(self.update), "commit", "--repo", str(repo), "--branch", "bench", str(tree)]
        )
        return {"seconds": secs, "rss_kib": rss, "repo_bytes": du_bytes(repo), "repo": repo}

    def ostree_commit(self, tree: Path, mode: str) -> dict:
        repo = self.fresh(f"ostree-{mode}")
        run(["ostree", f"--repo={repo}", "init", f"--mode={mode}"])
        secs, rss, _ = timed(
            ["ostree", f"--repo={repo}", "commit", "--branch=bench", f"--tree=dir={tree}"]
        )
        return {"seconds": secs, "rss_kib": rss, "repo_bytes": du_bytes(repo), "repo": repo}

    def checkout(self, cmd_for_dest) -> dict:
        dest = self.fresh("checkout")
        secs, rss, _ = timed(cmd_for_dest(dest))
        rm_rf(dest)  # not timed: only creating the tree is
        return {"seconds": secs, "rss_kib": rss}

    def floor_run(self, tree: Path) -> dict:
        run(["sync"])
        start = time.perf_counter()
        # The same zstd level an archive repo uses by default (store's CoreConfig).
        out = json.loads(run([str(self.floor), str(tree), str(ARCHIVE_ZSTD_LEVEL)]))
        out["wall_seconds"] = time.perf_counter() - start
        return out

    def one_run(self, tree: Path) -> dict:
        """Every operation once, ours and peers alternating so that drift in
        machine state over the run (thermal, writeback) hits both sides."""
        r: dict = {}
        for mode in ("archive", "bare"):
            if self.update:
                r[f"ours_{mode}"] = self.ours_commit(tree, mode)
            r[f"ostree_{mode}"] = self.ostree_commit(tree, mode)

        # Hardlink checkouts come from the bare repos just made.
        if self.update:
            repo = r["ours_bare"]["repo"]
            r["ours_checkout"] = self.checkout(
                lambda d: [str(self.update), "checkout", "--repo", str(repo), "bench", str(d)]
            )
        repo = r["ostree_bare"]["repo"]
        r["ostree_checkout"] = self.checkout(
            lambda d: ["ostree", f"--repo={repo}", "checkout", "-H", "bench", str(d)]
        )
        r["cp_al"] = self.checkout(lambda d: ["cp", "-al", str(tree), str(d)])
        r["floor"] = self.floor_run(tree)

        for v in r.values():
            v.pop("repo", None)  # paths are not results
        return r


# --------------------------------------------------------------------------
# Reporting


def fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} s"


def fmt_mb(v: float | None) -> str:
    return "–" if v is None else f"{v / MB:.1f} MB"


def fmt_mib(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} MiB"


def fmt_x(v: float | None, suffix: str = "") -> str:
    return "–" if v is None else f"{v:.2f}x{suffix}"


def summarize(runs: list[dict], rss_small_kib: int | None) -> dict:
    m = {
        op: {k: med(runs, op, k) for k in ("seconds", "rss_kib", "repo_bytes")}
        for op in runs[0]
        if op != "floor"
    }
    m["floor"] = {
        "seconds": med(runs, "floor", "seconds"),
        "compressed_bytes": med(runs, "floor", "compressed_bytes"),
    }

    ours = {op: m.get(f"ours_{op}", {}) for op in ("archive", "bare", "checkout")}
    # RSS target is about the worst case, so take the max over every commit.
    rss_all = [r[op]["rss_kib"] for r in runs for op in ("ours_archive", "ours_bare") if op in r]
    rss_peak_mib = max(rss_all) / 1024 if rss_all else None

    d = {
        "archive_commit_speedup": ratio(m["ostree_archive"]["seconds"], ours["archive"].get("seconds")),
        "bare_commit_speedup": ratio(m["ostree_bare"]["seconds"], ours["bare"].get("seconds")),
        "checkout_vs_cp": ratio(ours["checkout"].get("seconds"), m["cp_al"]["seconds"]),
        "ostree_checkout_vs_cp": ratio(m["ostree_checkout"]["seconds"], m["cp_al"]["seconds"]),
        "archive_size_vs_ostree": ratio(ours["archive"].get("repo_bytes"), m["ostree_archive"]["repo_bytes"]),
        "bare_size_vs_ostree": ratio(ours["bare"].get("repo_bytes"), m["ostree_bare"]["repo_bytes"]),
        "archive_commit_vs_floor": ratio(ours["archive"].get("seconds"), m["floor"]["seconds"]),
        "ostree_archive_vs_floor": ratio(m["ostree_archive"]["seconds"], m["floor"]["seconds"]),
        "commit_rss_peak_mib": rss_peak_mib,
        "commit_rss_small_tree_mib": None if rss_small_kib is None else rss_small_kib / 1024,
    }

    def at_least(v, t):
        return None if v is None else v >= t

    def at_most(v, t):
        return None if v is None else v <= t

    d["targets"] = {
        "archive_commit_speedup": at_least(d["archive_commit_speedup"], TARGETS["archive_commit_speedup"]),
        "archive_size_le_ostree": at_most(d["archive_size_vs_ostree"], 1.0),
        "bare_commit_speedup": at_least(d["bare_commit_speedup"], TARGETS["bare_commit_speedup"]),
        "checkout_vs_cp": at_most(d["checkout_vs_cp"], TARGETS["checkout_vs_cp"]),
        "commit_rss": at_most(rss_peak_mib, TARGETS["commit_rss_mib"]),
    }
    return {"medians": m, "derived": d}


def table(summary: dict, stats: dict, runs: int) -> str:
    m, d = summary["medians"], summary["derived"]
    t = d["targets"]
    o = lambda op, k: m.get(op, {}).get(k)  # noqa: E731
    lines = [
        f"### Store bench: {stats['files']:,} files, {stats['bytes'] / MB:,.0f} MB "
        f"({stats['unique_files']:,} files, {stats['unique_bytes'] / MB:,.0f} MB without hardlinks), "
        f"median of {runs} run(s)",
        "",
        "| operation | ours | peer | ratio | target | result |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| archive commit | {fmt_s(o('ours_archive', 'seconds'))} | ostree {fmt_s(o('ostree_archive', 'seconds'))} "
        f"| {fmt_x(d['archive_commit_speedup'], ' faster')} | >= {TARGETS['archive_commit_speedup']:g}x "
        f"| {verdict(t['archive_commit_speedup'])} |",
        f"| archive repo size | {fmt_mb(o('ours_archive', 'repo_bytes'))} | ostree {fmt_mb(o('ostree_archive', 'repo_bytes'))} "
        f"| {fmt_x(d['archive_size_vs_ostree'], ' of ostree')} | <= ostree | {verdict(t['archive_size_le_ostree'])} |",
        f"| bare commit | {fmt_s(o('ours_bare', 'seconds'))} | ostree {fmt_s(o('ostree_bare', 'seconds'))} "
        f"| {fmt_x(d['bare_commit_speedup'], ' faster')} | >= {TARGETS['bare_commit_speedup']:g}x "
        f"| {verdict(t['bare_commit_speedup'])} |",
        f"| bare repo size | {fmt_mb(o('ours_bare', 'repo_bytes'))} | ostree {fmt_mb(o('ostree_bare', 'repo_bytes'))} "
        f"| {fmt_x(d['bare_size_vs_ostree'], ' of ostree')} | – | – |",
        f"| hardlink checkout | {fmt_s(o('ours_checkout', 'seconds'))} | cp -al {fmt_s(o('cp_al', 'seconds'))} "
        f"| {fmt_x(d['checkout_vs_cp'], ' of cp')} | <= {TARGETS['checkout_vs_cp']:g}x | {verdict(t['checkout_vs_cp'])} |",
        f"| (ostree checkout -H) | – | {fmt_s(o('ostree_checkout', 'seconds'))} "
        f"| {fmt_x(d['ostree_checkout_vs_cp'], ' of cp')} | – | – |",
        f"| commit peak RSS (max) | {fmt_mib(d['commit_rss_peak_mib'])} "
        f"| ostree {o('ostree_archive', 'rss_kib') / 1024:.1f} MiB (archive) "
        f"| – | <= {TARGETS['commit_rss_mib']:g} MiB | {verdict(t['commit_rss'])} |",
        f"| floor (read+BLAKE3+zstd-{ARCHIVE_ZSTD_LEVEL}, 2 threads) | {fmt_s(o('ours_archive', 'seconds'))} "
        f"| floor {fmt_s(m['floor']['seconds'])}, {fmt_mb(m['floor']['compressed_bytes'])} zstd "
        f"| {fmt_x(d['archive_commit_vs_floor'], ' of floor')} | – | – |",
    ]
    if d["commit_rss_small_tree_mib"] is not None:
        big = d["commit_rss_peak_mib"]
        lines += [
            "",
            f"Commit peak RSS: small tree {fmt_mib(d['commit_rss_small_tree_mib'])}, "
            f"this tree {fmt_mib(big)}.",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per operation (default 5)")
    ap.add_argument("--quick", action="store_true", help="small tree, for a smoke test")
    ap.add_argument(
        "--skip-ours",
        action="store_true",
        help="measure only ostree, cp and the floor (while `update` does not build yet)",
    )
    ap.add_argument("--update-bin", type=Path, default=REPO_ROOT / "target/release/update")
    ap.add_argument("--floor-bin", type=Path, default=REPO_ROOT / "bench/floor/target/release/floor")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    need = [(args.floor_bin, "cargo build --release --manifest-path bench/floor/Cargo.toml")]
    if not args.skip_ours:
        need.append((args.update_bin, "cargo build --release -p update-cli"))
    for path, how in need:
        if not os.access(path, os.X_OK):
            log(f"error: {path} missing; build it with `{how}` (or use bench/run)")
            return 1
    for tool in ("ostree", "dpkg", "apt-get", GNU_TIME):
        if not shutil.which(tool):
            log(f"error: {tool} not found; run scripts/install-deps.sh")
            return 1

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    apt = Apt()
    small_tree, small_stats = build_tree("quick", QUICK_PACKAGES, apt)
    if args.quick:
        tree, stats = small_tree, small_stats
    else:
        tree, stats = build_tree("full", FULL_PACKAGES, apt)
        if stats["files"] < FULL_MIN_FILES or stats["bytes"] < FULL_MIN_BYTES:
            log(f"warning: tree smaller than intended ({FULL_MIN_FILES} files, {FULL_MIN_BYTES // MB} MB)")
    log(
        f"tree {tree}: {stats['files']:,} files, {stats['dirs']:,} dirs, "
        f"{stats['symlinks']:,} symlinks, {stats['bytes']:,} bytes ({stats['bytes'] / MB:,.0f} MB); "
        f"counting hardlinks once {stats['unique_files']:,} files, {stats['unique_bytes']:,} bytes"
    )

    work = BENCH_DIR / "work"
    rm_rf(work)
    work.mkdir()
    run(["sync"])
    time.sleep(5)  # let the discards of a previous bench's deletions drain
    bench = Bench(None if args.skip_ours else args.update_bin, args.floor_bin, work)

    # Peak RSS of our commit on the small tree, to set beside the big tree's:
    # a streaming committer's RSS should not grow with tree size.
    rss_small = None
    if bench.update and not args.quick:
        rss_small = bench.ours_commit(small_tree, "archive")["rss_kib"]

    runs = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs} ...")
        runs.append(bench.one_run(tree))
    rm_rf(work)

    summary = summarize(runs, rss_small)
    print(table(summary, stats, args.runs))

    result = {
        "tree": {"path": str(tree), "quick": args.quick, **stats},
        "runs": runs,
        **summary,
        "targets": TARGETS,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "ostree": run(["ostree", "--version"]).splitlines()[1].split(":", 1)[1].strip(" '"),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = BENCH_DIR / "store-bench.json"
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
