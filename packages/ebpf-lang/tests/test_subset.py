# ruff: noqa: F841, B007  (the kernel functions here exist to be refused, unused names included)
"""Every boundary of the compiled subset: a LangError with file, line, column and the exact message."""

from __future__ import annotations

import inspect

import pytest
from ebpf.lang import ArrayMap, HashMap, KernelFunction, LangError, RingBuf, Struct, bpf, char, kernel, u8, u32, u64
from ebpf.lang import ctx_types as ct


def expect_error(fn: KernelFunction, message: str, col: int | None = None) -> LangError:
    """Compiling ``fn`` fails with exactly ``message``, in this file, at the line marked ``# <-``
    (and at column ``col``, default: the line's first non-blank column)."""
    with pytest.raises(LangError) as info:
        fn.compile()
    err = info.value
    lines, first = inspect.getsourcelines(fn.fn)
    marked = [(first + i, len(t) - len(t.lstrip()) + 1) for i, t in enumerate(lines) if "# <-" in t]
    assert marked, f"no '# <-' marker in {fn.name}"
    line, first_col = marked[0]
    assert err.message == message
    assert err.filename == __file__
    assert (err.line, err.col) == (line, col if col is not None else first_col), str(err)
    assert str(err) == f"{__file__}:{line}:{err.col}: {message}"
    return err

counts = HashMap(u32, u64, max_entries=16)
arr = ArrayMap(u64, max_entries=4)
events = RingBuf(4096)


class Ev(Struct):
    pid: u32
    comm: char[16]


class Pair(Struct):
    a: u32
    b: u32


pairs = HashMap(u32, Pair, max_entries=4)


def test_while_loop() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        while True:  # <-
            pass
        return 2

    expect_error(f, "while loops are not compiled (the verifier needs a bound): write `for i in range(N):` "
                    "with a constant N, and `break` to stop early")


def test_float() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        x = 1.5  # <-
        return 2

    expect_error(f, "floats are not supported in kernel code: use integers (e.g. nanoseconds, or a value scaled by 1000)",
                 col=13)


def test_recursion() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return f(ctx)  # <-

    expect_error(f, "calling kernel functions (and recursion) is not supported: inline the code", col=16)


def test_dynamic_call() -> None:
    table = {1: len}

    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return table[1](3)  # <-

    expect_error(f, "table[1]() is not callable from kernel code: only bpf.<helper>(...), map methods, integer "
                    "casts like u32(x), Struct() and ctx.header(T, offset) are; dynamic calls cannot be verified",
                 col=16)


def test_unbounded_range() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        n = ctx.ingress_ifindex
        for i in range(n):  # <-
            pass
        return 2

    expect_error(f, "range() bounds must be constants (the loop is unrolled); use a constant upper bound and `break`",
                 col=24)


def test_long_loops_are_not_unrolled() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        total: u64 = 0
        for i in range(1000):
            total += ctx.args[i % 6]  # <-
        return 0

    expect_error(f, "array indexes must be constants here (the variable of a loop of at most 64 iterations is): "
                    "only integer arrays in locals and map values take an index known at run time", col=31)


def test_loop_variable_is_read_only() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        for i in range(100):
            i = 5  # <-
        return 2

    expect_error(f, "i is a loop variable; assign to another name")


def test_float_division() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return ctx.ingress_ifindex / 2  # <-

    expect_error(f, "`/` is float division: use `//` for integer division", col=16)


def test_signed_division() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        x = -ctx.ingress_ifindex
        y = i64(x) // 3  # <-
        return 2

    from ebpf.lang import i64
    f.fn.__globals__["i64"] = i64
    expect_error(f, "signed `//` is not supported (BPF divides unsigned): cast to an unsigned type, e.g. u64(x) // y",
                 col=13)


def test_try() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        try:  # <-
            pass
        finally:
            pass
        return 2

    expect_error(f, "try/except is not supported in kernel code: check values with `if` instead")


def test_tuple_unpacking() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        a, b = 1, 2  # <-
        return 2

    expect_error(f, "assign one target at a time (`a = x` then `b = y`); tuple unpacking is not supported")


