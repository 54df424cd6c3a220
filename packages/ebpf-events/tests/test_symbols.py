"""Symbolization on real processes: kallsyms, ELF symbol tables (plain, MiniDebugInfo, build-id and
debuglink debug files, none), the vDSO, deleted binaries, perf maps, and bad input."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ebpf.core.errors import EBPFError, ELFError
from ebpf.events import symbols
from ebpf.events._elfsyms import ElfImage
from ebpf.events.symbols import KernelSymbols, ProcessSymbols, Symbol, ksym, symbolize, usym
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.privileged


def test_kernel_symbols_name_the_syscall_entry() -> None:
    kernel = KernelSymbols.shared()
    assert kernel.reason is None and len(kernel) > 1000
    addr = kernel.address("do_syscall_64")
    assert addr is not None
    sym = kernel.resolve(addr + 4)
    assert sym == Symbol("do_syscall_64", 4, "kernel", "kernel")
    assert str(sym) == "do_syscall_64+0x4 [kernel]"
    assert ksym(addr) == "do_syscall_64" and ksym(addr, show_module=True) == "do_syscall_64 [kernel]"
    assert kernel.resolve(0x1000) is None and ksym(0x1000) == "[unknown]"


def test_kallsyms_file_formats(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text("ffffffff81000100 T second\nffffffff81000000 t first\nffffffff81000050 D data_not_text\n"
                    "ffffffffc0001000 t mod_fn\t[my_mod]\nc0002000 T short_form [other_mod]\ngarbage\n\n"
                    "zzzz T bad_address\n")
    table = KernelSymbols(str(path))
    assert table.names == ["short_form", "first", "second", "mod_fn"]
    assert table.resolve(0xFFFFFFFF81000060) == Symbol("first", 0x60, "kernel", "kernel")
    assert table.resolve(0xFFFFFFFFC0001002) == Symbol("mod_fn", 2, "my_mod", "kernel")
    with pytest.raises(EBPFError):
        KernelSymbols(str(tmp_path / "missing"))


def test_kptr_restrict_2_gives_a_reason_not_a_crash(kptr_restrict_2: None) -> None:
    hidden = KernelSymbols()
    assert hidden.reason and "kptr_restrict=2" in hidden.reason
    assert len(hidden) == 0 and hidden.resolve(0xFFFFFFFF81000000) is None


@pytest.mark.parametrize("variant", ["plain", "minidebuginfo", "debugfile", "debuglink"])
def test_hot_spin_loop_resolves_in_every_variant(spin_builder, spawn, variant: str) -> None:  # type: ignore[no-untyped-def]
    binary, debug_dir = spin_builder.variant(variant)
    if variant != "plain":
        assert not ElfImage.from_path(str(binary)).has_symtab()  # really stripped
    symbols.drop_file_cache()  # every variant shares the build id: parse each one for real
    with spawn(binary, "spin") as target:
        procsyms = ProcessSymbols(target.pid, debug_dirs=[str(debug_dir)] if debug_dir else None)
        sym = procsyms.resolve(target.hot_addr + 5)
        assert sym == Symbol("hot_spin_loop", 5, binary.name, "user"), procsyms.reasons()
        main = next(m for m in procsyms.mappings if m.module == binary.name)
        expected = {"plain": "symtab", "minidebuginfo": "minidebuginfo", "debuglink": "debuglink"}
        assert main.source.startswith(expected.get(variant, "build-id debug file")), main.source


def test_binary_without_symbols_is_partial_with_a_reason(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    binary, _ = spin_builder.variant("nosym")
    symbols.drop_file_cache()  # the same build id with symbols was parsed before
    with spawn(binary, "spin") as target:
        procsyms = ProcessSymbols(target.pid)
        assert procsyms.resolve(target.hot_addr) is None
        assert "no symbols" in procsyms.reasons()[binary.name]
        assert symbolize([target.hot_addr], pid=target.pid) == [f"{target.hot_addr:#x} [{binary.name}]"]
        # libc still resolves in the same process
        libc = next(m for m in procsyms.mappings if m.module.startswith("libc"))
        assert procsyms.resolve(libc.table.addrs[len(libc.table) // 2] + libc.bias) is not None  # type: ignore[union-attr]


def test_deleted_binary_resolves_through_map_files(spin_builder, spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "spin_deleted"
    binary.write_bytes(spin_builder.plain.read_bytes())
    binary.chmod(0o755)
    with spawn(binary, "spin") as target:
        binary.unlink()
        procsyms = ProcessSymbols(target.pid)
        assert any(m.path.endswith("(deleted)") for m in procsyms.mappings)
        assert procsyms.resolve(target.hot_addr).name == "hot_spin_loop"  # type: ignore[union-attr]


def test_pie_and_non_pie_load_bias(spin_builder, spawn) -> None:  # type: ignore[no-untyped-def]
    for variant in ("plain", "nopie"):
        binary, _ = spin_builder.variant(variant)
        with spawn(binary, "spin") as target:
            procsyms = ProcessSymbols(target.pid)
            assert procsyms.resolve(target.hot_addr + 3) == Symbol("hot_spin_loop", 3, binary.name, "user")
            main = next(m for m in procsyms.mappings if m.module == binary.name)
            is_exec = binary.read_bytes()[16] == 2  # e_type: ET_EXEC (2), not ET_DYN (3)
            assert is_exec == (variant == "nopie") and (main.bias == 0) == is_exec, (variant, main.bias)


LATE_LIB = "__attribute__((noinline)) int ebpf_late_loaded_fn(int x) { return x * 3 + 1; }\n"


def test_a_library_loaded_later_is_found_when_its_address_shows_up(tmp_path: Path) -> None:
    lib = tmp_path / "libebpflate.so"
    (tmp_path / "late.c").write_text(LATE_LIB)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", str(tmp_path / "late.c"), "-o", str(lib)], check=True)
    code = ("import ctypes, sys\nsys.stdin.readline()\n"
            f"fn = ctypes.CDLL({str(lib)!r}).ebpf_late_loaded_fn\n"
            "print(ctypes.cast(fn, ctypes.c_void_p).value, flush=True)\nsys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdin is not None and child.stdout is not None
        procsyms = ProcessSymbols(child.pid)  # before the dlopen: the library is not mapped yet
        assert all(m.module != lib.name for m in procsyms.mappings)
        child.stdin.write("go\n")
        child.stdin.flush()
        addr = int(child.stdout.readline())
        deadline = time.monotonic() + 10
        sym = procsyms.resolve(addr + 2)
        while sym is None and time.monotonic() < deadline:  # the maps are re-read at most every RELOAD_INTERVAL
            time.sleep(0.05)
            sym = procsyms.resolve(addr + 2)
        assert sym == Symbol("ebpf_late_loaded_fn", 2, lib.name, "user")
    finally:
        child.kill()
        child.wait()


def test_own_process_libc_and_vdso() -> None:
    libc = ctypes.CDLL("libc.so.6")
    addr = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    assert addr
    assert usym(os.getpid(), addr + 1, show_module=True).endswith("[libc.so.6]")
    procsyms = ProcessSymbols(os.getpid())
    vdso = next(m for m in procsyms.mappings if m.module == "[vdso]")
    assert vdso.table is not None and len(vdso.table) > 0
    name = vdso.table.names[0]
    assert procsyms.resolve(vdso.table.addrs[0] + vdso.bias) == Symbol(name, 0, "[vdso]", "user")


def test_perf_map_of_python_x_perf(perf_python: str) -> None:
    code = "def hot_py_function():\n  while True: sum(range(100))\nprint('go', flush=True)\nhot_py_function()\n"
    proc = subprocess.Popen([perf_python, "-X", "perf", "-c", code], stdout=subprocess.PIPE, text=True)
    path = f"/tmp/perf-{proc.pid}.map"
    try:
        assert proc.stdout and proc.stdout.readline().strip() == "go"
        deadline = time.monotonic() + 10
        entry = None
        while entry is None and time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as fh:
                    entry = next((line.split() for line in fh if "hot_py_function" in line), None)
            if entry is None:
                time.sleep(0.05)
        assert entry, f"{path} never named hot_py_function"
        sym = ProcessSymbols(proc.pid).resolve(int(entry[0], 16) + 1)
        assert sym is not None and "hot_py_function" in sym.name and sym.kind == "jit" and sym.offset == 1
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if os.path.exists(path):
            os.unlink(path)


@pytest.mark.parametrize("pid", [0, -1, True, "1", 2**22 + 12345])
def test_bad_pid(pid: object) -> None:
    with pytest.raises(EBPFError):
        ProcessSymbols(pid)  # type: ignore[arg-type]


def test_pid_exiting_keeps_what_was_read(spin_builder) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([str(spin_builder.plain), "exit", "200"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout
    hot = int(proc.stdout.readline().split()[1], 16)
    procsyms = ProcessSymbols(proc.pid)
    proc.wait()
    proc.stdout.close()
    assert procsyms.resolve(hot).name == "hot_spin_loop"  # type: ignore[union-attr]
    assert procsyms.resolve(0x10) is None  # a re-read of the gone process's maps fails quietly
    with pytest.raises(EBPFError, match="no process"):
        ProcessSymbols(proc.pid)


def test_malformed_elf_raises_elf_error(tmp_path: Path, spin_builder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ELFError):
        ElfImage(b"not an elf at all" * 10, "junk")
    data = spin_builder.plain.read_bytes()
    for cut in (64, 100, 1000, len(data) // 2):
        try:
            image = ElfImage(data[:cut], "truncated")
            image.function_symbols()
            image.build_id()
            image.minidebuginfo()
        except ELFError:
            pass
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(ELFError):
        symbols.file_symbols(str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=20))
def test_fuzzed_elf_headers_only_raise_elf_error(spin_builder, edits: list[tuple[int, int]]) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(spin_builder.plain.read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    try:
        image = ElfImage(bytes(data), "fuzzed")
        image.function_symbols()
        image.build_id()
        image.debuglink()
        image.minidebuginfo()
    except ELFError:
        pass


def _capture_build_id_stack() -> list:  # type: ignore[type-arg]
    """The user stack of this process's next getppid(), as the kernel records build-id stacks."""
    from ebpf.core import asm
    from ebpf.core.links import attach_raw_tracepoint
    from ebpf.core.maps import create_array_map, create_stack_trace_map
    from ebpf.core.programs import load_program

    r0, r1, r2, r3, r4, r6, r10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
    with create_stack_trace_map(64, depth=16, build_id=True, name="bid_stacks") as stacks, \
            create_array_map(1, value_size=8, name="bid_ids") as ids:
        insns = [asm.mov64(r6, r1), asm.call("get_current_pid_tgid"), asm.rsh64(r0, 32),
                 asm.jne(r0, os.getpid(), "out"),
                 asm.mov64(r1, r6), asm.ld_map_fd(r2, stacks), asm.mov64(r3, (1 << 8) | (1 << 10)),
                 asm.call("get_stackid"), asm.stx_mem("dw", r10, r0, -16), asm.st_mem("w", r10, -4, 0),
                 asm.ld_map_fd(r1, ids), asm.mov64(r2, r10), asm.add64(r2, -4), asm.mov64(r3, r10),
                 asm.add64(r3, -16), asm.mov64(r4, 0), asm.call("map_update_elem"),
                 asm.label("out"), asm.mov64(r0, 0), asm.exit_insn()]
        with load_program(prog_type="raw_tracepoint", insns=insns, name="bid_test") as prog, \
                attach_raw_tracepoint(prog, "sys_enter"):
            os.getppid()
        stack_id = ids[0]
        assert stack_id < 1 << 31, stack_id
        return stacks.stack(stack_id)


