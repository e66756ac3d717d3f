#!/usr/bin/env python3
"""Stripped sizes of the binaries a device carries, against their targets (issue 15) and
OSTree's as the peer.

    bench/run sizes          (builds the binaries, then runs this)
    python3 bench/sizes-bench.py --full PATH --device PATH --prepare-root PATH

Sizes are of a stripped copy (`strip`), in MB of 1,000,000 bytes. OSTree's
`ostree-prepare-root` comes from Debian's ostree-boot package, downloaded and unpacked
under $BENCH_DIR (not installed: it would add initramfs hooks to this machine);
`/usr/bin/ostree` is dynamically linked, so libostree-1.so is shown beside it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import common
from common import BENCH_DIR, MB, log, run, verdict

TARGETS = {"prepare-root": 2 * MB, "device": 6 * MB}


def stripped_size(path: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        run(["strip", str(copy)])
        return copy.stat().st_size


def ostree_prepare_root() -> Path | None:
    """OSTree's early-boot binary: installed, or from the ostree-boot .deb."""
    for p in ["/usr/lib/ostree/ostree-prepare-root", "/lib/ostree/ostree-prepare-root"]:
        if os.path.isfile(p):
            return Path(p)
    debs = BENCH_DIR / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        deb = common.Apt().download("ostree-boot", debs)
    except common.CommandError as e:
        log(f"no ostree-boot package: {e}")
        return None
    tree = BENCH_DIR / "ostree-boot"
    common.rm_rf(tree)
    run(["dpkg", "-x", str(deb), str(tree)])
    found = glob.glob(str(tree / "usr/lib/ostree/ostree-prepare-root")) + glob.glob(
        str(tree / "lib/ostree/ostree-prepare-root")
    )
    return Path(found[0]) if found else None


def libostree() -> Path | None:
    out = subprocess.run(["ldd", "/usr/bin/ostree"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libostree" in line and "=>" in line:
            return Path(line.split("=>")[1].split()[0])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", type=Path, required=True, help="update, all features, release")
    ap.add_argument("--full-profile", default="release")
    ap.add_argument("--device", type=Path, required=True, help="update, --features device")
    ap.add_argument("--prepare-root", type=Path, required=True, help="update-prepare-root")
    ap.add_argument("--device-profile", default="device")
    a = ap.parse_args()

    rows = []  # (what, path, bytes, target or None)
    rows.append((f"`update`, all features ({a.full_profile})", a.full, stripped_size(a.full), None))
    rows.append(
        (f"`update`, device features ({a.device_profile})", a.device, stripped_size(a.device), TARGETS["device"])
    )
    rows.append(
        (f"`update-prepare-root` ({a.device_profile})", a.prepare_root, stripped_size(a.prepare_root), TARGETS["prepare-root"])
    )
    peers = []
    opr = ostree_prepare_root()
    peers.append(("OSTree `ostree-prepare-root`", opr, stripped_size(opr) if opr else None))
    if os.path.isfile("/usr/bin/ostree"):
        peers.append(("OSTree `/usr/bin/ostree`", Path("/usr/bin/ostree"), stripped_size(Path("/usr/bin/ostree"))))
        lib = libostree()
        if lib:
            peers.append((f"OSTree `{lib.name}` (ostree's library)", lib, stripped_size(lib)))

    print("| binary | stripped size | target | verdict |")
    print("| --- | ---: | ---: | --- |")
    for what, _, size, target in rows:
        t = f"≤ {target / MB:.0f} MB" if target else "-"
        ok = None if target is None else size <= target
        print(f"| {what} | {size / MB:.2f} MB | {t} | {verdict(ok)} |")
    for what, _, size in peers:
        shown = "not found" if size is None else f"{size / MB:.2f} MB"
        print(f"| {what} (peer) | {shown} | - | - |")

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out = BENCH_DIR / "sizes-bench.json"
    out.write_text(
        json.dumps(
            {
                "ours": [
                    {"what": w, "path": str(p), "bytes": s, "target": t} for w, p, s, t in rows
                ],
                "peers": [{"what": w, "path": str(p) if p else None, "bytes": s} for w, p, s in peers],
            },
            indent=1,
        )
    )
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