def test_unchecked_pointer() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        p = pairs.lookup(1)
        return p.a  # <-

    expect_error(f, "p may be None here: check it first (`if p is None: return 0`)", col=16)


def test_checked_pointer_compiles() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        p = pairs.lookup(1)
        if p is None:
            return 2
        return p.a + p.b

    assert f.compile().insn_count > 0


def test_unassigned_local() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        if ctx.ingress_ifindex == 1:
            x = 1
        return x  # <-

    expect_error(f, "x may be unassigned here: assign it on every path before this line", col=16)


def test_unknown_helper() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return bpf.no_such_helper()  # <-

    with pytest.raises(LangError, match=r"bpf.no_such_helper is not a helper this compiler knows \(known: .*ktime_get_ns"):
        f.compile()


def test_helper_argument_count() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return bpf.ktime_get_ns(1)  # <-

    expect_error(f, "bpf.ktime_get_ns() takes 0 argument(s) (none), got 1", col=16)


def test_helper_argument_type() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        x = 5
        bpf.get_current_comm(x)  # <-
        return 0

    expect_error(f, "x is an integer; it has no fields or elements", col=30)


def test_get_of_struct_value() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return pairs.get(1, 0)  # <-

    expect_error(f, "pairs holds Pair values: use p = pairs.lookup(key) and check p is not None", col=16)


def test_unknown_field() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return ctx.no_field  # <-

    err = expect_error(f, "xdp_md has no field 'no_field' (fields: data, data_end, data_meta, ingress_ifindex, "
                          "rx_queue_index, egress_ifindex)", col=16)
    assert "xdp_md" in str(err)


def test_packet_pointer_field() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return ctx.data  # <-

    expect_error(f, "ctx.data is a packet pointer: read packet headers with ctx.header(StructClass, offset), "
                    "which checks the bounds", col=16)


def test_array_index_out_of_bounds() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        return ctx.args[6]  # <-

    expect_error(f, "index 6 is out of bounds for u64[6]", col=25)


def test_variable_array_index() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        i = ctx.id
        return ctx.args[i]  # <-

    expect_error(f, "array indexes must be constants here (the variable of a loop of at most 64 iterations is): "
                    "only integer arrays in locals and map values take an index known at run time", col=25)


def test_char_array_assignment() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        ev = Ev()
        ev.comm = 5  # <-
        return 0

    expect_error(f, "assigning to a char[N] is not supported: fill it with a helper (bpf.get_current_comm(ev.comm), "
                    "bpf.probe_read_user_str(ev.name, addr))")


def test_pointer_arithmetic() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        p = pairs.lookup(1)
        q = p + 1  # <-
        return 2

    expect_error(f, "pointer arithmetic is not supported: use fields, array indexes or ctx.header(T, offset)", col=13)


def test_print() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        print(1)  # <-
        return 2

    expect_error(f, "print() is not available in the kernel: use bpf.trace_printk(\"fmt %d\\n\", x) or send an "
                    "event through a ring buffer")


def test_fstring() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        bpf.trace_printk(f"{ctx.ingress_ifindex}")  # <-
        return 2

    expect_error(f, "argument 1 of bpf.trace_printk() must be a constant string", col=26)


def test_global_statement() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        global counts  # <-
        return 2

    expect_error(f, "`global` is not supported: keep state in maps")


def test_map_as_value() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        x = counts  # <-
        return 2

    expect_error(f, "map counts is used with m[k], m.get(k, 0), k in m, m.increment(k), m.lookup(k) or "
                    "output()/reserve(); not as a value", col=13)


def test_ringbuf_submit_needs_reserved() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        ev = Ev()
        events.submit(ev)  # <-
        return 2

    expect_error(f, "events.submit() takes a local holding events.reserve(...)", col=23)


def test_array_delete() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        del arr[1]  # <-
        return 2

    expect_error(f, "arr is an array map: its entries cannot be deleted (store 0 instead)", col=13)


def test_constant_too_big() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        x: u8 = 300  # <-
        return 2

    expect_error(f, "300 does not fit in u8", col=17)


def test_two_arguments() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md, other: int) -> int:  # <-
        return 2

    expect_error(f, "a kernel function takes exactly one argument, the context: `def prog(ctx: ct.xdp_md) -> int:`")


