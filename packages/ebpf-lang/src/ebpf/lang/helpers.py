"""BPF helpers as ``bpf.<name>(...)``, checked against their prototypes at compile time.

Each prototype lists the helper's C arguments by kind:

- ``int``: any integer expression;
- ``buf``: a memory region given as one Python argument (a ``char[N]``/array field or local,
  a struct local, or a checked pointer to a struct); it expands to the C pair (pointer, size);
- ``addr``: an address to read from (an integer, e.g. ``ctx.args[1]``);
- ``ctx``: the program's context (the user passes the context argument);
- ``map``: a module-level map (``bpf.tail_call(ctx, progs, 1)``, ``bpf.redirect_map(ports, i, 0)``);
- ``fmt``: a constant ``str``/``bytes`` format string (expands to pointer, size).

The return type is an integer type.  Intrinsics that are not kernel helpers (``bpf.htons``,
``bpf.ntohs``, ``bpf.htonl``, ``bpf.ntohl``) compile to byte-swap instructions and fold constants.
"""

from __future__ import annotations

from typing import Any

from ebpf.core.records import dataclass
from ebpf.lang.types import IntType, i64, u32, u64

__all__ = ["HelperProto", "HELPERS", "INTRINSICS", "bpf"]


@dataclass(frozen=True)
class HelperProto:
    """A helper's name, its C argument kinds and its return type."""

    name: str
    args: tuple[str, ...]
    ret: IntType = i64
    variadic: int = 0  # extra optional ``int`` arguments (trace_printk)


_P = HelperProto
HELPERS: dict[str, HelperProto] = {p.name: p for p in (
    _P("ktime_get_ns", (), u64),
    _P("ktime_get_boot_ns", (), u64),
    _P("ktime_get_coarse_ns", (), u64),
    _P("jiffies64", (), u64),
    _P("get_current_pid_tgid", (), u64),
    _P("get_current_uid_gid", (), u64),
    _P("get_current_task", (), u64),
    _P("get_current_cgroup_id", (), u64),
    _P("get_smp_processor_id", (), u32),
    _P("get_numa_node_id", (), i64),
    _P("get_prandom_u32", (), u32),
    _P("get_current_comm", ("buf",)),
    _P("probe_read_kernel", ("buf", "addr")),
    _P("probe_read_user", ("buf", "addr")),
    _P("probe_read_kernel_str", ("buf", "addr")),
    _P("probe_read_user_str", ("buf", "addr")),
    _P("probe_read", ("buf", "addr")),
    _P("probe_read_str", ("buf", "addr")),
    _P("trace_printk", ("fmt",), i64, variadic=3),
    _P("get_socket_cookie", ("ctx",), u64),
    _P("get_netns_cookie", ("ctx",), u64),
    _P("redirect", ("int", "int")),
    _P("send_signal", ("int",)),
    _P("get_func_ip", ("ctx",), u64),
    _P("get_attach_cookie", ("ctx",), u64),
    _P("ktime_get_tai_ns", (), u64),
    _P("get_current_ancestor_cgroup_id", ("int",), u64),
    _P("send_signal_thread", ("int",)),
    _P("probe_write_user", ("addr", "buf")),
    _P("override_return", ("ctx", "int")),
    _P("tail_call", ("ctx", "map", "int")),
    _P("redirect_map", ("map", "int", "int")),
    _P("get_stackid", ("ctx", "map", "int")),
    _P("skb_load_bytes", ("ctx", "int", "buf")),
    _P("skb_store_bytes", ("ctx", "int", "buf", "int")),
    _P("l3_csum_replace", ("ctx", "int", "int", "int", "int")),
    _P("l4_csum_replace", ("ctx", "int", "int", "int", "int")),
    _P("xdp_adjust_head", ("ctx", "int")),
    _P("xdp_adjust_tail", ("ctx", "int")),
    _P("get_hash_recalc", ("ctx",), u32),
    _P("get_cgroup_classid", ("ctx",), u32),
    _P("skb_cgroup_id", ("ctx",), u64),
    _P("get_socket_uid", ("ctx",), u32),
)}

#: Byte-order intrinsics: name -> (bits, swap): compiled to ``be16``/``be32`` (little-endian hosts).
INTRINSICS: dict[str, int] = {"htons": 16, "ntohs": 16, "htonl": 32, "ntohl": 32, "htonll": 64, "ntohll": 64}


class _Helper:
    """``bpf.<name>``: a reference the compiler resolves; calling it in user space is an error."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        if self.name in INTRINSICS:
            bits = INTRINSICS[self.name]
            return int.from_bytes(int(args[0]).to_bytes(bits // 8, "little"), "big")
        raise TypeError(f"bpf.{self.name}() runs only inside @kernel functions")

    def __repr__(self) -> str:
        return f"bpf.{self.name}"


class _Bpf:
    """The ``bpf`` namespace: ``bpf.get_current_pid_tgid()``, ``bpf.htons(80)`` ..."""

    def __getattr__(self, name: str) -> _Helper:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Helper(name)

    def __repr__(self) -> str:
        return "<ebpf.lang helpers: bpf.<name>(...)>"


#: Helpers and intrinsics for kernel code.
bpf: Any = _Bpf()
