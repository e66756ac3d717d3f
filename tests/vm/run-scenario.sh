#!/bin/bash
# run-scenario.sh OUT: the VM test of the deploy engine, end to end (tests/vm/README.md).
#
# Host side: build three guest OS trees A, B, C (build-tree.sh) around the Debian kernel and an
# initramfs whose /init is dist/initramfs/update-init; commit them signed to vm/a, vm/b, vm/c
# in a builder repo and publish it; make a staging sysroot (`update sysroot init`, ESP at
# STAGE/efi), pull the three refs into it, deploy A; pack it into a GPT disk (pack-disk.sh).
# Guest side, one qemu run under OVMF + systemd-boot, the guest rebooting itself
# (guest-init.sh): A blesses itself and deploys B; B blesses itself and deploys C; C fails
# its health check three times; systemd-boot falls back to B, which prints
# `update status --json` and powers off. Then the same disk is booted directly (no firmware)
# with a deployment that does not exist, which update-init must fail loudly.
#
# Env: UPDATE_BIN (default: the newer of target/release/update and target/debug/update),
#      TIMEOUT for the qemu run (default 600 s).
# Writes into OUT: serial.log (the whole console), timeline.txt (marker lines with seconds
# since qemu started), status.json (what B printed), entries.txt (the ESP's loader/entries
# after the run; entries-content.txt has their text), esp-files.txt (the ESP's /update after
# the run), loader.conf (the ESP's, after the run), serial-broken.log and qemu-result-broken (the failing boot), disk.img,
# timings.txt ("name seconds" lines, also printed as VMTIMING).
# Exits non-zero when the setup fails; what the guest did is for the caller to judge.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
OUT=${1:?usage: run-scenario.sh OUT}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "${UPDATE_BIN:-}" ]; then
  UPDATE_BIN=$(ls -t "$REPO_ROOT"/target/{release,debug}/update 2>/dev/null | head -1 || true)
  [ -n "$UPDATE_BIN" ] || vm_die "no update binary: cargo build -p update-cli (or set UPDATE_BIN)"
fi
for tool in qemu-system-x86_64 mkfs.vfat mcopy mdir sfdisk mkfs.ext4 cpio depmod modprobe strip; do
  command -v "$tool" >/dev/null || vm_die "$tool not found: run scripts/install-deps.sh"
done
for f in "$OVMF_CODE" "$OVMF_VARS_TEMPLATE" "$SDBOOT_EFI" /bin/busybox; do
  [ -r "$f" ] || vm_die "$f not found: run scripts/install-deps.sh"
done

: > "$OUT/timings.txt"
T_START=${EPOCHREALTIME/./}
lap=$T_START
timing() {  # timing NAME: seconds since the previous lap
  local now=${EPOCHREALTIME/./} d
  d=$(( (now - lap) / 100000 )); lap=$now
  printf '%s %d.%d\n' "$1" $((d / 10)) $((d % 10)) | tee -a "$OUT/timings.txt" | sed 's/^/VMTIMING /'
}
u() { echo "+ update $*" >&2; "$UPDATE_BIN" "$@"; }

# 1. The kernel (cached), the guest's copy of `update` (stripped), the initramfs.
KCACHE=$("$HERE/fetch-kernel.sh")
cp "$UPDATE_BIN" "$OUT/update"; strip "$OUT/update"
"$HERE/build-initramfs.sh" "$OUT/initramfs.img" "$OUT/update" "$KCACHE"
timing kernel-and-initramfs

# 2. Three OS versions, committed signed and published.
"$HERE/build-tree.sh" "$OUT/trees/A" A good "$OUT/update" "$KCACHE" "$OUT/initramfs.img"
"$HERE/build-tree.sh" "$OUT/trees/B" B good "$OUT/update" "$KCACHE" "$OUT/initramfs.img"
# C's initramfs differs (one more file, in a second cpio appended to the first, which the
# kernel unpacks too), so C's boot files get their own directory on the ESP.
mkdir -p "$OUT/extra/etc"; echo C > "$OUT/extra/etc/vmtest-initramfs"
(cd "$OUT/extra" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -1) |
  cat "$OUT/initramfs.img" - > "$OUT/initramfs-c.img"
