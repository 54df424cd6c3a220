"""The assembler: encodings against known bytes, text round trips, labels, maps, errors."""

from __future__ import annotations

import dataclasses

import pytest
from ebpf.core.asm import (
    ADD,
    DW,
    FETCH,
    JEQ,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    AsmError,
    Assembler,
    B,
    H,
    Instruction,
    Reg,
    W,
    add32,
    add64,
    addr_space_cast,
    alu64_imm,
    alu64_reg,
    assemble,
    atomic_add,
    atomic_and,
    atomic_cmpxchg,
    atomic_op,
    atomic_or,
    atomic_xchg,
    atomic_xor,
    be16,
    bswap16,
    bswap64,
    call,
    call_rel,
    callx,
    decode,
    disassemble,
    emit_call,
    exit_,
    exit_insn,
    gotol,
    ja,
    jeq,
    jmp32_reg,
    jmp_imm,
    jne,
    jsgt,
    jslt,
    kfunc_call,
    label,
    ld_abs,
    ld_func,
    ld_imm64,
    ld_ind,
    ld_map_fd,
    ld_map_value,
    ldx_mem,
    ldx_memsx,
    le64,
    load_acquire,
    may_goto,
    mov32,
    mov64,
    mov64_imm,
    mov64_reg,
    movsx32_reg,
    movsx64_reg,
    neg64,
    parse,
    references,
    sdiv32,
    sdiv64,
    smod64,
    st_mem,
    store_release,
    stx_mem,
    sub64,
)
from ebpf.core.errors import EBPFError
from ebpf.core.types import Helper


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# (instruction, bytes as llvm-objdump shows them, llvm-objdump text).  The bytes come from
# the kernel's selftests (BPF_* macros) and from clang/llvm-mc output for BPF.
KNOWN = [
    (mov64_imm(R0, 0), "b7 00 00 00 00 00 00 00", "r0 = 0"),
    (mov64_reg(R2, R10), "bf a2 00 00 00 00 00 00", "r2 = r10"),
    (alu64_imm(ADD, R2, -4), "07 02 00 00 fc ff ff ff", "r2 += -4"),
    (add32(R0, R2), "0c 20 00 00 00 00 00 00", "w0 += w2"),
    (mov32(R0, R2), "bc 20 00 00 00 00 00 00", "w0 = w2"),
    (sub64(R1, 1), "17 01 00 00 01 00 00 00", "r1 -= 1"),
    (neg64(R1), "87 01 00 00 00 00 00 00", "r1 = -r1"),
    (stx_mem(DW, R10, R1, -8), "7b 1a f8 ff 00 00 00 00", "*(u64 *)(r10 - 8) = r1"),
    (stx_mem(W, R10, R0, -4), "63 0a fc ff 00 00 00 00", "*(u32 *)(r10 - 4) = r0"),
    (st_mem(W, R10, -8, 5), "62 0a f8 ff 05 00 00 00", "*(u32 *)(r10 - 8) = 5"),
    (ldx_mem(W, R0, R1, 4), "61 10 04 00 00 00 00 00", "r0 = *(u32 *)(r1 + 4)"),
    (ldx_mem(B, R2, R1, 0), "71 12 00 00 00 00 00 00", "r2 = *(u8 *)(r1 + 0)"),
    (ld_map_fd(R1, 3), "18 11 00 00 03 00 00 00 00 00 00 00 00 00 00 00", "r1 = map[fd:3] ll"),
    (ld_map_value(R1, 3, 16), "18 21 00 00 03 00 00 00 00 00 00 00 10 00 00 00", "r1 = map[fd:3][0]+16 ll"),
    (ld_imm64(R1, 0x1234), "18 01 00 00 34 12 00 00 00 00 00 00 00 00 00 00", "r1 = 4660 ll"),
    (ld_imm64(R1, -1), "18 01 00 00 ff ff ff ff 00 00 00 00 ff ff ff ff", "r1 = -1 ll"),
    (emit_call(Helper.MAP_LOOKUP_ELEM), "85 00 00 00 01 00 00 00", "call 1"),
    (call("ktime_get_ns"), "85 00 00 00 05 00 00 00", "call 5"),
    (exit_insn(), "95 00 00 00 00 00 00 00", "exit"),
    (jmp_imm(JEQ, R0, 0, 2), "15 00 02 00 00 00 00 00", "if r0 == 0 goto +2"),
    (jslt(R2, 6, 3), "c5 02 03 00 06 00 00 00", "if r2 s< 6 goto +3"),
    (jsgt(R1, R2, -2), "6d 21 fe ff 00 00 00 00", "if r1 s> r2 goto -2"),
    (jmp32_reg("jsgt", R1, R2, 0), "6e 21 00 00 00 00 00 00", "if w1 s> w2 goto +0"),
    (ja(2), "05 00 02 00 00 00 00 00", "goto +2"),
    (atomic_add(DW, R1, R2), "db 21 00 00 00 00 00 00", "lock *(u64 *)(r1 + 0) += r2"),
    (atomic_add(W, R1, R2), "c3 21 00 00 00 00 00 00", "lock *(u32 *)(r1 + 0) += r2"),
    (atomic_or(DW, R1, R2), "db 21 00 00 40 00 00 00", "lock *(u64 *)(r1 + 0) |= r2"),
    (atomic_or(W, R1, R2), "c3 21 00 00 40 00 00 00", "lock *(u32 *)(r1 + 0) |= w2"),
    (atomic_op(DW, ADD | FETCH, R1, R2, 0), "db 21 00 00 01 00 00 00", "r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)"),
    (atomic_xor(DW, R1, R2, -16, fetch=True), "db 21 f0 ff a1 00 00 00", "r2 = atomic_fetch_xor((u64 *)(r1 - 16), r2)"),
    (atomic_and(W, R1, R2, fetch=True), "c3 21 00 00 51 00 00 00", "w2 = atomic_fetch_and((u32 *)(r1 + 0), w2)"),
    (atomic_xchg(DW, R1, R2), "db 21 00 00 e1 00 00 00", "r2 = xchg_64(r1 + 0, r2)"),
    (atomic_cmpxchg(DW, R1, R2), "db 21 00 00 f1 00 00 00", "r0 = cmpxchg_64(r1 + 0, r0, r2)"),
    (atomic_cmpxchg(W, R1, R2), "c3 21 00 00 f1 00 00 00", "w0 = cmpxchg32_32(r1 + 0, w0, w2)"),
    (load_acquire(DW, R0, R1), "db 10 00 00 00 01 00 00", "r0 = load_acquire((u64 *)(r1 + 0))"),
    (load_acquire(B, R0, R1), "d3 10 00 00 00 01 00 00", "w0 = load_acquire((u8 *)(r1 + 0))"),
    (store_release(DW, R1, R2, 8), "db 21 08 00 10 01 00 00", "store_release((u64 *)(r1 + 8), r2)"),
    (be16(R1), "dc 01 00 00 10 00 00 00", "r1 = be16 r1"),
    (le64(R1), "d4 01 00 00 40 00 00 00", "r1 = le64 r1"),
    (bswap64(R1), "d7 01 00 00 40 00 00 00", "r1 = bswap64 r1"),
    (bswap16(R1), "d7 01 00 00 10 00 00 00", "r1 = bswap16 r1"),
    (sdiv64(R1, R2), "3f 21 01 00 00 00 00 00", "r1 s/= r2"),
    (sdiv32(R1, 7), "34 01 01 00 07 00 00 00", "w1 s/= 7"),
    (smod64(R1, R2), "9f 21 01 00 00 00 00 00", "r1 s%= r2"),
    (movsx64_reg(R1, R2, 8), "bf 21 08 00 00 00 00 00", "r1 = (s8)r2"),
    (movsx32_reg(R1, R2, 16), "bc 21 10 00 00 00 00 00", "w1 = (s16)w2"),
    (ldx_memsx(H, R1, R2, 0), "89 21 00 00 00 00 00 00", "r1 = *(s16 *)(r2 + 0)"),
    (ldx_memsx(W, R1, R2, -8), "81 21 f8 ff 00 00 00 00", "r1 = *(s32 *)(r2 - 8)"),
    (gotol(5), "06 00 00 00 05 00 00 00", "gotol +5"),
    (may_goto(3), "e5 00 03 00 00 00 00 00", "may_goto +3"),
    (callx(R1), "8d 01 00 00 00 00 00 00", "callx r1"),
    (addr_space_cast(R0, R1, 1, 2), "bf 10 01 00 02 00 01 00", "r0 = addr_space_cast(r1, 1, 2)"),
    (ld_abs(B, 1), "30 00 00 00 01 00 00 00", "r0 = *(u8 *)skb[1]"),
    (ld_ind(H, R1), "48 10 00 00 00 00 00 00", "r0 = *(u16 *)skb[r1]"),
    (call_rel(-1), "85 10 00 00 ff ff ff ff", "call pc-1"),
    (kfunc_call(1234), "85 20 00 00 d2 04 00 00", "call kfunc(1234)"),
]


