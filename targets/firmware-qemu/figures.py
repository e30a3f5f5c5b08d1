#!/usr/bin/env python3
"""Flash and RAM of firmware ELFs, split into the gate and what it runs on.

Usage: figures.py ELF [ELF...]   (prints Markdown tables; see FIGURES.md)

Every symbol `llvm-nm -S` lists is put in a group by the crate its (demangled) name starts
with; `<A as B>::f` counts for A's crate, `core::ptr::drop_in_place<X>` for X's, and so on.
`embassy_executor::raw::TaskStorage<F>::poll` is the inlined body of one task: DWARF names its
`F`, and it counts for that task (the driver task's is the gate's session loop and lanes).
Static task storage (`<task>::POOL`) and the firmware's statics are named one by one.

LTO inlines across crates, so this is by symbol, not by source line: a function of one
crate inlined into another's counts for the caller (much of reqwless sits inside
`accessgate_embassy::http::Http::exchange`). Bytes no symbol covers (literal pools, padding,
anonymous constants without a size) are shown as "unattributed".
"""

import collections
import glob
import os
import re
import shutil
import subprocess
import sys


def tool(name):
    """The rustup llvm-tools binary (it demangles Rust names), else the system's."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    for candidate in glob.glob(os.path.join(sysroot, "lib/rustlib/*/bin", name)):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name) or shutil.which(name + "-14")
    if not found:
        sys.exit(f"figures.py: {name} not found (rustup component add llvm-tools)")
    return found


NM = tool("llvm-nm")
SIZE = tool("llvm-size")
DWARFDUMP = shutil.which("llvm-dwarfdump") or shutil.which("llvm-dwarfdump-14")

# Legacy Rust mangling that llvm-nm leaves inside demangled names.
ESCAPES = [
    ("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$BP$", "*"), ("$C$", ","),
    ("$u7b$", "{"), ("$u7d$", "}"), ("$u5b$", "["), ("$u5d$", "]"), ("$u27$", "'"),
    ("$u3b$", ";"), ("$u2b$", "+"), ("$u22$", '"'), ("$u7e$", "~"), ("$SP$", "@"), ("..", "::"),
]


def clean(name):
    for a, b in ESCAPES:
        name = name.replace(a, b)
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    if name.startswith("_<"):
        name = name[1:]
    return name


HEAD = re.compile(r"(?:^|[<\s,&*(\[])([A-Za-z_][A-Za-z0-9_]*)::")
CORE = {"core", "alloc", "std", "compiler_builtins"}


def crate_of(name):
    heads = HEAD.findall(name)
    for h in heads:
        if h not in CORE:
            return h
    return heads[0] if heads else name


# Crate -> group. Order of GROUPS is the order of the table.
GROUPS = [
    ("gate: accessgate core (+ serde-json-core, fastrand)", {"accessgate", "serde_json_core", "serde", "fastrand"}),
    ("gate: accessgate-embassy adapter (incl. driver task body)", {"accessgate_embassy"}),
    ("HTTP: httparse, nourl, embedded-io (+ reqwless, base64 in builds before issue 9)", {"reqwless", "httparse", "nourl", "base64", "embedded_io", "embedded_io_async", "buffered_io"}),
    ("TLS: embedded-tls", {"embedded_tls"}),
    ("TLS crypto + X.509: p256/p384/ecdsa, sha2, aes-gcm, rustls-webpki (ed25519, der before issue 9)", {
        "p256", "p384", "primeorder", "elliptic_curve", "ecdsa", "sha2", "hmac", "hkdf", "aes", "aes_gcm",
        "ghash", "polyval", "ctr", "cipher", "aead", "digest", "crypto_bigint", "crypto_common", "der",
        "const_oid", "pkcs8", "sec1", "spki", "x509", "curve25519_dalek", "ed25519_dalek", "ed25519",
        "signature", "rand_chacha", "rand_core", "subtle", "generic_array", "typenum", "zeroize", "ff",
        "group", "base16ct", "hybrid_array", "ppv_lite86", "rfc6979", "block_buffer", "inout", "universal_hash",
        "decompress", "fiat_crypto", "x509_cert", "webpki", "heapless_bytes", "rustls_pki_types", "untrusted",
    }),
    ("network: embassy-net + smoltcp", {"embassy_net", "smoltcp", "embassy_net_driver", "managed", "embassy_net_driver_channel"}),
    # ESP32-C3: esp-radio, its scheduler glue and the closed Wi-Fi/PHY driver (C symbols, see RADIO_C).
    ("radio: esp-radio + Wi-Fi/PHY driver blobs (C)", {
        "esp_radio", "esp_radio_rtos_driver", "esp_phy", "esp_wifi_sys", "esp_wifi_sys_esp32c3", "xarxa_driver",
    }),
    ("HAL: embassy-stm32 / esp-hal (+ PAC, ROM glue)", {
        "embassy_stm32", "stm32_metapac", "embassy_hal_internal", "embassy_embedded_hal", "esp_hal", "esp32c3",
        "esp_rom_sys", "esp_sync", "esp_hal_procmacros", "esp_metadata_generated", "esp_bootloader_esp_idf",
        "esp_config", "esp_storage", "fugit", "embedded_hal", "embedded_hal_async",
    }),
    ("runtime: embassy executor/time/sync/futures, time driver", {
        "embassy_executor", "embassy_time", "embassy_time_driver", "embassy_time_queue_utils", "embassy_sync",
        "embassy_futures", "embassy_executor_timer_queue", "systick_timer", "critical_section", "heapless",
        "static_cell", "portable_atomic", "esp_rtos", "esp_alloc", "rlsf", "allocator_api2",
    }),
    ("firmware: app tasks, scenario, MemNet, scripted backend", {
        "accessgate_firmware_qemu", "accessgate_firmware_nucleo", "accessgate_firmware_qemu_riscv",
        "accessgate_firmware_scenario", "accessgate_firmware_esp32c3",
    }),
    ("logging/panic/startup: defmt, semihosting, cortex-m(-rt), riscv(-rt), esp-println", {
        "defmt", "defmt_rtt", "panic_probe", "panic_semihosting", "cortex_m", "cortex_m_rt", "cortex_m_semihosting",
        "__INTERRUPTS", "__EXCEPTIONS", "__RESET_VECTOR", "_defmt_write", "_defmt_acquire", "_defmt_release",
        "riscv", "riscv_rt", "esp_riscv_rt", "esp_println", "esp_backtrace", "log",
    }),
    ("Rust core + compiler builtins", {"core", "alloc", "compiler_builtins"}),
]
GROUP_OF = {c: g for g, crates in GROUPS for c in crates}
OTHER = "other"


def group(prefix):
    """The group whose title starts with `prefix`."""
    return next(g for g, _ in GROUPS if g.startswith(prefix))


# Sections holding code and read-only data (flash; on the ESP32-C3 `.trap` and `.rwtext*` are
# copied from flash to internal RAM at boot) and statics (RAM; `.data*` initialisers also take
# flash). Symbols count where their address lies.
FLASH_SECTIONS = (".text", ".rodata", ".rodata.wifi", ".rwtext", ".rwtext.wifi", ".trap", ".init.rust", ".flash.appdesc")
RAM_SECTIONS = (".data", ".data.wifi", ".bss", ".uninit", ".noinit")
IRAM_CODE_SECTIONS = (".rwtext", ".rwtext.wifi", ".trap")
# riscv-rt's trap entry and default handlers.
RISCV_RT = {"_start", "_abs_start", "_start_trap", "_start_trap_rust", "_default_abort", "_pre_init_trap", "abort",
            "hal_main", "_dispatch_core_interrupt", "_dispatch_exception", "_setup_interrupts", "_mp_hook",
            "_continue_interrupt_trap", "_start_DefaultHandler_trap", "DefaultHandler", "ExceptionHandler",
            "MachineEnvCall", "SupervisorEnvCall", "UserEnvCall", "Breakpoint", "IllegalInstruction",
            "InstructionFault", "InstructionMisaligned", "LoadFault", "LoadMisaligned", "StoreFault",
            "StoreMisaligned", "InstructionPageFault", "LoadPageFault", "StorePageFault", "machine_timer",
            "MachineTimer", "_start_MachineTimer_trap"}


ANON = "anonymous constants (`.Lanon.*`: strings, tables; owner not recorded)"
# Symbols without a crate path: exception/interrupt handlers and runtime hooks.
BARE = {
    "SysTick": "runtime", "_embassy_time_now": "runtime", "_embassy_time_schedule_wake": "runtime",
    "__pender": "runtime", "Reset": "logging", "HardFault": "logging", "DefaultHandler": "logging",
    "HardFaultTrampoline": "logging", "main": "logging", "ETH": "network", "RNG": "HAL",
}


def group_of_crate(crate, radio_c=False):
    """Group of a crate name. `radio_c`: the ESP32-C3 image, whose symbols without a Rust path
    are, but for compiler builtins and runtime hooks, the closed Wi-Fi/PHY driver's (C)."""
    if crate.startswith(".Lanon."):
        return ANON
    if crate in RISCV_RT:
        return group("logging")
    m = re.match(r"\.Lswitch\.table\._ZN\d+(\w+)", crate)
    if m:
        crate = re.sub(r"\d+.*$", "", m.group(1)) or crate
    if crate in BARE or re.match(r"(TIM\d|EXTI)", crate):
        key = BARE.get(crate, "runtime" if crate.startswith("TIM") else "HAL")
        return next(g for g, _ in GROUPS if g.startswith(key))
    if crate in GROUP_OF:
        return GROUP_OF[crate]
    if crate.startswith(("__aeabi", "mem", "__")) or crate in ("memcpy", "memset", "memmove", "memcmp"):
        return "Rust core + compiler builtins"
    if crate.startswith("_defmt") or crate.startswith("__DEFMT"):
        return GROUP_OF["defmt"]
    if radio_c and re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", crate):
        return group("radio")
    return OTHER


