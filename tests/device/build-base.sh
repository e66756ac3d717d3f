#!/bin/bash
# build-base.sh: print the path of the cached Debian base tree (a zstd tar of a debootstrap
# rootfs) and of the extra package's .deb, building them when missing.
#
# The cache key is the hash of this script, env.sh's package list, suite and mirror: change
# any of them and a new base is built (the old ones are removed). Needs root and the Debian
# archive (debootstrap, about 2 minutes and 150 MB on the first run).
# Prints two lines: base=PATH and extra=PATH.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
command -v debootstrap >/dev/null || dev_die "debootstrap not found: run scripts/install-deps.sh"
[ "$(id -u)" = 0 ] || dev_die "building the base tree needs root (debootstrap, chroot)"
key=$( { cat "$HERE/build-base.sh"; echo "$DEV_SUITE $DEV_MIRROR $DEV_PACKAGES $DEV_EXTRA_PACKAGE"; } |
  sha256sum | cut -c1-16)
base=$DEV_CACHE/base-$DEV_SUITE-$key.tar.zst
extra_dir=$DEV_CACHE/extra-$DEV_SUITE-$key
mkdir -p "$DEV_CACHE"
exec 9>"$DEV_CACHE/.lock"
flock 9
if [ ! -s "$base" ]; then
  rm -rf "$DEV_CACHE"/base-* "$DEV_CACHE"/extra-* "$DEV_CACHE"/tmp-*
  tmp=$(mktemp -d "$DEV_CACHE/tmp-XXXXXX")
  echo "device-test: debootstrap $DEV_SUITE with $DEV_PACKAGES (cached as $base)" >&2
  if ! debootstrap --variant=minbase --include="$DEV_PACKAGES" "$DEV_SUITE" "$tmp/root" \
      "$DEV_MIRROR" > "$tmp/debootstrap.log" 2>&1; then
    tail -20 "$tmp/debootstrap.log" >&2
    dev_die "debootstrap failed (log above); the Debian archive $DEV_MIRROR must be reachable"
  fi
  # The .debs debootstrap downloaded are not part of the tree.
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
  # The extra package, downloaded with this machine's apt (Debian 12: the same suite).
  mkdir -p "$tmp/extra"
  (cd "$tmp/extra" && apt-get download -q "$DEV_EXTRA_PACKAGE" >/dev/null 2>"$tmp/apt.log") ||
    { cat "$tmp/apt.log" >&2; dev_die "apt-get download $DEV_EXTRA_PACKAGE failed"; }
  tar -C "$tmp/root" --numeric-owner --xattrs --acls -cf - . | zstd -q -T0 -3 -o "$tmp/base.tar.zst"
  mv "$tmp/extra" "$extra_dir"
  mv "$tmp/base.tar.zst" "$base"
  rm -rf "$tmp"
fi
echo "base=$base"
echo "extra=$(ls "$extra_dir"/*.deb)"
