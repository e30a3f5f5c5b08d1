#!/usr/bin/env python3
"""Static worst-case stack depth of one embassy task, from the disassembly of a Thumb or RISC-V ELF.

Usage: stack_bound.py ELF TASK [EXCLUDE]   (TASK: e.g. `driver`, as in `driver_task`;
EXCLUDE: a regex of functions not to enter, e.g. `embedded_tls` for the plain-HTTP paths)

Frame size of a function = every `push`/`push.w`/`stmdb sp!`/`vpush` and `sub sp, #N` in it;
calls = `bl`/`blx` to a known address and `b.w` to the start of another function (tail call,
counted as if nested). The depth of a function is its frame plus the deepest of its callees;
a call back into a function already on the path (recursion) is not followed. Indirect calls
(`blx rN`: trait objects, wakers, fmt) are not followed either and are reported: the result
is a bound over the direct-call graph, a reference point rather than a proof.

RISC-V (rv32): frame = every `addi sp, sp, -N`, and `sub sp, sp, rX` with rX built by
`lui`/`addi` just before (large frames); calls = `jal` and `auipc ra` + `jalr N(ra)` to a
known address, and `auipc t1` + `jr N(t1)` (tail call); `jalr rN` is an indirect call.

The task's entry is its `embassy_executor::raw::TaskStorage<F>::poll`, identified through
DWARF like figures.py does; the executor frames above it are not included.
"""

import re
import subprocess
import sys
from functools import lru_cache

sys.setrecursionlimit(100000)

from figures import DWARFDUMP, NM, clean, tool  # noqa: E402

OBJDUMP = tool("llvm-objdump")

FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
REGLIST = re.compile(r"\{([^}]*)\}")
SUB_SP = re.compile(r"^sub(?:\.w|w)?\s+sp,\s*(?:sp,\s*)?#(0x[0-9a-f]+|\d+)")
CALL = re.compile(r"^(bl|blx|b\.w|b)\s+0x([0-9a-f]+)")
# RISC-V
RV_ADDI_SP = re.compile(r"^addi\s+sp,\s*sp,\s*(-?0x[0-9a-f]+|-?\d+)$")
RV_SUB_SP = re.compile(r"^sub\s+sp,\s*sp,\s*(\w+)$")
RV_LUI = re.compile(r"^lui\s+(\w+),\s*(0x[0-9a-f]+|\d+)")
RV_ADDI = re.compile(r"^addi\s+(\w+),\s*(\w+),\s*(-?0x[0-9a-f]+|-?\d+)")
RV_AUIPC = re.compile(r"^auipc\s+(ra|t1),\s*(0x[0-9a-f]+|\d+)")
RV_JALR_OFF = re.compile(r"^(jalr|jr)\s+(-?0x[0-9a-f]+|-?\d+)\((ra|t1)\)")
RV_JAL = re.compile(r"^(jal|j)\s+(?:ra,\s*)?0x([0-9a-f]+)")
RV_JALR_REG = re.compile(r"^jalr\s+(\w+)$")
# Mnemonics whose first operand is not a register they write.
RV_NO_DEST = {"sw", "sh", "sb", "c.sw", "c.swsp", "beq", "bne", "blt", "bge", "bltu", "bgeu", "beqz", "bnez",
              "blez", "bgez", "bltz", "bgtz", "bgt", "ble", "bgtu", "bleu", "j", "jr", "ret", "fence", "ecall",
              "ebreak", "wfi", "mret", "csrw", "csrs", "csrc", "csrwi", "csrsi", "csrci", "nop", "unimp"}


def reg_count(regs):
    n = 0
    for part in regs.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
        elif part:
            n += 1
    return n


def parse(elf):
    out = subprocess.run([OBJDUMP, "-d", "-C", "--no-show-raw-insn", elf], capture_output=True, text=True, check=True).stdout
    if "littleriscv" in out[:2000]:
        return parse_riscv(out)
    funcs = {}  # start address -> dict
    cur = None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            cur = {"name": m.group(2), "frame": 0, "calls": set(), "indirect": 0}
            funcs[int(m.group(1), 16)] = cur
            continue
        if cur is None:
            continue
        m = INSN.match(line)
        if not m:
            continue
        op, args = m.group(2), m.group(3)
        text = f"{op} {args}"
        if op in ("push", "push.w") or (op.startswith("stmdb") and args.startswith("sp!")):
            r = REGLIST.search(args)
            if r:
                cur["frame"] += 4 * reg_count(r.group(1))
        elif op.startswith("vpush"):
            r = REGLIST.search(args)
            if r:
                size = 8 if r.group(1).strip().startswith("d") else 4
                cur["frame"] += size * reg_count(r.group(1))
        s = SUB_SP.match(text)
        if s:
            cur["frame"] += int(s.group(1), 0)
        c = CALL.match(text)
        if c:
            cur["calls"].add((c.group(1), int(c.group(2), 16)))
        elif op == "blx":
            cur["indirect"] += 1
    # Keep calls to function starts only (`b`/`b.w` inside a function are plain jumps).
    for f in funcs.values():
        f["calls"] = {t for kind, t in f["calls"] if t in funcs and (kind in ("bl", "blx") or True)}
    return funcs