def task_of_poll(elf, mangled):
    """The task whose body a `TaskStorage<F>::poll` instance is, from DWARF (or None)."""
    if not DWARFDUMP:
        return None
    out = subprocess.run([DWARFDUMP, f"--name={mangled}", elf], capture_output=True, text=True).stdout
    m = re.search(r"DW_AT_name\s+\(\"poll<([^\"]*)>\"\)", out)
    if not m:
        return None
    m2 = re.search(r"__(\w+?)_task::", m.group(1)) or re.search(r"(\w+)::\{", m.group(1))
    task = m2.group(1) if m2 else m.group(1)
    return task[: -len("_task")] if task.endswith("_task") else task


def ram_group(name, radio_c=False):
    """Group of a RAM symbol, by name first (statics of the firmware), then by crate."""
    short = name.split("::")[-1]
    task = re.search(r"::(?:__)?(\w+?)(?:_task)?::POOL$", name)
    if short == "POOL" and task:
        t = task.group(1)
        if t == "driver":
            return "gate: driver task future (session + lanes + HTTP/TLS connection state)"
        return f"firmware: {t} task future"
    if short == "LINK":
        return "gate: Link (commands, status watch, events)"
    if short in ("CHECK_BUFFERS", "REFRESH_BUFFERS"):
        return "gate: lane buffers (head, token, body, TLS records)"
    if short == "HEAP" and "firmware_esp32c3" in name:
        return "radio: Wi-Fi heap (esp-alloc; the gate does not allocate)"
    if short in ("NET", "DNS"):
        if "firmware_qemu" in name or "firmware_scenario" in name:
            return "network: MemNet (in-memory TCP)"
        return "network: embassy-net sockets, TCP buffers, packets"
    if short in ("TCP_STATE", "TCP", "PACKETS", "RESOURCES"):
        return "network: embassy-net sockets, TCP buffers, packets"
    return group_of_crate(crate_of(name), radio_c)


