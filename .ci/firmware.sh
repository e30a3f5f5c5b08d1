#!/usr/bin/env bash
# Firmware check: builds both firmware images in release, runs the QEMU one (the gate's
# scenario: its semihosting exit code is the verdict) and prints the section sizes of both ELFs.
#
# Installs what is missing: the rustup target, qemu-system-arm (apt), a size tool.
# Env: FIRMWARE_JOBS (cargo -j, default 2), QEMU_TIMEOUT (seconds, default 60),
#      FIRMWARE_FIGURES=1 also prints the flash/RAM split by crate group and the static stack
#      bound of the gate task (targets/firmware-qemu/figures.py, stack_bound.py; FIGURES.md).
#
# Each firmware is its own cargo project (excluded from the root workspace) with its own
# Cargo.lock and .cargo/config.toml; cargo reads .cargo/config.toml from the *current
# directory*, so every cargo call below runs inside the project directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${FIRMWARE_JOBS:-2}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-60}"
TARGET=thumbv7em-none-eabihf
QEMU_DIR="$ROOT/targets/firmware-qemu"
NUCLEO_DIR="$ROOT/targets/firmware-nucleo"
QEMU_ELF="$QEMU_DIR/target/$TARGET/release/accessgate-firmware-qemu"
NUCLEO_ELF="$NUCLEO_DIR/target/$TARGET/release/accessgate-firmware-nucleo"

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- tools -------------------------------------------------------------------------------
if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET"
fi

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    log "installing qemu-system-arm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm
fi

# Prints the path of a tool that understands `-A` on an ARM ELF, or nothing.
find_size_tool() {
    local sysroot candidate
    sysroot="$(rustc --print sysroot)"
    for candidate in "$sysroot"/lib/rustlib/*/bin/llvm-size; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    for candidate in llvm-size arm-none-eabi-size size; do
        command -v "$candidate" >/dev/null 2>&1 && { command -v "$candidate"; return; }
    done
}
SIZE_TOOL="$(find_size_tool)"
if [ -z "$SIZE_TOOL" ]; then
    log "rustup component add llvm-tools"
    rustup component add llvm-tools || true
    SIZE_TOOL="$(find_size_tool)"
fi

# --- build ---------------------------------------------------------------------------------
for dir in "$QEMU_DIR" "$NUCLEO_DIR"; do
    log "cargo build --release ($(basename "$dir"))"
    (cd "$dir" && cargo build --release --locked -j "$JOBS")
done

# --- run in QEMU ---------------------------------------------------------------------------
log "running $(basename "$QEMU_ELF") in QEMU (timeout ${QEMU_TIMEOUT}s)"
start_ns=$(date +%s%N)
set +e
(cd "$QEMU_DIR" && timeout "$QEMU_TIMEOUT" cargo run --release --locked -j "$JOBS" </dev/null)
qemu_rc=$?
set -e
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
if [ "$qemu_rc" -eq 124 ]; then
    log "QEMU firmware: TIMED OUT after ${QEMU_TIMEOUT}s"
elif [ "$qemu_rc" -ne 0 ]; then
    log "QEMU firmware: FAILED (exit $qemu_rc) after ${elapsed_ms} ms"
else
    log "QEMU firmware: passed in ${elapsed_ms} ms"
fi

# --- sizes ---------------------------------------------------------------------------------
if [ -n "$SIZE_TOOL" ]; then
    log "section sizes in bytes (tool: $SIZE_TOOL)"
    printf '%-28s %9s %9s %9s %9s %10s %9s\n' elf .text .rodata .data .bss flash ram
    for elf in "$QEMU_ELF" "$NUCLEO_ELF"; do
        "$SIZE_TOOL" -A "$elf" | awk -v name="$(basename "$elf")" '
            { s[$1] = $2 }
            END {
                flash = s[".vector_table"] + s[".text"] + s[".rodata"] + s[".data"]
                ram = s[".data"] + s[".bss"] + s[".uninit"]
                printf "%-28s %9d %9d %9d %9d %10d %9d\n", name, s[".text"], s[".rodata"], s[".data"], s[".bss"], flash, ram
            }'
    done
else
    log "no size tool found (llvm-size, arm-none-eabi-size, size): sizes skipped"
fi

if [ "${FIRMWARE_FIGURES:-0}" = 1 ]; then
    if command -v python3 >/dev/null 2>&1; then
        log "flash/RAM by crate group"
        python3 "$QEMU_DIR/figures.py" "$QEMU_ELF" "$NUCLEO_ELF" || log "figures.py failed"
        log "static stack bound of the driver task"
        for elf in "$QEMU_ELF" "$NUCLEO_ELF"; do
            (cd "$QEMU_DIR" && python3 stack_bound.py "$elf" driver | sed -n 1p) || log "stack_bound.py failed"
        done
    else
        log "python3 not found: figures skipped"
    fi
fi

exit "$qemu_rc"
