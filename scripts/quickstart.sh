#!/usr/bin/env bash
# Quick start: build `update`, then do a builder's whole job on a small tree and check
# the result: make a signing key, commit the tree signed into an archive repo, verify,
# inspect, commit a second version, diff, check out by copy and by hardlink from a bare
# repo, and fsck.
#
# Usage: scripts/quickstart.sh [WORKDIR] [SOURCE_TREE]
#   WORKDIR      where repos and checkouts go (default: a new temp dir)
#   SOURCE_TREE  a directory, a tar(.gz/.zst) or git:PATH[:REV] (default: fixtures/demo-rootfs)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --release -p update-cli
update() { target/release/update "$@"; }

work=${1:-$(mktemp -d /tmp/update-quickstart.XXXXXX)}
src=${2:-fixtures/demo-rootfs}
mkdir -p "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a release key"
[ -e "$work/release.key" ] || update key generate --output "$work/release.key"
mkdir -p "$work/trusted" && cp "$work/release.key.pub" "$work/trusted/release.pub"

step "an archive repo for publishing, and a signed commit of $src"
[ -e "$work/repo/config" ] || update init --repo "$work/repo" --mode archive
c1=$(update commit --repo "$work/repo" --branch demo/stable --subject "Demo 1.0" \
    --version 1.0 --owner-uid 0 --owner-gid 0 --sign-with "$work/release.key" "$src")
echo "commit $c1"
update verify --repo "$work/repo" "$c1" --trusted-keys "$work/trusted"

step "a second version: one file changed, one added"
v2="$work/tree-v2"
rm -rf "$v2" && cp -a "$src" "$v2"
mkdir -p "$v2/usr/etc" && echo 'VERSION_ID=2.0' >>"$v2/usr/etc/os-release"
echo 'new in 2.0' >"$v2/usr/share/NEWS"
c2=$(update commit --repo "$work/repo" --branch demo/stable --subject "Demo 2.0" \
    --version 2.0 --owner-uid 0 --owner-gid 0 --sign-with "$work/release.key" "$v2")
update log --repo "$work/repo" demo/stable
update diff --repo "$work/repo" "$c1" "$c2"
update ls -R --repo "$work/repo" demo/stable

step "check out by copy (archive repo)"
rm -rf "$work/checkout-copy"
update checkout --repo "$work/repo" demo/stable "$work/checkout-copy"
diff -r --no-dereference "$v2" "$work/checkout-copy"
echo "checkout matches the source tree"

step "a bare repo (as on a device) and a hardlink checkout"
[ -e "$work/bare/config" ] || update init --repo "$work/bare" --mode bare
update commit --repo "$work/bare" --branch demo/stable --owner-uid 0 --owner-gid 0 "$v2" >/dev/null
rm -rf "$work/checkout-hardlink"
update checkout --repo "$work/bare" demo/stable "$work/checkout-hardlink"
diff -r --no-dereference "$v2" "$work/checkout-hardlink"
echo "hardlink checkout matches the source tree"

step "fsck"
update fsck --repo "$work/repo"
update fsck --repo "$work/bare"
printf '\nDone. Everything is in %s\n' "$work"