@pytest.mark.parametrize(("insn", "raw", "text"), KNOWN, ids=[t for _, _, t in KNOWN])
def test_known_encodings(insn: Instruction, raw: str, text: str) -> None:
    data = h(raw)
    assert insn.encode() == data
    assert decode(data) == [insn]
    assert disassemble(data) == text + "\n"
    assert assemble(text) == data
    assert str(insn) == text


def test_hex_style_matches_llvm_15() -> None:
    prog = [mov64(R0, 0), stx_mem(DW, R10, R1, -8), jeq(R1, 5, 3), call(1), ld_imm64(R1, 0x1234), exit_()]
    assert disassemble(assemble(prog), hex=True).splitlines() == [
        "r0 = 0x0",
        "*(u64 *)(r10 - 0x8) = r1",
        "if r1 == 0x5 goto +0x3",
        "call 0x1",
        "r1 = 0x1234 ll",
        "exit",
    ]


def test_objdump_style_lines() -> None:
    text = disassemble(assemble([ld_imm64(R1, 0x1234), mov64(R0, 0), exit_()]), objdump=True)
    assert text.splitlines() == [
        "       0:\t18 01 00 00 34 12 00 00 00 00 00 00 00 00 00 00\tr1 = 4660 ll",
        "       2:\tb7 00 00 00 00 00 00 00\tr0 = 0",
        "       3:\t95 00 00 00 00 00 00 00\texit",
    ]


