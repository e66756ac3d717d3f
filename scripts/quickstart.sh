#!/usr/bin/env bash
# Quick start: build `update`, then do a builder's and a device's whole job on a small
# tree and check the result: make a signing key, commit the tree signed into an archive
# repo, verify, publish it and serve it on 127.0.0.1; a device (a bare repo) adds the
# remote with the key and pulls; the builder commits and publishes a second version (with
# a static delta), the device pulls the update, checks it out by hardlinks and compares it
# with the source; a device sysroot deploys it and marks it good; fsck all.
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

step "publish it, and serve it on 127.0.0.1"
update publish --repo "$work/repo" --key "$work/release.key"
port=""
for _ in 1 2 3 4 5 6 7 8; do
    p=$((20000 + RANDOM % 40000))
    # The binary itself, not the shell function, so that $! is the server's pid.
    target/release/update serve --root "$work/repo" --listen "127.0.0.1:$p" \
        --access-log "$work/serve.log" &
    server=$!
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] && break
    kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true
done
[ -n "$port" ] || { echo "quickstart: could not start update serve" >&2; exit 1; }
trap 'kill "$server" 2>/dev/null || true' EXIT
echo "serving $work/repo at http://127.0.0.1:$port/"

step "a device: a bare repo, the remote with the release key, a pull"
rm -rf "$work/device"
update init --repo "$work/device" --mode bare
update remote add --repo "$work/device" origin "http://127.0.0.1:$port/" \
    --key "$work/release.key.pub"
update pull --repo "$work/device" origin
update log --repo "$work/device" origin:demo/stable

step "a second version: one file changed, one added; published with a static delta"
v2="$work/tree-v2"
rm -rf "$v2" && cp -a "$src" "$v2"
mkdir -p "$v2/usr/etc" && echo 'VERSION_ID=2.0' >>"$v2/usr/etc/os-release"
echo 'new in 2.0' >"$v2/usr/share/NEWS"
# A bootable tree carries its kernel where OSTree looks: /usr/lib/modules/KVER/vmlinuz.
if ! ls "$v2"/usr/lib/modules/*/vmlinuz >/dev/null 2>&1; then
    kver=$(uname -r)
    mkdir -p "$v2/usr/lib/modules/$kver"
    if [ -r "/boot/vmlinuz-$kver" ]; then
        cp "/boot/vmlinuz-$kver" "$v2/usr/lib/modules/$kver/vmlinuz"
    else
        echo "stand-in kernel: this host has no readable /boot/vmlinuz-$kver" >"$v2/usr/lib/modules/$kver/vmlinuz"
    fi
fi
c2=$(update commit --repo "$work/repo" --branch demo/stable --subject "Demo 2.0" \
    --version 2.0 --owner-uid 0 --owner-gid 0 --sign-with "$work/release.key" "$v2")
update log --repo "$work/repo" demo/stable
update diff --repo "$work/repo" "$c1" "$c2"
update publish --repo "$work/repo" --key "$work/release.key"

step "the device pulls the update and checks it out by hardlinks"
update pull --repo "$work/device" origin
rm -rf "$work/checkout-hardlink"
update checkout --repo "$work/device" origin:demo/stable "$work/checkout-hardlink"
diff -r --no-dereference "$v2" "$work/checkout-hardlink"
echo "the device's checkout matches the source tree"

step "check out by copy (archive repo)"
rm -rf "$work/checkout-copy"
update checkout --repo "$work/repo" demo/stable "$work/checkout-copy"
diff -r --no-dereference "$v2" "$work/checkout-copy"
echo "checkout matches the source tree"
echo "requests the device made: $(wc -l <"$work/serve.log")"

step "a device sysroot: deploy it, boot it (the firmware's part is simulated here), mark it good"
rm -rf "$work/sysroot" && mkdir -p "$work/sysroot"
update sysroot init --sysroot "$work/sysroot" --os demo --esp "$work/sysroot/efi" \
    --karg root=/dev/vda2 --karg quiet
update remote add --repo "$work/sysroot/update/repo" origin "http://127.0.0.1:$port/" \
    --key "$work/release.key.pub"
update pull --repo "$work/sysroot/update/repo" origin:demo/stable
update deploy --sysroot "$work/sysroot" origin:demo/stable
ls "$work/sysroot/efi/loader/entries"
# What the firmware does: pick the first entry, count the try; the kernel command line
# then names the deployment.
entry=$(ls "$work/sysroot/efi/loader/entries" | head -1)
grep '^options' "$work/sysroot/efi/loader/entries/$entry" | sed 's/^options *//' >"$work/cmdline"
update status --sysroot "$work/sysroot" --proc-cmdline "$work/cmdline"
update mark-good --sysroot "$work/sysroot" --proc-cmdline "$work/cmdline"
update status --sysroot "$work/sysroot" --proc-cmdline "$work/cmdline"
dep=$(sed 's/.*update.deployment=demo\///; s/ .*//' "$work/cmdline")
diff -r --no-dereference "$v2/usr" "$work/sysroot/update/deploy/demo/deploy/$dep/usr"
echo "the deployment's /usr matches the source tree"

step "fsck"
update fsck --repo "$work/repo"
update fsck --repo "$work/device"
update fsck --repo "$work/sysroot/update/repo"
printf '\nDone. Everything is in %s\n' "$work"
