"""Loading: a verifier rejection names the Python line, ELF objects load with load_elf, maps carry BTF,
kernel functions load and attach through the Program API."""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from types import ModuleType

import pytest
from ebpf.core.errors import VerifierError
from ebpf.lang import HashMap, KernelFunction, LangError, Struct, compile, kernel, load, source_module, u32, u64
from ebpf.lang import ctx_types as ct

pytestmark = pytest.mark.privileged


class Stats(Struct):
    packets: u64
    last_len: u32


stats = HashMap(u32, Stats, max_entries=8)


@kernel("xdp")
def writes_ctx(ctx: ct.xdp_md) -> int:
    x = ctx.ingress_ifindex
    if x == 7:
        ctx.rx_queue_index = 1  # the verifier refuses writes to xdp_md
    return 2


@kernel("xdp")
def count_stats(ctx: ct.xdp_md) -> int:
    key: u32 = 1
    s = stats.lookup(key)
    if s is None:
        fresh = Stats(packets=1, last_len=60)
        stats[key] = fresh
        return 2
    s.packets += 1
    s.last_len = 64
    return 2


def _line_of(fn: object, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_verifier_rejection_names_the_python_line() -> None:
    line = _line_of(writes_ctx.fn, "ctx.rx_queue_index = 1")
    with pytest.raises(VerifierError) as info:
        writes_ctx.load()
    err = info.value
    assert err.python_line == (os.path.basename(__file__), line, "ctx.rx_queue_index = 1  # the verifier refuses writes to xdp_md")  # type: ignore[attr-defined]
    assert f"at {os.path.basename(__file__)}:{line}: ctx.rx_queue_index = 1" in str(err)
    # The log shows the line (kernels since 6.4 add " @ file:line", older ones the text alone).
    assert "\n; ctx.rx_queue_index = 1  # the verifier refuses writes to xdp_md" in err.log


def test_python_line_from_logs_with_and_without_file_names() -> None:
    from ebpf.lang.kernel import python_line

    new_style = "0: R1=ctx() R10=fp0\n; x = 1 @ prog.py:7\n1: (62) *(u32 *)(r6 +16) = 1\ninvalid\n"
    assert python_line(new_style) == ("prog.py", 7, "x = 1")
    old_style = "0: R1=ctx(off=0,imm=0) R10=fp0\n; def f(ctx):\n; x = 1\ninvalid\n"
    rows = [(0, "/src/prog.py", "def f(ctx):", 5, 1), (1, "/src/prog.py", "x = 1", 7, 5)]
    assert python_line(old_style, rows) == ("prog.py", 7, "x = 1")
    assert python_line(old_style) is None


def test_elf_object_loads_with_load_elf_and_keeps_line_info() -> None:
    from ebpf.elf import inspect_elf, load_elf

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prog.o")
        data = compile([count_stats, writes_ctx], path)
        assert data[:4] == b"\x7fELF" and os.path.getsize(path) == len(data)
        info = inspect_elf(path)
        assert {p.name: (p.section, p.type) for p in info.programs} == {
            "count_stats": ("xdp", "xdp"), "writes_ctx": ("xdp", "xdp")}
        assert [(m.name, m.kind, m.key_size, m.value_size) for m in info.maps] == [("stats", "btf", 4, 16)]
        assert info.btf and info.license == "GPL"
        with pytest.raises(VerifierError) as rejected:
            load_elf(path)
        # line_info survived the object file: the verifier shows the Python line
        assert "\n; ctx.rx_queue_index = 1  # the verifier refuses writes to xdp_md" in rejected.value.log
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ok.o")
        compile(count_stats, path)
        with load_elf(path) as coll:
            prog = coll.programs["count_stats"]
            for _ in range(3):
                assert prog.test_run(bytes(64)).retval == 2
            value = coll.maps["stats"].lookup_bytes((1).to_bytes(4, "little"))
            assert Stats.decode(value) == Stats(packets=3, last_len=64)


def test_map_dump_shows_typed_values(capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.core import dump_map
    from ebpf.core.cli import main

    with load([count_stats]) as coll:
        prog = coll.programs["count_stats"]
        prog.test_run(bytes(64))
        prog.test_run(bytes(64))
        text = dump_map(coll.maps["stats"])
        assert main(["map", "dump", str(coll.maps["stats"].info().id)]) == 0  # `ebpf map dump ID`
    assert "1: {'packets': 2, 'last_len': 64}" in text.splitlines()
    assert "1: {'packets': 2, 'last_len': 64}" in capsys.readouterr().out.splitlines()


def test_kernel_function_load_and_attach(example: Callable[[str], ModuleType]) -> None:
    mod = example("syscount")
    prog = mod.count_syscalls.load()
    try:
        coll = prog.lang_collection
        coll.maps["target"][0] = os.getpid()
        with prog.attach():
            for _ in range(10):
                os.getppid()
        assert coll.maps["counts"][110] == 10
        assert prog.attach_target == "raw_syscalls/sys_enter"
    finally:
        prog.lang_collection.close()


def test_disassembly_interleaves_python_lines() -> None:
    text = count_stats.disassemble()
    assert "; s.packets += 1" in text and "lock *(u64 *)" in text


def test_compile_without_kernel_functions() -> None:
    with pytest.raises(LangError, match="no @kernel functions to compile"):
        compile(ModuleType("empty"))


@pytest.mark.parametrize("name", ["execve_tracer", "xdp_counter", "cgroup_connect_block", "syscount", "latency_hist"])
def test_elf_objects_load_with_libbpf(example: Callable[[str], ModuleType], name: str) -> None:
    """libbpf itself (through pylibbpf) opens and loads what ebpf.lang.compile writes."""
    import gc

    import pylibbpf

    module = example(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.o")
        compile(module, path)
        obj = pylibbpf.BpfObject(path)
        obj.load()
        names = [f.name for f in vars(module).values() if isinstance(f, KernelFunction)]
        assert names
        assert all(obj.get_program(n).get_name() == n for n in names)
        del obj
        gc.collect()  # libbpf closes the object's fds when it is destroyed


def test_value_only_maps_in_elf_objects() -> None:
    """Queues, stacks and bloom filters are BTF-defined with a value and no key; both loaders take them."""
    import gc

    import pylibbpf
    from ebpf.elf import load_elf

    mod = source_module('''
from ebpf.lang import ArrayMap, BloomFilter, QueueMap, kernel, u32, u64, ctx_types as ct
q = QueueMap(u32, max_entries=4)
bf = BloomFilter(u32, max_entries=16, hashes=3)
out = ArrayMap(u64, max_entries=2)

@kernel("xdp")
def fifo(ctx: ct.xdp_md) -> int:
    q.push(5)
    bf.push(9)
    out[0] = q.pop(0)
    out[1] = 9 in bf
    return 2
''', name="value_only_maps")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fifo.o")
        compile(mod, path)
        with load_elf(path) as coll:
            coll.programs["fifo"].test_run(bytes(64))
            assert [coll.maps["out"][0], coll.maps["out"][1]] == [5, 1]
            assert coll.maps["bf"].info().map_extra == 3  # the number of hash functions
        obj = pylibbpf.BpfObject(path)
        obj.load()
        del obj
        gc.collect()
