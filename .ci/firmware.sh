#!/usr/bin/env bash
# Firmware check: builds the four firmware images in release, runs the two QEMU ones (the
# gate's scenario, shared by both: the exit code is the verdict), then the ARM QEMU image again
# with defmt logging (a second build, `--features defmt`) whose log is decoded and checked
# against R13 by targets/defmt-check, and prints the section sizes of every ELF.
#
# | image                 | target                     | run here                          |
# |-----------------------|----------------------------|-----------------------------------|
# | firmware-qemu         | thumbv7em-none-eabihf      | qemu-system-arm, mps2-an386       |
# | firmware-qemu-riscv   | riscv32imc-unknown-none-elf| qemu-system-riscv32, virt         |
# | firmware-nucleo       | thumbv7em-none-eabihf      | builds and links only (a board)   |
# | firmware-esp32c3      | riscv32imc-unknown-none-elf| builds and links only (a board)   |
# | firmware-qemu +defmt  | thumbv7em-none-eabihf      | qemu-system-arm; log decoded+checked |
#
# Installs what is missing: the rustup targets, qemu-system-arm and qemu-system-misc (apt),
# a size tool.
# Env: FIRMWARE_JOBS (cargo -j, default 2), QEMU_TIMEOUT (seconds, default 60),
#      FIRMWARE_FIGURES=1 also prints the flash/RAM split by crate group and the static stack
#      bound of the gate task (targets/firmware-qemu/figures.py, stack_bound.py; FIGURES.md).
#
# Each firmware is its own cargo project (excluded from the root workspace) with its own
# Cargo.lock, .cargo/config.toml and target dir; cargo reads .cargo/config.toml from the
# *current directory*, so every cargo call below runs inside the project directory. The two
# QEMU images share their scenario through targets/firmware-scenario (a path dependency).
set -euo pipefail
# Every image builds into its own project's target/ (its own lockfile and profile), where the
# QEMU runs, the size table and the stack figures read the ELFs: an inherited
# CARGO_TARGET_DIR would move all four builds elsewhere.
unset CARGO_TARGET_DIR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${FIRMWARE_JOBS:-2}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-60}"
ARM=thumbv7em-none-eabihf
RV=riscv32imc-unknown-none-elf
QEMU_DIR="$ROOT/targets/firmware-qemu"
QEMU_RV_DIR="$ROOT/targets/firmware-qemu-riscv"
NUCLEO_DIR="$ROOT/targets/firmware-nucleo"
ESP_DIR="$ROOT/targets/firmware-esp32c3"
QEMU_ELF="$QEMU_DIR/target/$ARM/release/accessgate-firmware-qemu"
QEMU_RV_ELF="$QEMU_RV_DIR/target/$RV/release/accessgate-firmware-qemu-riscv"
NUCLEO_ELF="$NUCLEO_DIR/target/$ARM/release/accessgate-firmware-nucleo"
ESP_ELF="$ESP_DIR/target/$RV/release/accessgate-firmware-esp32c3"
# The defmt image builds into its own target dir, so the default image's ELF (sizes, figures)
# stays the default one.
DEFMT_TARGET_DIR="$QEMU_DIR/target/defmt"
DEFMT_ELF="$DEFMT_TARGET_DIR/$ARM/release/accessgate-firmware-qemu"
DEFMT_FRAMES="$DEFMT_TARGET_DIR/frames.bin"
DEFMT_CHECK_DIR="$ROOT/targets/defmt-check"

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- tools -------------------------------------------------------------------------------
for target in "$ARM" "$RV"; do
    if ! rustup target list --installed | grep -qx "$target"; then
        log "rustup target add $target"
        rustup target add "$target"
    fi
done