def test_context_annotation() -> None:
    @kernel("xdp")
    def f(ctx: int) -> int:  # <-
        return 2

    expect_error(f, "the context annotation int is not a context type: use ct.<kernel struct>, e.g. ct.xdp_md", col=11)


def test_missing_context_struct() -> None:
    @kernel("xdp")
    def f(ctx: ct.no_such_struct_in_the_kernel) -> int:  # <-
        return 2

    expect_error(f, "struct no_such_struct_in_the_kernel is not in the kernel's BTF: pick a context struct this "
                    "kernel has", col=11)


def test_header_needs_packet_context() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        p = ctx.header(Pair, 0)  # <-
        return 0

    expect_error(f, "ctx.header() reads packets: the context must be ct.xdp_md or ct.__sk_buff", col=13)


def test_unknown_section() -> None:
    def f(ctx: ct.xdp_md) -> int:
        return 2

    with pytest.raises(LangError, match=r"unknown section 'nosuch': use e.g. 'xdp'"):
        kernel("nosuch")(f)


def test_calling_in_user_space() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        return 2

    with pytest.raises(TypeError, match="is a kernel function"):
        f(None)
    with pytest.raises(TypeError, match="only inside @kernel functions"):
        counts[1]


def test_bad_struct_field() -> None:
    with pytest.raises(LangError, match="is not a field type"):
        class Bad(Struct):
            x: int


def test_kernel_memory_is_read_only() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        task: ct.task_struct = bpf.get_current_task()
        task.pid = 1  # <-
        return 0

    expect_error(f, "kernel memory is read-only here: copy what you need into a local or a struct")


def test_kernel_memory_is_not_a_destination() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        task: ct.task_struct = bpf.get_current_task()
        bpf.get_current_comm(task.comm)  # <-
        return 0

    expect_error(f, "argument 1 of bpf.get_current_comm() must be memory of this program (a local, a struct field), "
                    "not kernel memory", col=30)


def test_kernel_struct_reads_compile_to_probe_reads() -> None:
    @kernel("tracepoint/syscalls/sys_enter_execve")
    def f(ctx: ct.trace_event_raw_sys_enter) -> int:
        task: ct.task_struct = bpf.get_current_task()
        ev = Ev()
        bpf.probe_read_kernel_str(ev.comm, task.real_parent.comm)
        return task.real_parent.tgid

    text = f.disassemble()
    # real_parent read twice (once per statement), tgid once; the comm copied with probe_read_kernel_str
    assert text.count("call 113") == 3 and text.count("call 115") == 1


def test_string_compare_needs_a_char_array() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        ev = Ev()
        if ev.pid == b"x":  # <-
            return 1
        return 2

    expect_error(f, "ev.pid is a u32: only char[N]/u8[N] compare with a string", col=12)


def test_string_order_is_refused() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        ev = Ev()
        if ev.comm < b"x":  # <-
            return 1
        return 2

    expect_error(f, "strings compare with == and != only", col=12)


def test_bad_declarations_name_their_line() -> None:
    import sys

    line = sys._getframe().f_lineno
    with pytest.raises(LangError) as info:
        HashMap(u32, int)
    assert (info.value.filename, info.value.line) == (__file__, line + 2)
    assert info.value.message == ("map value type <class 'int'> is not a type "
                                  "(use u8..u64, i8..i64, T[N] or a Struct class)")
    with pytest.raises(LangError, match="array length must be a positive int, not 0"):
        u8[0]
    with pytest.raises(LangError, match="ring buffer size must be a power of two, not 1000"):
        RingBuf(1000)


def test_break_paths_count_for_assignment() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        for i in range(4):
            if ctx.ingress_ifindex == i:
                break
            x = i
        return x  # <-

    expect_error(f, "x may be unassigned here: assign it on every path before this line", col=16)


def test_assigned_before_every_break_compiles() -> None:
    @kernel("xdp")
    def f(ctx: ct.xdp_md) -> int:
        x = 0
        for i in range(4):
            if ctx.ingress_ifindex == i:
                x = i
                break
            if i == 2:
                continue
            x = x + 1
        return x

    assert f.compile().insn_count > 0
