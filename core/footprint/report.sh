#!/usr/bin/env bash
# Prints the flash/RAM the accessgate core costs on thumbv6m-none-eabi (Cortex-M0+), release,
# opt-level "s", fat LTO: .text/.rodata of an image driving a default Session minus a baseline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# Its own target/ always (the size lookups below read it), whatever the caller exported.
unset CARGO_TARGET_DIR
rustup target list --installed | grep -qx thumbv6m-none-eabi || rustup target add thumbv6m-none-eabi
cargo build --release --locked -q
SIZE=$(command -v llvm-size || ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-size 2>/dev/null | head -1)
sec() { "$SIZE" -A "target/thumbv6m-none-eabi/release/$1" | awk -v s="$2" '$1==s {print $2}'; }
for s in .text .rodata .data .bss; do
  b=$(sec baseline $s); c=$(sec with_core $s)
  printf '%-8s baseline %6s  with core %6s  core %6s bytes\n' "$s" "${b:-0}" "${c:-0}" $(( ${c:-0} - ${b:-0} ))
done