def parse_riscv(out):
    funcs = {}
    cur = None
    consts = {}  # register -> value from the last lui/addi (for `sub sp, sp, rX`)
    addrs = {}  # register -> address from the last auipc (+ addi): a call or tail-call target
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            cur = {"name": m.group(2), "frame": 0, "calls": set(), "indirect": 0}
            funcs[int(m.group(1), 16)] = cur
            consts, addrs = {}, {}
            continue
        if cur is None:
            continue
        m = INSN.match(line)
        if not m:
            continue
        pc, op, args = int(m.group(1), 16), m.group(2), m.group(3)
        text = re.sub(r"\s*<.*>$", "", f"{op} {args}".strip())
        dest = args.split(",")[0].strip() if args and op not in RV_NO_DEST else None
        if (a := RV_ADDI_SP.match(text)) and int(a.group(1), 0) < 0:
            cur["frame"] += -int(a.group(1), 0)
        elif a := RV_SUB_SP.match(text):
            cur["frame"] += consts.get(a.group(1), 0)
        elif a := RV_LUI.match(text):
            consts[a.group(1)] = int(a.group(2), 0) << 12
            addrs.pop(a.group(1), None)
            continue
        elif a := RV_AUIPC.match(text):
            imm = int(a.group(2), 0)  # 20 bits, signed
            addrs[a.group(1)] = (pc + ((imm - (1 << 20) if imm >= 1 << 19 else imm) << 12)) & 0xFFFFFFFF
            consts.pop(a.group(1), None)
            continue
        elif (a := RV_ADDI.match(text)) and a.group(1) == a.group(2) and (a.group(1) in consts or a.group(1) in addrs):
            r, imm = a.group(1), int(a.group(3), 0)
            if r in consts:
                consts[r] += imm
            else:
                addrs[r] = (addrs[r] + imm) & 0xFFFFFFFF
            continue
        elif (a := RV_JALR_OFF.match(text)) and a.group(3) in addrs:
            cur["calls"].add((addrs[a.group(3)] + int(a.group(2), 0)) & 0xFFFFFFFF)
        elif a := RV_JAL.match(text):
            cur["calls"].add(int(a.group(2), 16))
        elif a := RV_JALR_REG.match(text):
            if a.group(1) in addrs:
                cur["calls"].add(addrs[a.group(1)])
            else:
                cur["indirect"] += 1
        # Any other write to a register forgets what it held.
        if dest:
            consts.pop(dest, None)
            addrs.pop(dest, None)
    # Keep calls to function starts only (`j` inside a function is a plain jump).
    for f in funcs.values():
        f["calls"] = {t for t in f["calls"] if t in funcs}
    return funcs


def task_entry(elf, task):
    raw = subprocess.run([NM, elf], capture_output=True, text=True, check=True).stdout
    for line in raw.splitlines():
        addr, _, name = line.split(" ", 2)
        if "TaskStorage$LT$F$GT$4poll" not in name:
            continue
        out = subprocess.run([DWARFDUMP, f"--name={name}", elf], capture_output=True, text=True).stdout
        if f"__{task}_task_task::" in out:
            return int(addr, 16) & ~1
    sys.exit(f"stack_bound.py: no TaskStorage::poll for task {task}")


def main():
    elf, task = sys.argv[1], sys.argv[2]
    exclude = re.compile(sys.argv[3]) if len(sys.argv) > 3 else None
    funcs = parse(elf)
    entry = task_entry(elf, task)
    on_path = set()
    indirect_seen = set()

    @lru_cache(maxsize=None)
    def depth(addr):
        f = funcs[addr]
        on_path.add(addr)
        if f["indirect"]:
            indirect_seen.add(addr)
        best, via = 0, None
        for callee in f["calls"]:
            if callee == addr or callee in on_path:
                continue
            if exclude and exclude.search(funcs[callee]["name"]):
                continue
            d = depth(callee)[0]
            if d > best:
                best, via = d, callee
        on_path.discard(addr)
        return f["frame"] + best, via

    total, _ = depth(entry)
    skipped = f", not entering /{sys.argv[3]}/" if exclude else ""
    print(f"{task} task: static bound {total} bytes below TaskStorage::poll's caller{skipped}; deepest path:")
    addr = entry
    while addr is not None:
        f = funcs[addr]
        d, nxt = depth(addr)
        name = clean(f["name"])
        print(f"  {f['frame']:6d} B  (path {d:6d})  {name[:150]}")
        addr = nxt
    print(f"functions reachable with indirect calls not followed: {len(indirect_seen)}")


if __name__ == "__main__":
    main()