def nm(elf):
    raw = subprocess.run([NM, "-S", "--size-sort", elf], capture_output=True, text=True, check=True).stdout
    dem = subprocess.run([NM, "-S", "-C", "--size-sort", elf], capture_output=True, text=True, check=True).stdout
    rows = []
    for r, d in zip(raw.splitlines(), dem.splitlines()):
        rp, dp = r.split(" ", 3), d.split(" ", 3)
        if len(rp) < 4 or len(dp) < 4:
            continue
        rows.append((int(dp[0], 16), int(dp[1], 16), dp[2], rp[3], clean(dp[3])))
    return rows


def sections(elf):
    """Section sizes, and the address ranges of the flash and RAM sections."""
    out = subprocess.run([SIZE, "-A", elf], capture_output=True, text=True, check=True).stdout
    s, ranges = {}, []
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 3 and p[0].startswith(".") and p[1].isdigit() and p[2].isdigit():
            s[p[0]] = int(p[1])
            if p[0] in FLASH_SECTIONS or p[0] in RAM_SECTIONS:
                ranges.append((int(p[2]), int(p[2]) + int(p[1]), p[0]))
    return s, ranges


def section_at(ranges, addr):
    for lo, hi, name in ranges:
        if lo <= addr < hi:
            return name
    return None


