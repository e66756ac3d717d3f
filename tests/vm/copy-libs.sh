#!/bin/bash
# copy-libs.sh BINARY ROOT [usr]: copy the shared libraries BINARY needs (ldd) and its loader
# into the tree ROOT. Without the third argument each goes to the path ldd names
# (/lib/x86_64-linux-gnu/..., /lib64/ld-linux-x86-64.so.2); with "usr" (a merged-/usr tree)
# below /usr instead (/usr/lib/x86_64-linux-gnu/..., /usr/lib64/ld-linux-x86-64.so.2).
set -euo pipefail
BIN=${1:?usage: copy-libs.sh BINARY ROOT [usr]}
ROOT=${2:?usage: copy-libs.sh BINARY ROOT [usr]}
PREFIX=${3:+/$3}
out=$(ldd "$BIN") || { echo "copy-libs: ldd $BIN failed (a static binary needs nothing)" >&2; exit 0; }
echo "$out" | awk '$2=="=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  case $lib in
    /usr/*) dest=$lib ;;
    *) dest=$PREFIX$lib ;;
  esac
  mkdir -p "$ROOT$(dirname "$dest")"
  cp -L "$lib" "$ROOT$dest"
done