def test_build_id_frames_resolve(spin_builder) -> None:  # type: ignore[no-untyped-def]
    from ebpf.events.symbols import resolve_build_id

    ProcessSymbols(os.getpid())  # parses (or finds cached) every file this process maps
    frames = [f for f in _capture_build_id_stack() if f.status == "valid"]
    assert frames
    named = [resolve_build_id(f.build_id, f.offset) for f in frames]
    assert named[0] is not None and named[0].module.startswith("libc"), (named, frames)  # a libc syscall wrapper
    assert resolve_build_id(b"\x01" * 20, 0x1000) is None
    # a build id known only through its debug file
    _, debug_dir = spin_builder.variant("debugfile")
    symbols.drop_file_cache()
    with ElfImage.from_path(str(spin_builder.plain)) as image:
        bid = image.build_id()
        funcs = {name: addr for addr, _r, _s, name in image.function_symbols()}
        seg = next(s for s in image.loads if s.vaddr <= funcs["hot_spin_loop"] < s.vaddr + s.filesz)
    assert bid
    offset = funcs["hot_spin_loop"] - seg.vaddr + seg.offset
    sym = resolve_build_id(bid, offset + 3, debug_dirs=[str(debug_dir)])
    assert sym is not None and (sym.name, sym.offset) == ("hot_spin_loop", 3)