def test_selftest_style_program_with_labels() -> None:
    counters = 7  # a map fd
    prog = [
        mov64(R0, 0),
        stx_mem(W, R10, R0, -4),
        ld_map_fd(R1, counters),
        mov64(R2, R10),
        add64(R2, -4),
        call("map_lookup_elem"),
        jeq(R0, 0, "out"),
        mov64(R1, 1),
        atomic_add(DW, R0, R1),
        label("out"),
        mov64(R0, 0),
        exit_(),
    ]
    insns = assemble(prog)
    assert len(insns) == 12 * 8  # ld_imm64 takes two slots, the label none
    jump = decode(insns)[6]
    assert (jump.code, jump.off) == (0x15, 2)
    assert disassemble(prog).splitlines()[6:10] == ["if r0 == 0 goto out", "r1 = 1", "lock *(u64 *)(r0 + 0) += r1", "out:"]
    assert assemble(disassemble(prog)) == insns
    assert assemble(disassemble(insns)) == insns


def test_backward_jump_and_label_at_end() -> None:
    prog = [label("top"), add64(R1, 1), jne(R1, 10, "top"), ja("end"), exit_(), label("end")]
    ins = decode(assemble(prog))
    assert ins[1].off == -2
    assert ins[2].off == 1


def test_gotol_call_rel_and_ld_func_put_the_offset_in_imm() -> None:
    prog = [gotol("main"), label("sub"), mov64(R0, 1), exit_(), label("main"), call_rel("sub"), ld_func(R2, "sub"), exit_()]
    ins = decode(assemble(prog))
    assert ins[0].imm == 2 and ins[0].off == 0
    assert (ins[3].src, ins[3].imm) == (1, -3)
    assert (ins[4].src, ins[4].imm) == (4, -4)


def test_text_program_with_comments_labels_and_subprogram_calls() -> None:
    text = """
        ; count to ten
        r1 = 0
    loop:
        r1 += 1          # comment
        if r1 < 10 goto loop
        call double
        exit
    double:
        r0 = r1
        r0 <<= 1         // twice
        exit
    """
    ins = decode(assemble(text))
    assert ins[2].off == -2
    assert (ins[3].src, ins[3].imm) == (1, 1)
    assert ins[6].code == 0x67 and ins[6].imm == 1


def test_text_accepts_llvm_objdump_output() -> None:
    dump = """
x.o:\tfile format elf64-bpf

Disassembly of section .text:

0000000000000000 <f>:
       0:\tc5 02 03 00 06 00 00 00\tif r2 s< 6 goto +3 <f+0x20>
       1:\t61 10 04 00 00 00 00 00\tr0 = *(u32 *)(r1 + 4)
       2:\t0c 20 00 00 00 00 00 00\tw0 += w2
       3:\t05 00 02 00 00 00 00 00\tgoto +2 <LBB0_2>
       4:\tdb 21 00 00 01 00 00 00\tr2 = atomic_fetch_add((u64 *)(r1 + 0), r2)
       5:\t89 21 00 00 00 00 00 00\t<unknown>
       6:\t95 00 00 00 00 00 00 00\texit
"""
    expected = h("c502030006000000 6110040000000000 0c20000000000000 0500020000000000 db21000001000000 8921000000000000 9500000000000000")
    assert assemble(dump) == expected
    assert isinstance(parse(dump)[0], type(label("f")))


