# Settings shared by the VM test scripts (source this file).
# Big artefacts live under $VM_WORK, never in the repository; only the kernel cache is kept
# between runs.
VM_WORK=${VM_WORK:-/var/tmp/update-vm}
VM_KCACHE=$VM_WORK/kernel              # one directory per kernel version, see fetch-kernel.sh
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS_TEMPLATE=${OVMF_VARS_TEMPLATE:-/usr/share/OVMF/OVMF_VARS_4M.fd}
SDBOOT_EFI=${SDBOOT_EFI:-/usr/lib/systemd/boot/efi/systemd-bootx64.efi}
# The modules the stock Debian kernel has as =m and the initramfs needs (virtio disk, ext4
# root, vfat ESP, EFI variables); their dependencies and softdeps (crc32c) come along.
VM_MODULES=${VM_MODULES:-"virtio_pci virtio_blk ext4 vfat nls_cp437 nls_ascii nls_utf8 efivarfs"}
export MTOOLS_SKIP_CHECK=1

vm_die() { echo "vm: error: $*" >&2; exit 1; }