def kib(n):
    return f"{n / 1024:.1f}"


def report(elf):
    name = os.path.basename(elf)
    sec, ranges = sections(elf)
    radio_c = ".rwtext.wifi" in sec
    flash_names = [n for n in FLASH_SECTIONS if sec.get(n)]
    ram_names = [n for n in RAM_SECTIONS if sec.get(n)]
    flash_code = sum(sec[n] for n in flash_names)
    ram_static = sum(sec[n] for n in ram_names)
    initialisers = sec.get(".data", 0) + sec.get(".data.wifi", 0)
    iram_code = sum(sec.get(n, 0) for n in IRAM_CODE_SECTIONS)
    flash = collections.Counter()
    ram = collections.Counter()
    polls = []
    statics = []
    for addr, size, kind, mangled, dem in nm(elf):
        where = section_at(ranges, addr)
        if where in FLASH_SECTIONS:
            if "TaskStorage<F>::poll" in dem:
                task = task_of_poll(elf, mangled) or "?"
                polls.append((task, size))
                g = {"driver": group("gate: accessgate-embassy"), "net": group("network")}.get(task, group("firmware"))
            else:
                g = group_of_crate(crate_of(dem), radio_c)
            flash[g] += size
        elif where in RAM_SECTIONS:
            if dem.startswith(".L_MergedGlobals"):
                continue  # LLVM's merge of small statics that are also listed one by one
            ram[ram_group(dem, radio_c)] += size
            statics.append((size, dem))
    flash_label = " + ".join(flash_names)
    ram_label = " + ".join(ram_names)
    print(f"### {name}\n")
    print("Sections: " + ", ".join(f"{n} {sec[n]} B" for n in flash_names + ram_names + [".vector_table"] if sec.get(n)) + "\n")
    print(f"**Flash ({flash_label}): {flash_code} B ({kib(flash_code)} KiB)**; "
          f"programmed image (+ vector table + .data initialisers): "
          f"{flash_code + sec.get('.vector_table', 0) + initialisers} B. "
          f"**RAM ({ram_label}): {ram_static} B ({kib(ram_static)} KiB)** plus the stack"
          + (f", plus {iram_code} B of code run from internal RAM (.trap + .rwtext*)" if iram_code else "") + ".\n")
    print(f"| flash ({flash_label}) by group | bytes | KiB | share |")
    print("|---|---:|---:|---:|")
    attributed = 0
    for g, _ in GROUPS + [(ANON, None), (OTHER, None)]:
        if flash[g]:
            attributed += flash[g]
            print(f"| {g} | {flash[g]} | {kib(flash[g])} | {100 * flash[g] / flash_code:.1f} % |")
    rest = flash_code - attributed
    print(f"| unattributed (no symbol size: literal pools, padding, anonymous data) | {rest} | {kib(rest)} | {100 * rest / flash_code:.1f} % |")
    print(f"| **total** | **{flash_code}** | **{kib(flash_code)}** | |\n")
    if polls:
        print("Task bodies (`TaskStorage<F>::poll`, counted above under their task; the driver's is the adapter's, net_task's is embassy-net's runner): "
              + ", ".join(f"{t} {s} B" for t, s in sorted(polls, key=lambda x: -x[1])) + "\n")
    print(f"| RAM ({ram_label}) by owner | bytes | KiB | share |")
    print("|---|---:|---:|---:|")
    attributed = 0
    for g, v in sorted(ram.items(), key=lambda kv: -kv[1]):
        if not v:
            continue
        attributed += v
        print(f"| {g} | {v} | {kib(v)} | {100 * v / ram_static:.1f} % |")
    rest = ram_static - attributed
    print(f"| unattributed (alignment padding) | {rest} | {kib(rest)} | {100 * rest / ram_static:.1f} % |")
    print(f"| **total** | **{ram_static}** | **{kib(ram_static)}** | |\n")
    print("Largest RAM symbols:\n")
    print("| symbol | bytes |")
    print("|---|---:|")
    for s, d in sorted(statics, reverse=True)[:8]:
        print(f"| `{re.sub(r'::h[0-9a-f]{16}', '', d)}` | {s} |")
    print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for elf in sys.argv[1:]:
        report(elf)