def test_text_hex_numbers_and_spacing() -> None:
    assert assemble("r1 = 0x10\n*(u64 *)(r10 - 0x8) = r1\nif r1 > 0x5 goto +0x3\nr1 = 0x1234 ll") == assemble(
        [mov64(R1, 16), stx_mem(DW, R10, R1, -8), jmp_imm("jgt", R1, 5, 3), ld_imm64(R1, 0x1234)]
    )
    assert assemble("r1=r2") == mov64(R1, R2).encode()
    assert assemble("call map_lookup_elem\ncall bpf_ktime_get_ns") == call(1).encode() + call(5).encode()


def test_raw_form_for_instructions_without_syntax() -> None:
    odd = Instruction(0x95, dst=1)  # exit with a reserved field set
    text = disassemble(odd.encode())
    assert text == ".insn code=0x95 dst=1 src=0 off=0 imm=0\n"
    assert assemble(text) == odd.encode()


def test_map_objects_stay_symbolic_until_assemble() -> None:
    @dataclasses.dataclass
    class FakeMap:  # anything with an int .fd is a map reference
        fd: int

    counters, values = FakeMap(5), FakeMap(9)
    prog = [ld_map_fd(R1, counters), mov64(R0, 0), ld_map_value(R2, values, 8), ld_map_fd(R3, "by_name"), exit_()]
    assert references(prog) == [(0, counters), (3, values), (5, "by_name")]
    counters.fd = 42  # e.g. the loader recreated the map
    ins = decode(assemble(prog, maps={"by_name": 11}))
    assert [(i.src, i.imm, i.imm2) for i in ins if i.is_wide] == [(1, 42, 0), (2, 9, 8), (1, 11, 0)]
    asm = Assembler(prog)
    assert asm.references() == references(prog)


def test_assembler_builder_chains_and_feeds_program_specs() -> None:
    a = Assembler()
    a.mov64(R0, 0).jeq(R1, 0, "out").mov64(R0, 1).label("out").exit_()
    assert len(a) == 4
    assert a.assemble() == assemble([mov64(R0, 0), jeq(R1, 0, 1), mov64(R0, 1), exit_()])
    assert str(a).splitlines()[1] == "if r1 == 0 goto out"
    assert assemble([a, "r0 = 2", exit_()]) == a.assemble() + assemble("r0 = 2\nexit")
    with pytest.raises(AttributeError):
        a.no_such_instruction  # noqa: B018


def test_registers_and_constants() -> None:
    assert int(R10) == 10 and repr(R6) == "R6" and Reg(3) is R3
    assert mov64(R1, 10).code == 0xB7  # a plain int is an immediate
    assert mov64(R1, R10).code == 0xBF  # a Reg is a register


# ---- errors ---------------------------------------------------------------------------------------


def test_unknown_and_duplicate_labels() -> None:
    with pytest.raises(AsmError, match=r"unknown label 'nowhere' \(labels: out\)"):
        assemble([jeq(R0, 0, "nowhere"), label("out"), exit_()])
    with pytest.raises(AsmError, match="duplicate label 'out'"):
        assemble([label("out"), exit_(), label("out"), exit_()])


def test_jump_out_of_range() -> None:
    prog = [ja("far"), *[mov64(R0, 0)] * 40000, label("far"), exit_()]
    with pytest.raises(AsmError, match="out of range"):
        assemble(prog)
    assert len(assemble([gotol("far"), *prog[1:]])) == 40002 * 8  # gotol reaches it


def test_bad_operands() -> None:
    with pytest.raises(AsmError, match="out of range"):
        mov64(11, 0)
    with pytest.raises(AsmError, match="does not fit in 32 bits"):
        mov64(R0, 1 << 32)
    with pytest.raises(AsmError, match="does not fit in 16 bits"):
        ldx_mem(W, R0, R1, 40000)
    with pytest.raises(AsmError, match="invalid size"):
        ldx_mem(3, R0, R1)
    with pytest.raises(AsmError, match="does not fit in 64 bits"):
        ld_imm64(R0, 1 << 64)
    with pytest.raises(AsmError, match="invalid opcode 0xff"):
        Instruction(0xFF)
    with pytest.raises(AsmError, match="atomic"):
        atomic_add(B, R1, R2)
    with pytest.raises(AsmError, match="jump target"):
        jeq(R0, 0, 1.5)  # type: ignore[arg-type]
    with pytest.raises(AsmError, match="register"):
        alu64_reg("add", R0, 12)


