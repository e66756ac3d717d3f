#!/bin/bash
# run-vm.sh: boot one qemu VM under TCG until the guest powers off (or the timeout hits).
# Env:
#   SERIAL=LOG            (required) the guest's serial console goes to this file
#   TIMEOUT=SECONDS       hard wall-clock limit (default 600); qemu is killed after it
#   NOREBOOT=1            turn a guest reboot into a qemu exit (default 0: the guest's own
#                         reboots happen inside this one run, the firmware's NVRAM kept)
#   Direct kernel boot:   KERNEL=vmlinuz INITRD=img APPEND="console=ttyS0 ..." [DISK=img]
#   UEFI boot (OVMF):     DISK=disk.img VARS=vars.fd (a writable copy of OVMF_VARS_4M.fd)
#   MEM=MiB (default 512)
#   TIMELINE=FILE         also write the lines that mark progress (VMTEST-*, update-init:,
#                         the firmware starting the boot loader, kernel panics) to FILE, each
#                         prefixed with the seconds since qemu started
# KVM is not used: on the project's machines /dev/kvm is a software nested KVM (kvm_pvm) that
# cannot run a stock kernel or OVMF (tests/vm/README.md). Prints "qemu_rc=N wall=S" on stdout;
# rc 124 means the timeout killed it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
: "${SERIAL:?SERIAL=path required}"
TIMEOUT=${TIMEOUT:-600}
command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 not found: run scripts/install-deps.sh"
args=(-machine q35,accel=tcg -cpu max -nodefaults -smp 1 -m "${MEM:-512}" -display none -vga none
      -nic none -monitor none -parallel none)
if [ -n "${KERNEL:-}" ]; then
  args+=(-kernel "$KERNEL" -append "${APPEND:-console=ttyS0}")
  [ -n "${INITRD:-}" ] && args+=(-initrd "$INITRD")
else
  : "${VARS:?VARS=writable OVMF vars copy required for a UEFI boot}"
  [ -r "$OVMF_CODE" ] || vm_die "no $OVMF_CODE: run scripts/install-deps.sh (package ovmf)"
  args+=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
         -drive "if=pflash,format=raw,unit=1,file=$VARS")
fi
[ "${NOREBOOT:-0}" = 1 ] && args+=(-no-reboot)
[ -n "${DISK:-}" ] && args+=(-drive "if=virtio,format=raw,file=$DISK")
: > "$SERIAL"
s=$(date +%s.%N)
set +e
if [ -z "${TIMELINE:-}" ]; then
  timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" -serial "file:$SERIAL" </dev/null
  rc=$?
else
  start=${EPOCHREALTIME/./}
  timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" -serial stdio </dev/null |
    while IFS= read -r line || [ -n "$line" ]; do
      printf '%s\n' "$line" >&3
      case $line in
        *VMTEST-* | *update-init:* | *"Kernel panic"* | *"BdsDxe: starting"*)
          d=$(( (${EPOCHREALTIME/./} - start) / 100000 ))
          printf '%4d.%d %s\n' $((d / 10)) $((d % 10)) "${line%$'\r'}" >&4 ;;
      esac
    done 3>"$SERIAL" 4>"$TIMELINE"
  rc=${PIPESTATUS[0]}
fi
set -e
e=$(date +%s.%N)
awk -v rc="$rc" -v s="$s" -v e="$e" 'BEGIN{printf "qemu_rc=%s wall=%.1f\n", rc, e-s}'
