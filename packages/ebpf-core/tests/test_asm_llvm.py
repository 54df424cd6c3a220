"""The assembler against LLVM: zig's bundled LLVM assembles our text, llvm-objdump disassembles our bytes.

* Text -> bytes: our disassembly is fed to LLVM's BPF assembler (``python -m ziglang cc``,
  a recent LLVM that knows cpu v4, acquire/release and arena casts); the object's
  ``.text`` must be exactly our bytes.
* Bytes -> text: ``llvm-objdump -d`` (Debian's LLVM 14 here) must print exactly our
  ``disassemble(objdump=True)`` lines, in decimal and in ``--print-imm-hex`` style, for
  every instruction it knows.
* C compiled by clang (zig cc -O2) disassembles and reassembles to the same bytes.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from ebpf.core import asm
from ebpf.core.asm import (
    ADD,
    AND,
    CMPXCHG,
    DW,
    FETCH,
    OR,
    XCHG,
    XOR,
    B,
    H,
    Instruction,
    Reg,
    W,
    assemble,
    decode,
    disassemble,
)
from ebpf.core.errors import UnsupportedFeatureError
from ebpf.core.testing import require
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# Forms only the kernel knows (LLVM has no syntax for them): maps, pseudo calls, kfuncs, ...
OURS = re.compile(r"map\[|call pc|kfunc\(|btf_id\(|func\(|skb\[r\d+ [+-]|\.insn")


def have_zig() -> None:
    """Probe: the ziglang package (clang + LLVM from PyPI)."""
    if importlib.util.find_spec("ziglang") is None:
        raise UnsupportedFeatureError("ziglang C compiler (pip install ziglang)")


def have_llvm_objdump() -> None:
    """Probe: an llvm-objdump binary on PATH."""
    if shutil.which("llvm-objdump") is None:
        raise UnsupportedFeatureError("llvm-objdump (apt install llvm)")


def zig_cc(source: Path, *flags: str) -> bytes:
    """Compile/assemble ``source`` for BPF with zig's clang; return the object file."""
    out = source.with_suffix(".o")
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "bpfel-freestanding", *flags, "-c", str(source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def text_section(obj: bytes) -> bytes:
    """The ``.text`` section of an ELF64 little-endian object."""
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = headers[shstrndx][4]
    for name, _type, _flags, _addr, offset, size in headers:
        end = obj.index(b"\0", strtab_off + name)
        if obj[strtab_off + name : end] == b".text":
            return obj[offset : offset + size]
    raise AssertionError("no .text section")


def llvm_assemble(text: str, tmp_path: Path) -> bytes:
    body = "\n".join("\t" + line for line in text.splitlines())
    source = tmp_path / "prog.s"
    source.write_text(f"\t.text\n\t.globl f\nf:\n{body}\n")
    return text_section(zig_cc(source, "-mcpu=v4"))


def llvm_objdump(obj_path: Path, *flags: str) -> list[str]:
    proc = subprocess.run(["llvm-objdump", "-d", *flags, str(obj_path)], capture_output=True, text=True, timeout=120, check=True)
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\s+\d+:\t", line)]
    return [re.sub(r" <[^<>]*>$", "", line) for line in lines]


def assert_matches_objdump(theirs: list[str], ours: list[str]) -> None:
    """Every line llvm-objdump decodes is our line; LLVM 14 leaves a few (e.g. ``r0 %= 5``) <unknown>."""
    assert len(theirs) == len(ours)
    known = [(t, o) for t, o in zip(theirs, ours) if not t.endswith("<unknown>")]
    assert [t for t, _ in known] == [o for _, o in known]
    assert len(known) > len(ours) // 2


regs = st.sampled_from(list(Reg))
imm32 = st.integers(-(1 << 31), (1 << 31) - 1)
off16 = st.integers(-(1 << 15), (1 << 15) - 1)
operand = st.one_of(regs, imm32)
ALU = ["mov", "add", "sub", "mul", "div", "mod", "or", "and", "xor", "lsh", "rsh", "arsh"]
JUMPS = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle"]


def _short(name: str, *args: object) -> Instruction:
    result = getattr(asm, name)(*args)
    assert isinstance(result, Instruction)
    return result


# Instructions LLVM 14's objdump decodes (cpu v1-v3 without alu32-only atomics).
v3_instructions = st.one_of(
    st.builds(_short, st.sampled_from([f"{n}{w}" for n in ALU for w in ("64", "32")]), regs, operand),
    st.builds(asm.neg64, regs),
    st.builds(asm.neg32, regs),
    st.builds(asm.endian, st.sampled_from([asm.TO_LE, asm.TO_BE]), regs, st.sampled_from([16, 32, 64])),
    st.builds(_short, st.sampled_from(JUMPS + [f"{j}32" for j in JUMPS]), regs, operand, off16),
    st.builds(asm.ja, off16),
    st.builds(asm.call, st.integers(0, 1 << 20)),
    st.builds(asm.exit_),
    st.builds(asm.ld_imm64, regs, st.integers(0, (1 << 64) - 1)),
    st.builds(asm.ld_abs, st.sampled_from([B, H, W]), imm32),
    st.builds(asm.ld_ind, st.sampled_from([B, H, W]), regs),
    st.builds(asm.ldx_mem, st.sampled_from([B, H, W, DW]), regs, regs, off16),
    st.builds(asm.stx_mem, st.sampled_from([B, H, W, DW]), regs, regs, off16),
    st.builds(asm.atomic_op, st.just(DW), st.sampled_from([ADD, AND, OR, XOR, ADD | FETCH, AND | FETCH, OR | FETCH, XOR | FETCH, XCHG, CMPXCHG]), regs, regs, off16),
    st.builds(asm.atomic_op, st.just(W), st.just(ADD), regs, regs, off16),
)
# Everything with an LLVM syntax, as a recent LLVM (zig's) knows it.
v4_instructions = st.one_of(
    v3_instructions,
    st.builds(asm.jset, regs, operand, off16),
    st.builds(asm.jset32, regs, operand, off16),
    st.builds(_short, st.sampled_from(["sdiv64", "sdiv32", "smod64", "smod32"]), regs, operand),
    st.builds(asm.movsx64_reg, regs, regs, st.sampled_from([8, 16, 32])),
    st.builds(asm.movsx32_reg, regs, regs, st.sampled_from([8, 16])),
    st.builds(asm.bswap, regs, st.sampled_from([16, 32, 64])),
    st.builds(asm.ldx_memsx, st.sampled_from([B, H, W]), regs, regs, off16),
    st.builds(asm.st_mem, st.sampled_from([B, H, W, DW]), regs, off16, imm32),
    st.builds(asm.gotol, off16),  # LLVM's parser takes only 16-bit literal gotol offsets
    st.builds(asm.may_goto, off16),
    st.builds(asm.callx, regs),
    st.builds(asm.atomic_op, st.just(W), st.sampled_from([AND, OR, XOR, ADD | FETCH, AND | FETCH, OR | FETCH, XOR | FETCH, XCHG, CMPXCHG]), regs, regs, off16),
    st.builds(asm.load_acquire, st.sampled_from([B, H, W, DW]), regs, regs, off16),
    st.builds(asm.store_release, st.sampled_from([B, H, W, DW]), regs, regs, off16),
    st.builds(asm.addr_space_cast, regs, regs, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
)

# Each example runs the compiler: few examples, no shrinking (it would take minutes).
LLVM_SETTINGS = settings(
    database=None,
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@LLVM_SETTINGS
@given(st.lists(v4_instructions, min_size=30, max_size=80), st.booleans())
def test_llvm_assembles_our_text_to_our_bytes(tmp_path: Path, prog: list[Instruction], hex_style: bool) -> None:
    require(have_zig)
    code = assemble(prog)
    text = disassemble(code, hex=hex_style)
    assert not OURS.search(text)
    got = llvm_assemble(text, tmp_path)
    assert disassemble(got, hex=hex_style) == text  # a readable diff first
    assert got == code


@LLVM_SETTINGS
@given(st.lists(v3_instructions, min_size=30, max_size=80))
def test_llvm_objdump_prints_what_we_print(tmp_path: Path, prog: list[Instruction]) -> None:
    require(have_zig)
    require(have_llvm_objdump)
    code = assemble(prog)
    assert llvm_assemble(disassemble(code), tmp_path) == code
    obj = tmp_path / "prog.o"
    for flags, hex_style in (((), False), (("--print-imm-hex",), True)):
        theirs = llvm_objdump(obj, *flags)
        ours = disassemble(code, objdump=True, hex=hex_style).splitlines()
        assert_matches_objdump(theirs, ours)


C_SOURCE = r"""
#if __BPF_CPU_VERSION__ >= 4
#define DIV(a, b) ((a) / (b))
#define MOD(a, b) ((a) % (b))
#else
#define DIV(a, b) ((unsigned long)(a) / (unsigned long)(b))
#define MOD(a, b) ((unsigned long)(a) % (unsigned long)(b))
#endif
struct pt { int x; short y; signed char z; long w; };
static __attribute__((noinline)) long sq(long v) { return v * v; }
long counter;
long work(struct pt *p, long n, unsigned long u) {
    long acc = 0;
    for (int i = 0; i < 16; i++) {
        if (i == n) break;
        acc += DIV(sq(p->x + i), (p->y | 1));
        acc ^= (long)p->z << 3;
        acc -= u >> (i & 7);
    }
    __sync_fetch_and_add(&counter, acc);
    __sync_fetch_and_or(&counter, 4);
    long old = __sync_val_compare_and_swap(&p->w, acc, 7);
    switch (n) {
    case 1: return acc + 1;
    case 2: return old - 9;
    case 3: return acc * 3;
    case 4: return -acc;
    case 5: return MOD(acc, 11);
    }
    return __builtin_bswap32((unsigned)acc) + (int)DIV(acc, -3) + (short)n + (signed char)u;
}
"""


@pytest.mark.parametrize("cpu", ["v1", "v2", "v3", "v4"])
def test_clang_output_round_trips(tmp_path: Path, cpu: str) -> None:
    require(have_zig)
    source = tmp_path / "work.c"
    source.write_text(C_SOURCE)
    code = text_section(zig_cc(source, "-O2", f"-mcpu={cpu}"))
    assert len(code) > 400
    decode(code)  # every instruction clang emits is one we know
    for hex_style in (False, True):
        text = disassemble(code, hex=hex_style)
        assert ".insn" not in text
        assert assemble(text) == code
    if cpu != "v4":  # LLVM 14's objdump predates cpu v4
        require(have_llvm_objdump)
        dump = llvm_objdump(source.with_suffix(".o"))
        ours = disassemble(code, objdump=True).splitlines()
        # llvm-objdump hides src_reg: our "call pc+N" (bpf-to-bpf) is its "call N".
        assert_matches_objdump(dump, [line.replace("call pc+", "call ") for line in ours])
        assert assemble("\n".join(dump)) == code  # objdump's own output reads back too