def test_perf_map_is_reread_when_it_grows(tmp_path: Path) -> None:
    from ebpf.events.symbols import PerfMap

    path = tmp_path / "perf-1.map"
    perf_map = PerfMap(str(path))
    assert perf_map.lookup(0x1000) is None  # no file yet
    path.write_text("1000 20 jit_one\nnot a line\n")
    assert perf_map.lookup(0x1004) == ("jit_one", 4)
    with path.open("a") as fh:
        fh.write("0x2000 10 jit two with spaces\n")
    assert perf_map.lookup(0x2001) == ("jit two with spaces", 1)
    assert perf_map.lookup(0x1030) is None  # past jit_one's size


def test_symbolize_without_a_pid_names_kernel_frames_only() -> None:
    kernel = KernelSymbols.shared()
    addr = kernel.address("do_syscall_64")
    assert addr is not None
    assert symbolize([addr + 1, 0x401000]) == ["do_syscall_64+0x1 [kernel]", "0x401000 [unknown]"]


def test_debuglink_candidates_of_a_process_that_exited() -> None:
    # Symbols of a process read through /proc/PID/root: if the process exits meanwhile, resolving
    # the path fails; the candidate is only "not the same file", never an OSError (seen in a guest).
    from ebpf.events._elfsyms import _same_file

    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    assert _same_file(f"/proc/{gone.pid}/root/usr/lib/debug/x.debug", "/bin/true") is False
    assert _same_file("/bin/true", "/bin/true") is True
