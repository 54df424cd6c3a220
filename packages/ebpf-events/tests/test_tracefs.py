"""Tracepoint formats parsed from tracefs, and bpf_printk lines read back through TracePipe."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest
from ebpf.core import asm
from ebpf.core.asm import R0, R1, R2, R3, R10
from ebpf.core.errors import AttachError, EBPFError
from ebpf.core.programs import load_program
from ebpf.events.printk import TracePipe, parse_trace_line, trace_print
from ebpf.events.tracing import parse_format, tracepoint_format

OPENAT = """name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: "dfd: 0x%08lx, filename: 0x%08lx", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename))
"""


def test_parse_format_fields() -> None:
    fmt = parse_format(OPENAT, "syscalls")
    assert (fmt.name, fmt.id) == ("sys_enter_openat", 782)
    assert [f.name for f in fmt.fields] == ["__syscall_nr", "dfd", "filename", "flags", "mode"]
    fn = fmt.field("filename")
    assert (fn.offset, fn.size, fn.signed, fn.c_type) == (24, 8, False, "const char *")
    assert fmt.field("common_pid").signed and fmt.field("common_pid").common
    assert fmt.size == 48 and fmt.offsets()["flags"] == (32, 8)
    with pytest.raises(EBPFError, match=r"no field 'nosuch'.*filename"):
        fmt.field("nosuch")
    with pytest.raises(EBPFError, match="no fields"):
        parse_format("name: x\nID: 1\n")
    with pytest.raises(EBPFError, match="cannot parse"):
        parse_format("\tfield:int ;\toffset:x;\n")


def test_parser_and_c_struct() -> None:
    fmt = parse_format(OPENAT, "syscalls")
    raw = struct.pack("<HBBi", 782, 0, 0, 77) + struct.pack("<i4xQQQQ", 257, 0xFFFFFF9C, 0xDEAD, 0o2000000, 0o644)
    rec = fmt.parser()(raw)
    assert (rec.syscall_nr, rec.dfd, rec.filename, rec.flags, rec.mode) == (257, 0xFFFFFF9C, 0xDEAD, 0o2000000, 0o644)
    assert fmt.parser(common=True)(raw).common_pid == 77
    with pytest.raises(EBPFError, match="record is 8 bytes"):
        fmt.parser()(raw[:8])
    c = fmt.c_struct()
    assert c.startswith("struct tracepoint__syscalls__sys_enter_openat {")
    assert "\tchar __pad_12[4];" in c and "\tconst char * filename;" in c and "\t__u64 flags;" in c


def test_strings_arrays_and_data_loc() -> None:
    text = ("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n"
            "\tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:0;\n"
            "\tfield:u32 ids[2];\toffset:28;\tsize:8;\tsigned:0;\n")
    fmt = parse_format(text, "x", "y")
    assert fmt.field("comm").is_string and fmt.field("name").data_loc
    raw = bytes(8) + b"bash".ljust(16, b"\0") + struct.pack("<I", (6 << 16) | 36) + struct.pack("<II", 1, 2) + b"hello\0"
    rec = fmt.parser()(raw)
    assert (rec.comm, rec.name, rec.ids) == ("bash", "hello", (1, 2))
    assert "\tchar comm[16];" in fmt.c_struct() and "__data_loc_name" in fmt.c_struct()


@pytest.mark.privileged
def test_tracepoint_format_matches_the_file() -> None:
    from ebpf.core.system import ensure_tracefs

    fmt = tracepoint_format("syscalls", "sys_enter_openat")
    text = Path(ensure_tracefs(), "events/syscalls/sys_enter_openat/format").read_text()
    for f in fmt.fields + fmt.common_fields:
        assert f"{f.name};\toffset:{f.offset};\tsize:{f.size};\tsigned:{int(f.signed)};" in text
    assert {"filename", "flags", "dfd", "mode"} <= {f.name for f in fmt.fields}
    assert tracepoint_format("sched:sched_switch").field("prev_comm").is_string
    with pytest.raises(AttachError, match="no tracepoint"):
        tracepoint_format("syscalls", "sys_enter_nosuch")


def test_tracepoint_format_parsed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from ebpf.events.tracing import _format

    parsed: list[str] = []
    real = _format.parse_format
    monkeypatch.setattr(_format, "parse_format", lambda text, c, n: parsed.append(n) or real(text, c, n))
    monkeypatch.setattr(_format, "_FORMATS", {})
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(tracepoint_format("sched", "sched_wakeup")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    again = tracepoint_format("sched:sched_wakeup")
    assert len(results) == 6 and all(r is again for r in results)  # one shared, immutable layout
    assert 1 <= len(parsed) <= 6 and tracepoint_format("sched", "sched_wakeup") is again
    parsed.clear()
    tracepoint_format("sched", "sched_wakeup")
    assert parsed == []  # the file unchanged: not read or parsed again


@pytest.mark.privileged
def test_ctx_field_program_reads_the_named_field() -> None:
    """A tracepoint program built with ctx_field loads and passes the verifier."""
    fmt = tracepoint_format("syscalls", "sys_enter_openat")
    insns = [asm.ctx_field(R1, fmt, "flags", dst=R0), asm.and64(R0, 1), asm.exit_()]
    with load_program(prog_type="tracepoint", insns=insns):
        pass


def _printk_program(message: bytes) -> list[object]:
    msg = message + b"\0" * (8 - len(message) % 8)
    insns: list[object] = []
    for i in range(0, len(msg), 8):
        insns += [asm.ld_imm64(R1, int.from_bytes(msg[i:i + 8], "little")), asm.stx_mem("dw", R10, R1, i - len(msg))]
    return [*insns, asm.mov64(R1, R10), asm.add64(R1, -len(msg)), asm.mov64(R2, len(message) + 1),
            asm.mov64(R3, 4242), asm.call("trace_printk"), asm.mov64(R0, 0), asm.exit_()]


@pytest.mark.privileged
def test_printk_lines_come_back_with_our_pid() -> None:
    with TracePipe(pid=threading.get_native_id()) as pipe, \
            load_program(prog_type="raw_tracepoint", insns=_printk_program(b"ebpf-test %d")) as prog:
        assert pipe.instance and os.path.isdir(f"{os.path.dirname(pipe.path)}")
        for _ in range(3):
            prog.test_run(ctx=bytes(8))  # runs in this thread: the printk line carries our pid
        got: list[object] = []
        for line in pipe.lines(duration=5):
            got.append(line)
            if len(got) == 3:
                break
    assert len(got) == 3
    assert all(g.pid == threading.get_native_id() and g.message == "ebpf-test 4242" for g in got)  # type: ignore[attr-defined]
    assert not os.path.exists(os.path.dirname(pipe.path))  # the private instance is gone


@pytest.mark.privileged
def test_trace_print_with_bcc_format(capsys: pytest.CaptureFixture[str]) -> None:
    with load_program(prog_type="raw_tracepoint", insns=_printk_program(b"tp %d")) as prog:
        done = threading.Event()

        def fire() -> None:
            while not done.wait(0.05):
                prog.test_run(ctx=bytes(8))

        t = threading.Thread(target=fire)
        t.start()
        try:
            n = trace_print("{1} {5}", duration=0.6, pid=t.native_id)
        finally:
            done.set()
            t.join()
    out = capsys.readouterr().out.splitlines()
    assert n == len(out) > 0 and set(out) == {f"{t.native_id} tp 4242"}
    with pytest.raises(EBPFError, match="bad trace_print format"):
        trace_print("{9}")


def test_parse_trace_line_shapes() -> None:
    line = parse_trace_line("           <...>-1234    [001] d..31  1234.567890: bpf_trace_printk: hello: world")
    assert line is not None and (line.task, line.pid, line.cpu, line.flags, line.message) == \
        ("<...>", 1234, 1, "d..31", "hello: world")
    assert parse_trace_line("  my-task-name-7 (    7) [000] 5.000001: bpf_trace_printk: x").task == "my-task-name"  # type: ignore[union-attr]
    assert parse_trace_line("CPU:1 [LOST 3 EVENTS]") is None
    with pytest.raises(EBPFError, match="pid"):
        TracePipe(pid=0)
    with pytest.raises(EBPFError, match="instance name"):
        TracePipe("../x")
