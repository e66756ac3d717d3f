#!/bin/bash
# pack-disk.sh STAGE DISK: pack a staging sysroot into a bootable GPT disk image, with no root
# privileges, loop devices or mounts (tests/vm/README.md):
#   partition 1 at 1 MiB: the ESP (vfat), the contents of STAGE/efi (the boot directory
#     `update sysroot init --esp STAGE/efi` set up: loader/entries, update/OS/KVER-CSUM/...)
#     plus systemd-boot as /EFI/BOOT/BOOTX64.EFI (OVMF boots the removable-media path when
#     its NVRAM is empty) and /loader/loader.conf (`timeout 0`) unless STAGE/efi has one;
#   partition 2: the root (ext4, mkfs.ext4 -d, which keeps hardlinks), STAGE without the
#     contents of STAGE/efi (its mount point stays, empty).
# Env: ESP_MB (default 64), ROOT_FREE_MB free space left in the root (default 256).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
STAGE=${1:?usage: pack-disk.sh STAGE DISK}
DISK=${2:?usage: pack-disk.sh STAGE DISK}
ESP_MB=${ESP_MB:-64}
ROOT_FREE_MB=${ROOT_FREE_MB:-256}
[ -d "$STAGE/efi" ] || vm_die "$STAGE/efi does not exist (the ESP contents)"
[ -r "$SDBOOT_EFI" ] || vm_die "no $SDBOOT_EFI: run scripts/install-deps.sh (package systemd-boot-efi)"
T=$(mktemp -d "$VM_WORK/pack.XXXXXX")
# The ESP contents are moved out of the stage while the root image is made, then put back.
restore() { if [ -d "$T/esp" ]; then rmdir "$STAGE/efi" 2>/dev/null && mv "$T/esp" "$STAGE/efi"; fi; rm -rf "$T"; }
trap restore EXIT
mv "$STAGE/efi" "$T/esp"; mkdir "$STAGE/efi"; chmod --reference="$T/esp" "$STAGE/efi"

# ESP.
mkfs.vfat -C -n ESP "$T/esp.img" $((ESP_MB * 1024)) >/dev/null
shopt -s nullglob dotglob
set -- "$T"/esp/*
[ $# -eq 0 ] || mcopy -s -Q -i "$T/esp.img" "$@" ::/
mmd -D s -i "$T/esp.img" ::/EFI ::/EFI/BOOT ::/loader 2>/dev/null || true
mcopy -o -i "$T/esp.img" "$SDBOOT_EFI" ::/EFI/BOOT/BOOTX64.EFI
if [ ! -f "$T/esp/loader/loader.conf" ]; then
  printf 'timeout 0\neditor no\n' > "$T/loader.conf"
  mcopy -i "$T/esp.img" "$T/loader.conf" ::/loader/loader.conf
fi

# Root.
used_kb=$(du -sk "$STAGE" | cut -f1)
root_mb=$(( used_kb * 5 / 4 / 1024 + ROOT_FREE_MB ))
mkfs.ext4 -q -F -L vmroot -d "$STAGE" "$T/root.img" "${root_mb}M" >/dev/null

# GPT: the ESP at 1 MiB, the root right after it.
esp_s=$((ESP_MB * 2048)); root_s=$((root_mb * 2048)); root_start=$((2048 + esp_s))
rm -f "$DISK"; truncate -s $(( (root_start + root_s + 2048) * 512 )) "$DISK"
sfdisk -q "$DISK" <<EOP
label: gpt
start=2048, size=$esp_s, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"
start=$root_start, size=$root_s, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"
EOP
dd if="$T/esp.img" of="$DISK" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$T/root.img" of="$DISK" bs=512 seek=$root_start conv=notrunc,sparse status=none
echo "pack-disk: $DISK: ESP ${ESP_MB} MiB at 1 MiB, root ${root_mb} MiB ($((used_kb / 1024)) MiB used)" >&2