# qemu-system-riscv32 comes in Debian's qemu-system-misc.
missing=()
command -v qemu-system-arm >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v qemu-system-riscv32 >/dev/null 2>&1 || missing+=(qemu-system-misc)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Prints the path of a tool that understands `-A` on an ELF, or nothing.
find_size_tool() {
    local sysroot candidate
    sysroot="$(rustc --print sysroot)"
    for candidate in "$sysroot"/lib/rustlib/*/bin/llvm-size; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    for candidate in llvm-size size; do
        command -v "$candidate" >/dev/null 2>&1 && { command -v "$candidate"; return; }
    done
}
SIZE_TOOL="$(find_size_tool)"
if [ -z "$SIZE_TOOL" ] || [ "${FIRMWARE_FIGURES:-0}" = 1 ]; then
    # figures.py and stack_bound.py need llvm-nm / llvm-objdump from the same component.
    log "rustup component add llvm-tools"
    rustup component add llvm-tools || true
    SIZE_TOOL="$(find_size_tool)"
fi

# --- build ---------------------------------------------------------------------------------
for dir in "$QEMU_DIR" "$QEMU_RV_DIR" "$NUCLEO_DIR" "$ESP_DIR"; do
    log "cargo build --release ($(basename "$dir"))"
    build_start=$(date +%s)
    (cd "$dir" && cargo build --release --locked -j "$JOBS")
    log "$(basename "$dir") built in $(( $(date +%s) - build_start )) s"
done

# --- run in QEMU ---------------------------------------------------------------------------
# Runs one QEMU image through its cargo runner; prints the verdict, returns QEMU's exit code.
run_qemu() {
    local dir="$1" name rc start_ns elapsed_ms
    name="$(basename "$dir")"
    log "running $name in QEMU (timeout ${QEMU_TIMEOUT}s)"
    start_ns=$(date +%s%N)
    set +e
    (cd "$dir" && timeout "$QEMU_TIMEOUT" cargo run --release --locked -j "$JOBS" </dev/null)
    rc=$?
    set -e
    elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    if [ "$rc" -eq 124 ]; then
        log "$name: TIMED OUT after ${QEMU_TIMEOUT}s"
    elif [ "$rc" -ne 0 ]; then
        log "$name: FAILED (exit $rc) after ${elapsed_ms} ms"
    else
        log "$name: passed in ${elapsed_ms} ms"
    fi
    return "$rc"
}

qemu_rc=0
run_qemu "$QEMU_DIR" || qemu_rc=$?
rv_rc=0
run_qemu "$QEMU_RV_DIR" || rv_rc=$?

# --- the defmt image: R13 in the device's log ------------------------------------------------
# The same scenario with the gate logging through defmt (DEFMT_LOG=info, .cargo/config.toml):
# the frames leave on semihosting's stdout into a file (cargo's own output is on stderr), and
# targets/defmt-check decodes them with the ELF's defmt table and checks that an operator reads
# every access change with its cause, transient failures with class and detail, and counters
# that agree with what the app read. It fails if a line is missing or the run did not pass.
defmt_rc=0
log "cargo build --release --features defmt (firmware-qemu, the defmt image)"
build_start=$(date +%s)
(cd "$QEMU_DIR" && cargo build --release --locked -j "$JOBS" --features defmt --target-dir "$DEFMT_TARGET_DIR")
log "firmware-qemu +defmt built in $(( $(date +%s) - build_start )) s"
log "running firmware-qemu +defmt in QEMU (timeout ${QEMU_TIMEOUT}s), frames to $DEFMT_FRAMES"
set +e
(cd "$QEMU_DIR" && timeout "$QEMU_TIMEOUT" cargo run --release --locked -j "$JOBS" --features defmt \
    --target-dir "$DEFMT_TARGET_DIR" </dev/null >"$DEFMT_FRAMES")
defmt_run_rc=$?
set -e
log "firmware-qemu +defmt: QEMU exit $defmt_run_rc, $(wc -c <"$DEFMT_FRAMES") bytes of frames"
log "decoding and checking the defmt log (targets/defmt-check)"
check_start=$(date +%s)
(cd "$DEFMT_CHECK_DIR" && cargo fmt --check && cargo test --locked -j "$JOBS" \
    && cargo run --locked -j "$JOBS" -- "$DEFMT_ELF" "$DEFMT_FRAMES") || defmt_rc=$?
log "defmt check: exit $defmt_rc in $(( $(date +%s) - check_start )) s"
# The checker fails a run that did not print PASS too; this keeps QEMU's own verdict.
if [ "$defmt_rc" -eq 0 ] && [ "$defmt_run_rc" -ne 0 ]; then defmt_rc=$defmt_run_rc; fi

# --- sizes ---------------------------------------------------------------------------------
# Flash: code and read-only data (.text, .rodata, the vector table; on the ESP32-C3 also the
# code and data it copies to internal RAM at boot: .trap, .rwtext*, .rodata.wifi, .data*).
# RAM: statics (.data*, .bss, .uninit, .noinit); the stack and the ESP32-C3's Wi-Fi heap
# (inside .bss) come on top / are included as FIGURES.md says.
if [ -n "$SIZE_TOOL" ]; then
    log "section sizes in bytes (tool: $SIZE_TOOL)"
    printf '%-32s %9s %9s %9s %9s %10s %9s\n' elf code rodata .data .bss flash ram
    for elf in "$QEMU_ELF" "$QEMU_RV_ELF" "$NUCLEO_ELF" "$ESP_ELF" "$DEFMT_ELF"; do
        [ -f "$elf" ] || continue
        name="$(basename "$elf")"
        [ "$elf" = "$DEFMT_ELF" ] && name="$name +defmt"
        "$SIZE_TOOL" -A "$elf" | awk -v name="$name" '
            { s[$1] = $2 }
            END {
                code = s[".vector_table"] + s[".text"] + s[".init.rust"] + s[".trap"] + s[".rwtext"] + s[".rwtext.wifi"]
                rodata = s[".rodata"] + s[".rodata.wifi"] + s[".flash.appdesc"]
                data = s[".data"] + s[".data.wifi"]
                flash = code + rodata + data
                ram = data + s[".bss"] + s[".uninit"] + s[".noinit"]
                printf "%-32s %9d %9d %9d %9d %10d %9d\n", name, code, rodata, data, s[".bss"], flash, ram
            }'
    done
else
    log "no size tool found (llvm-size, size): sizes skipped"
fi

if [ "${FIRMWARE_FIGURES:-0}" = 1 ]; then
    if command -v python3 >/dev/null 2>&1; then
        log "flash/RAM by crate group"
        python3 "$QEMU_DIR/figures.py" "$QEMU_ELF" "$QEMU_RV_ELF" "$NUCLEO_ELF" "$ESP_ELF" || log "figures.py failed"
        log "static stack bound of the driver task"
        for elf in "$QEMU_ELF" "$QEMU_RV_ELF" "$NUCLEO_ELF" "$ESP_ELF"; do
            (cd "$QEMU_DIR" && python3 stack_bound.py "$elf" driver | sed -n 1p) || log "stack_bound.py failed"
        done
    else
        log "python3 not found: figures skipped"
    fi
fi

if [ "$qemu_rc" -ne 0 ]; then exit "$qemu_rc"; fi
if [ "$rv_rc" -ne 0 ]; then exit "$rv_rc"; fi
exit "$defmt_rc"
