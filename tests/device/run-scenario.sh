#!/bin/bash
# run-scenario.sh OUT: a real Debian device in a VM, from a stock rootfs to a rollback
# (tests/device/README.md). Needs root, the packages of scripts/install-deps.sh, and the
# Debian archive on the first run (the base tree is cached: build-base.sh).
#
# Builder side: the cached debootstrap tree is unpacked, the project's .deb installed into it
# (make-tree.sh 1), committed with `update commit --bootable`, signed, published and served
# by `update serve` on 127.0.0.1; `update install to-disk` makes the disk image, with the
# device's source (the server as the guest sees it), key and schedule.
# Device side, one qemu run (OVMF + systemd-boot, TCG; user networking with restrict=on and
# one forward to the server): v1 boots and blesses itself; the probe edits /etc and /var;
# the test publishes v2 (one more package, a changed /etc default); the device's own
# update.timer pulls, deploys and reboots it (the probe edits /etc again at shutdown, after
# the deploy); v2 boots with every edit carried; the test publishes v3 (a failing health
# check); the timer takes it; v3 fails boot-retry-limit times; systemd-boot falls back to v2,
# which reports `update status --json` and the audit log and powers off.
#
# Env: UPDATE_BIN (the builder's `update`; default: the newest of target/{release,debug}/update),
#      DEB (the .deb to install; default: built by scripts/build-deb.sh into OUT),
#      TIMEOUT per wait (default 900 s), MEM (MiB, default 1024).
# Writes into OUT: serial.log, timeline.txt ("SECONDS line" for each boot, update and
# marker), timings.txt ("name seconds"), status.json, audit.jsonl, entries.txt, disk.img.
# Exits non-zero with the reason (and the console's tail) when a step does not happen.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
OUT=${1:?usage: run-scenario.sh OUT}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
TIMEOUT=${TIMEOUT:-900}
if [ -z "${UPDATE_BIN:-}" ]; then
  UPDATE_BIN=$(ls -t "$REPO_ROOT"/target/{release,debug}/update 2>/dev/null | head -1 || true)
  [ -n "$UPDATE_BIN" ] || dev_die "no update binary: cargo build -p update-cli (or set UPDATE_BIN)"
fi
for tool in qemu-system-x86_64 debootstrap mdir mtype sfdisk mkfs.ext4 mkfs.vfat zstd python3 socat; do
  command -v "$tool" >/dev/null || dev_die "$tool not found: run scripts/install-deps.sh"
done
for f in "$OVMF_CODE" "$OVMF_VARS_TEMPLATE"; do
  [ -r "$f" ] || dev_die "$f not found: run scripts/install-deps.sh"
done

