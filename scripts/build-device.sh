#!/usr/bin/env bash
# Build what goes onto a device (issue 15): the `update` binary with the `device` feature set
# (the front end, pull, deploy, boot and status commands; no commit, publish, serve or
# mirror) and `update-prepare-root`, the small early-boot binary an initramfs runs, both in
# the size-focused `device` profile (root Cargo.toml: fat LTO, one codegen unit, opt-level s,
# panic=abort, stripped).
#
# Usage: scripts/build-device.sh [--profile NAME]
#   --profile NAME   build in another cargo profile (default: device)
#
# Prints each binary's size, then as its last two lines (for scripts/build-deb.sh):
#   update=PATH
#   prepare-root=PATH
# PATH is $CARGO_TARGET_DIR/PROFILE/... (CARGO_TARGET_DIR defaults to target/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile=device
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
        --profile=*) profile="${1#--profile=}"; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-device.sh: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

target_dir="${CARGO_TARGET_DIR:-$root/target}"
# Cargo puts the dev profile under debug/ and every other profile under its own name.
case "$profile" in dev) out="$target_dir/debug" ;; *) out="$target_dir/$profile" ;; esac

cd "$root"
# One cargo run each: the feature sets differ, and `-p A -p B` would unify them.
cargo build --locked --profile "$profile" -p update-cli --no-default-features --features device
cargo build --locked --profile "$profile" -p update-prepare-root

size_of() {
    # The size once stripped (a no-op for the device profile, which strips already),
    # measured on a copy so the build output stays as cargo left it.
    local tmp
    tmp="$(mktemp)"
    cp "$1" "$tmp"
    strip "$tmp"
    stat -c %s "$tmp"
    rm -f "$tmp"
}
for bin in update update-prepare-root; do
    [ -x "$out/$bin" ] || { echo "build-device.sh: no $out/$bin after the build" >&2; exit 1; }
    bytes="$(size_of "$out/$bin")"
    awk -v b="$bin" -v n="$bytes" 'BEGIN { printf "%-20s %9d bytes (%.2f MB) stripped\n", b, n, n / 1e6 }'
done
echo "update=$out/update"
echo "prepare-root=$out/update-prepare-root"