def test_unknown_helper_lists_close_matches() -> None:
    with pytest.raises(EBPFError, match=r"unknown helper 'map_lookup_elm'; did you mean: map_lookup_elem"):
        call("map_lookup_elm")
    with pytest.raises(AsmError, match="unknown helper"):
        assemble("call map_lookup_elm")


def test_bad_bytes_on_decode() -> None:
    with pytest.raises(AsmError, match="multiple of 8"):
        decode(b"\x95" * 9)
    with pytest.raises(AsmError, match="invalid opcode 0xff"):
        decode(h("ff00000000000000"))
    with pytest.raises(AsmError, match="second slot"):
        decode(h("1801000000000000"))
    with pytest.raises(AsmError, match="second slot"):
        decode(h("1801000000000000 9500000000000000"))
    with pytest.raises(AsmError, match="register"):
        decode(h("b70c000000000000"))
    with pytest.raises(AsmError, match="multiple of 8"):
        assemble(b"\x00" * 7)


def test_bad_text_names_the_line() -> None:
    with pytest.raises(AsmError, match=r"line 2: cannot parse instruction in 'r1 = = 2'"):
        assemble("r0 = 0\nr1 = = 2\nexit")
    with pytest.raises(AsmError, match="register r11 out of range"):
        assemble("r11 = 0")
    with pytest.raises(AsmError, match="mixed"):
        assemble("w1 += r2")
    with pytest.raises(AsmError, match="unknown map 'counters'"):
        assemble("r1 = map[counters] ll")


def test_closed_map_and_unresolved_symbols() -> None:
    class Closed:
        fd = -1

    with pytest.raises(AsmError, match="no open file descriptor"):
        assemble([ld_map_fd(R1, Closed()), exit_()])
    with pytest.raises(AsmError, match="unresolved label"):
        jeq(R0, 0, "out").encode()
    with pytest.raises(AsmError, match="not an instruction"):
        assemble([mov64(R0, 0), 3.5])


def test_exit_alias_and_misc_constructors() -> None:
    assert exit_() == exit_insn()
    assert ld_imm64(R6, 1 << 63).value == 1 << 63
    assert atomic_op(DW, ADD | FETCH, R1, R2).imm == 1
    assert jne(R1, R2, 0).code == 0x5D


def test_helper_names_and_symbolic_map_listing() -> None:
    @dataclasses.dataclass
    class FakeMap:
        fd: int

    prog = [ld_map_fd(R1, FakeMap(4)), call("map_lookup_elem"), call(Helper.TRACE_PRINTK), exit_()]
    text = disassemble(prog, helper_names=True)
    assert text.splitlines() == ["r1 = map[fd:4] ll", "call map_lookup_elem", "call trace_printk", "exit"]
    assert assemble(text) == assemble(prog)
    assert disassemble(assemble([add64(R1, -4)]), hex=True) == "r1 += -0x4\n"


def test_assembler_append_accepts_mixed_items() -> None:
    a = Assembler("r0 = 1")
    a.append([mov64(R1, 2), "r0 += r1"], label("end"), exit_())
    assert a.assemble() == assemble("r0 = 1\nr1 = 2\nr0 += r1\nend:\nexit")
    assert repr(a) == "<Assembler: 4 slots>"
    assert [type(i).__name__ for i in a].count("Label") == 1


def test_lenient_disassembly_marks_unknown_slots_like_llvm() -> None:
    nospec = h("c200000000000000")  # BPF_ST | BPF_NOSPEC: kernel-internal, not an instruction
    code = mov64(R0, 0).encode() + nospec + exit_().encode()
    with pytest.raises(AsmError, match="invalid opcode 0xc2"):
        disassemble(code)
    assert disassemble(code, strict=False).splitlines() == ["r0 = 0", "<unknown>", "exit"]
    assert disassemble(code, strict=False, objdump=True).splitlines()[1] == "       1:\tc2 00 00 00 00 00 00 00\t<unknown>"
    with pytest.raises(AsmError, match="multiple of 8"):
        disassemble(b"\0" * 12, strict=False)
