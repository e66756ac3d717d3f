#!/usr/bin/env bash
# The whole test suite: the checks CI runs, in the order that fails fastest.
# Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

scripts/install-deps.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"  # cargo-deny, installed there

# The declared rust-version (root Cargo.toml) is checked two ways, neither needing the old
# toolchain (CI has only one): clippy's `incompatible_msrv` lint (on by default, denied by
# -D warnings below) refuses any std item stabilised after our rust-version; and here,
# every package of the locked dependency graph (all targets, dev- and build-dependencies
# too) must declare a rust-version no newer than ours. Not checked: language features
# (syntax) newer than rust-version, and dependencies that declare no rust-version.
echo "== rust-version of the dependencies"
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys

def version(s):
    return tuple(int(x) for x in (s.split(".") + ["0", "0"])[:3])

meta = json.load(sys.stdin)
members = [p for p in meta["packages"] if p["id"] in meta["workspace_members"]]
undeclared = [p["name"] for p in members if not p.get("rust_version")]
if undeclared:
    sys.exit(f"no rust-version declared by: {undeclared}")
ours = min(version(p["rust_version"]) for p in members)
newer = sorted(
    (version(p["rust_version"]), p["name"], p["version"])
    for p in meta["packages"]
    if p["id"] not in meta["workspace_members"]
    and p.get("rust_version")
    and version(p["rust_version"]) > ours
)
for v, name, ver in newer:
    print(f"{name} {ver} needs Rust {v[0]}.{v[1]}.{v[2]}", file=sys.stderr)
if newer:
    sys.exit(f"{len(newer)} dependencies need a newer Rust than our rust-version "
             f"{ours[0]}.{ours[1]}: raise it (root Cargo.toml) or pin older versions")
deps = len(meta["packages"]) - len(members)
print(f"rust-version {ours[0]}.{ours[1]}: none of the {deps} dependencies needs a newer Rust")
'

# Licenses, duplicate versions and sources of the dependency graph (deny.toml).
echo "== cargo deny check licenses bans sources (deny.toml)"
cargo deny --frozen check licenses bans sources
# Advisories need the RustSec database, which cargo-deny clones from GitHub: checked
# against a local copy when there is one, never fetched here (CI may have no network).
advisory_dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if compgen -G "$advisory_dbs/*/crates" >/dev/null; then
    echo "== cargo deny check advisories (local database in $advisory_dbs)"
    cargo deny --frozen check advisories
else
    echo "== cargo deny check advisories: SKIPPED, no local RustSec database in $advisory_dbs"
    echo "   (run \`cargo deny fetch\` where GitHub is reachable to check advisories too)"
fi

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p update-cli --no-default-features --features device --all-targets -- -D warnings  # the device build (issue 15)
# fuzz/ is a workspace of its own (cargo-fuzz, nightly to run); stable checks that its
# targets still compile against the library's API.
echo "== cargo check of fuzz/"
cargo check --locked --manifest-path fuzz/Cargo.toml --bins
echo "== cargo build"
cargo build --workspace
echo "== the Debian package (scripts/build-deb.sh: the device build), for the tests that install it"
# An absolute path: each test runs in its own package's directory.
UPDATE_DEB=$(scripts/build-deb.sh "${CARGO_TARGET_DIR:-$PWD/target}/deb" | tail -n 1)
export UPDATE_DEB
echo "== cargo test"
cargo test --workspace
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== all tests passed"