"$HERE/build-tree.sh" "$OUT/trees/C" C bad "$OUT/update" "$KCACHE" "$OUT/initramfs-c.img"
u init --repo "$OUT/builder" --mode archive
mkdir -p "$OUT/keys"
u key generate --output "$OUT/keys/release" >/dev/null
n=0
for v in A B C; do
  n=$((n + 1))
  ref=vm/$(echo "$v" | tr 'A-Z' 'a-z')
  u commit --repo "$OUT/builder" --branch "$ref" --version "$v" --timestamp $((1700000000 + n)) \
    --sign-with "$OUT/keys/release" "$OUT/trees/$v" > "$OUT/commit-$v"
  echo "commit $v ($ref): $(cat "$OUT/commit-$v")" >&2
done
u publish --repo "$OUT/builder" --key "$OUT/keys/release" --output "$OUT/pub" >/dev/null
rm -rf "$OUT/trees" "$OUT/extra"
timing build-commit-publish

# 3. The staging sysroot: A deployed, B and C pulled for the guest to deploy.
STAGE=$OUT/stage
mkdir -p "$STAGE"
u sysroot init --sysroot "$STAGE" --os vmos --esp "$STAGE/efi" \
  --karg root=/dev/vda2 --karg console=ttyS0 --karg panic=-1 --karg quiet
u remote add --repo "$STAGE/update/repo" vm "file://$OUT/pub" --key "$OUT/keys/release.pub"
u pull --repo "$STAGE/update/repo" vm >/dev/null
u deploy --sysroot "$STAGE" --os vmos vm:vm/a
u status --sysroot "$STAGE" >&2
timing stage-sysroot

# 4. The disk.
"$HERE/pack-disk.sh" "$STAGE" "$OUT/disk.img"
rm -rf "$STAGE" "$OUT/builder" "$OUT/pub"
echo "ESP before boot: $(mdir -i "$OUT/disk.img@@1M" -b ::/loader/entries | xargs -n1 basename | tr '\n' ' ')" >&2
timing pack-disk

# 5. Boot it: one qemu run, the guest reboots itself until B powers off.
cp "$OVMF_VARS_TEMPLATE" "$OUT/vars.fd"
r=$(SERIAL=$OUT/serial.log TIMELINE=$OUT/timeline.txt DISK=$OUT/disk.img VARS=$OUT/vars.fd \
  TIMEOUT=${TIMEOUT:-600} "$HERE/run-vm.sh")
echo "$r" > "$OUT/qemu-result"
timing qemu-run
echo "qemu: $r" >&2
cat "$OUT/timeline.txt" >&2

# 6. Read the results back: status JSON from the console, the entries from the ESP.
tr -d '\r' < "$OUT/serial.log" | sed 's/\x1b\[[0-9;=]*[a-zA-Z]//g' |
  awk '/^VMTEST-STATUS-END/{p=0} p{print} /^VMTEST-STATUS-BEGIN/{p=1}' > "$OUT/status.json"
mdir -i "$OUT/disk.img@@1M" -b ::/loader/entries | xargs -n1 basename | sort > "$OUT/entries.txt"
while read -r e; do
  echo "== $e"; mtype -i "$OUT/disk.img@@1M" "::/loader/entries/$e" | tr -d '\r'
done < "$OUT/entries.txt" > "$OUT/entries-content.txt"
mdir -i "$OUT/disk.img@@1M" -/ -b ::/update | sort > "$OUT/esp-files.txt"
mtype -i "$OUT/disk.img@@1M" ::/loader/loader.conf | tr -d '\r' > "$OUT/loader.conf"
echo "ESP after: $(tr '\n' ' ' < "$OUT/entries.txt")" >&2

# 7. A boot that must fail in the initramfs: the same disk, booted directly (no firmware,
#    -no-reboot) with update.deployment= naming a deployment that does not exist.
#    update-init must say why and exit, which panics the kernel (panic=-1: reboot, here exit).
SERIAL=$OUT/serial-broken.log KERNEL=$KCACHE/vmlinuz INITRD=$OUT/initramfs.img DISK=$OUT/disk.img \
  APPEND="root=/dev/vda2 console=ttyS0 panic=-1 quiet update.deployment=vmos/$(printf '0%.0s' $(seq 64)).0" \
  NOREBOOT=1 TIMEOUT=120 "$HERE/run-vm.sh" > "$OUT/qemu-result-broken"
timing broken-boot
echo "broken boot: $(cat "$OUT/qemu-result-broken"): $(tr -d '\r' < "$OUT/serial-broken.log" | grep -a 'update-init\|Kernel panic' | head -3 | tr '\n' ' ')" >&2

d=$(( (${EPOCHREALTIME/./} - T_START) / 100000 ))
printf 'total %d.%d\n' $((d / 10)) $((d % 10)) | tee -a "$OUT/timings.txt" | sed 's/^/VMTIMING /'