: > "$OUT/timings.txt"
T0=${EPOCHREALTIME/./}
lap=$T0
timing() {  # timing NAME: seconds since the previous lap
  local now=${EPOCHREALTIME/./} d
  d=$(( (now - lap) / 100000 )); lap=$now
  printf '%s %d.%d\n' "$1" $((d / 10)) $((d % 10)) | tee -a "$OUT/timings.txt" | sed 's/^/DEVTIMING /' >&2
}
u() { echo "+ update $*" >&2; "$UPDATE_BIN" "$@"; }
SERVER_PID= QEMU_PID=
cleanup() {
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

# 1. Fixtures: the base tree (cached), the .deb.
eval "$("$HERE/build-base.sh")"   # sets base= and extra=
if [ -z "${DEB:-}" ]; then
  DEB=$("$REPO_ROOT/scripts/build-deb.sh" "$OUT/deb" | tail -n 1)
fi
timing fixtures

# 2. v1: the stock tree plus our package, committed bootable, signed, published, served.
TREE=$OUT/tree
rm -rf "$TREE"; mkdir -p "$TREE"
zstd -q -dc "$base" | tar -C "$TREE" --numeric-owner --xattrs --acls -xf -
"$HERE/make-tree.sh" "$TREE" 1 "$DEB" >&2
timing make-tree-v1
u init --repo "$OUT/builder" --mode archive
mkdir -p "$OUT/keys"
u key generate --output "$OUT/keys/release" >/dev/null
commit() {  # commit VERSION
  u commit --bootable --repo "$OUT/builder" --branch device/os --version "$1" \
    --subject "test device v$1" --sign-with "$OUT/keys/release" "$TREE" > "$OUT/commit-v$1"
  u publish --repo "$OUT/builder" --key "$OUT/keys/release" --output "$OUT/pub" >/dev/null
}
commit 1
timing commit-publish-v1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$UPDATE_BIN" serve --root "$OUT/pub" --listen "127.0.0.1:$PORT" --access-log "$OUT/access.log" \
  2> "$OUT/serve.log" &
SERVER_PID=$!

# 3. The disk.
u install to-disk "$OUT/disk.img" --size 4G --repo "$OUT/builder" --ref device/os \
  --source "http://10.0.2.100:8080/#device/os" --key "release=$OUT/keys/release.pub" \
  --schedule "minute 1" --karg console=ttyS0 >&2
timing install-to-disk

# 4. Boot it, and drive the builder side from what the console shows.
cp "$OVMF_VARS_TEMPLATE" "$OUT/vars.fd"
: > "$OUT/serial.log"; : > "$OUT/timeline.txt"
qemu_args=(-machine q35,accel=tcg -cpu max -nodefaults -smp 1 -m "${MEM:-1024}" -display none
  -vga none -monitor none -parallel none
  -drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
  -drive "if=pflash,format=raw,unit=1,file=$OUT/vars.fd"
  -drive "if=virtio,format=raw,file=$OUT/disk.img"
  -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:socat STDIO TCP:127.0.0.1:$PORT"
  -device virtio-net-pci,netdev=n0)
QSTART=${EPOCHREALTIME/./}
(
  qemu-system-x86_64 "${qemu_args[@]}" -serial stdio </dev/null |
    while IFS= read -r line || [ -n "$line" ]; do
      line=${line%$'\r'}
      printf '%s\n' "$line" >&3
      clean=$(printf '%s' "$line" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g')
      case $clean in
        *VMTEST-* | *"Linux version"* | *"Starting update.service"* | *"Finished update.service"* | *"Reached target boot-complete"* | *"reboot: Restarting"* | *"reboot: Power down"* | *"Kernel panic"* | *"update-prepare-root"* | *"update: deployment ready"* | *"BdsDxe: starting"* | *"Failed to start"*)
          d=$(( (${EPOCHREALTIME/./} - QSTART) / 100000 ))
          printf '%5d.%d %s\n' $((d / 10)) $((d % 10)) "$clean" >&4 ;;
      esac
    done 3>"$OUT/serial.log" 4>"$OUT/timeline.txt"
) &
QEMU_PID=$!

wait_for() {  # wait_for PATTERN WHAT: until the console shows PATTERN
  local i=0
  while ! grep -aq -- "$1" "$OUT/serial.log"; do
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
      echo "--- the VM stopped before: $2; timeline:" >&2; cat "$OUT/timeline.txt" >&2
      echo "--- console tail:" >&2; tail -40 "$OUT/serial.log" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g' >&2
      dev_die "the VM stopped before: $2"
    fi
    if [ $i -ge "$TIMEOUT" ]; then
      echo "--- no $2 after ${TIMEOUT}s; timeline:" >&2; cat "$OUT/timeline.txt" >&2
      echo "--- console tail:" >&2; tail -40 "$OUT/serial.log" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g' >&2
      dev_die "timed out waiting for: $2"
    fi
    sleep 1; i=$((i + 1))
  done
}
wait_for "VMTEST-READY version=1" "v1 booted and ready"
timing boot-v1

# 5. v2, published while the device runs; its timer finds it.
"$HERE/make-tree.sh" "$TREE" 2 "$extra" >&2
commit 2
timing commit-publish-v2
wait_for "VMTEST-READY version=2" "the device updated itself to v2"
timing update-to-v2

# 6. v3 fails its health check; the device falls back to v2 by itself.
"$HERE/make-tree.sh" "$TREE" 3 >&2
commit 3
timing commit-publish-v3
wait_for "VMTEST-DONE" "the fallback to v2 and its report"
timing update-to-v3-and-fallback
i=0; while kill -0 "$QEMU_PID" 2>/dev/null && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
QEMU_PID=

# 7. Read the results back.
tr -d '\r' < "$OUT/serial.log" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g' > "$OUT/console.txt"
awk '/VMTEST-STATUS-END/{p=0} p{print} /VMTEST-STATUS-BEGIN/{p=1}' "$OUT/console.txt" > "$OUT/status.json"
sed -n 's/.*VMTEST-AUDIT //p' "$OUT/console.txt" > "$OUT/audit.jsonl"
ESP_OFF=$(sfdisk --json "$OUT/disk.img" | python3 -c 'import json,sys; t=json.load(sys.stdin)["partitiontable"]; p=[p for p in t["partitions"] if p["type"].upper()=="C12A7328-F81F-11D2-BA4B-00A0C93EC93B"][0]; print(p["start"]*t.get("sectorsize",512))')
mdir -i "$OUT/disk.img@@$ESP_OFF" -b ::/loader/entries | xargs -n1 basename | sort > "$OUT/entries.txt"
rm -rf "$TREE" "$OUT/builder" "$OUT/vars.fd"
d=$(( (${EPOCHREALTIME/./} - T0) / 100000 ))
printf 'total %d.%d\n' $((d / 10)) $((d % 10)) | tee -a "$OUT/timings.txt" | sed 's/^/DEVTIMING /' >&2
cat "$OUT/timeline.txt" >&2
