"""Map operation benchmark: ebpf vs the raw ctypes floor vs C (raw bpf() syscalls) vs pylibbpf, in one run.

Prints the interpreter first, then one JSON line per figure:
``{"figure", "ops_per_s", "ref", "ratio", "floor_ops_per_s", "ratio_floor", "pylibbpf_ops_per_s",
"ratio_pylibbpf", "python"}`` where ``ratio`` is against the C reference (bench/ref/bench_maps.c,
compiled here with ``python3 -m ziglang cc`` or ``cc``), ``ratio_floor`` against the hand-written
ctypes loop (preallocated attr/key/value, ``libc.syscall`` with argtypes, only ``key.value``
changing per call) and ``ratio_pylibbpf`` against pylibbpf (libbpf in C++, the fastest Python
peer) driving the same workload on maps from a tiny BPF object compiled here with ziglang
(bench/ref/bench_maps.bpf.c).  Every side is measured interleaved, best of 5 rounds.  Hash u32 ->
u64, 20,000 max entries, 200,000 operations on keys ``i % 10000``; deletes remove 10,000 existing
keys per round; batches and ``items()`` cover the 10,000 entries.

``batch_lookup`` is :meth:`Map.lookup_batch_columns` (two ``array.array`` columns, like C's two
arrays); ``batch_lookup_pairs`` is :meth:`Map.lookup_batch` (a list of (key, value) tuples).
pylibbpf has no batch reads: its ``items()`` is the reference of both.  pylibbpf 0.0.6 has no batch
update and no per-CPU values (its update of a per-CPU hash fails with EINVAL: it passes ``value_size``
bytes, not one slot per CPU), so ``batch_update`` and ``percpu_hash_lookup`` have no ``ratio_pylibbpf``.
The mmap figures' floor and pylibbpf references are the syscall lookups of ``array_lookup``.

Run as root: ``python3 packages/ebpf-core/bench/bench_maps.py`` (``nox -s bench`` runs it on
Debian's ``/usr/bin/python3`` when present, with pylibbpf installed).
"""

from __future__ import annotations

import array
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from _interp import PYTHON, print_interpreter  # noqa: E402
from ebpf.core._sys import attrs  # noqa: E402
from ebpf.core._sys.syscall import SYS_BPF  # noqa: E402
from ebpf.core.maps import Map, create_array_map, create_hash_map, create_percpu_hash_map  # noqa: E402
from ebpf.core.system import cpu_count  # noqa: E402

N_OPS = 200_000
N_KEYS = 10_000
ROUNDS = 5

libc = ctypes.CDLL(None, use_errno=True)
sc = libc.syscall
sc.restype = ctypes.c_long
sc.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
ELEM_SIZE = ctypes.sizeof(attrs.MapElemAttr)
BATCH_SIZE = ctypes.sizeof(attrs.MapBatchAttr)
ZIG = [sys.executable, "-m", "ziglang", "cc"]


def warn(message: str) -> None:
    print(json.dumps({"warning": message, "python": PYTHON}), flush=True)


def c_reference() -> dict[str, float]:
    """Compile and run bench/ref/bench_maps.c; its figures by name ({} when no compiler works)."""
    src = os.path.join(HERE, "ref", "bench_maps.c")
    out = os.path.join(tempfile.mkdtemp(prefix="ebpf-bench-"), "bench_maps")
    for cc in ([*ZIG, "-O2", "-target", "x86_64-linux-gnu"], ["cc", "-O2"]):
        try:
            subprocess.run([*cc, src, "-o", out], check=True, capture_output=True, timeout=300)
            break
        except (OSError, subprocess.SubprocessError):
            continue
    else:
        warn("no C compiler: C reference skipped")
        return {}
    figures: dict[str, float] = {}
    for _ in range(2):  # the C program takes its own best of 5; twice more guards against a noisy moment
        run = subprocess.run([out], check=True, capture_output=True, text=True, timeout=600)
        for line in run.stdout.splitlines():
            rec = json.loads(line)
            figures[rec["figure"]] = max(figures.get(rec["figure"], 0.0), rec["ops_per_s"])
    return figures


def pylibbpf_maps() -> tuple[Any, Any, Any] | None:
    """(object, hash map, array map) of pylibbpf over bench/ref/bench_maps.bpf.c compiled now; None if unusable."""
    try:
        import pylibbpf  # type: ignore[import-not-found]
    except ImportError as exc:
        warn(f"pylibbpf not installed ({exc}): no pylibbpf reference (nox -s bench installs it)")
        return None
    src = os.path.join(HERE, "ref", "bench_maps.bpf.c")
    obj = os.path.join(tempfile.mkdtemp(prefix="ebpf-bench-"), "bench_maps.bpf.o")
    try:
        subprocess.run([*ZIG, "-target", "bpfel-freestanding", "-O2", "-g", "-c", src, "-o", obj], check=True,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        warn(f"cannot compile {src} with ziglang: {exc} {err.decode(errors='replace')[-500:]}")
        return None
    try:
        bpf_obj = pylibbpf.BpfObject(obj)
        bpf_obj.load()
        return bpf_obj, bpf_obj["bench_hash"], bpf_obj["bench_array"]
    except Exception as exc:  # report whatever pylibbpf raises, verbatim
        warn(f"pylibbpf cannot load {obj}: {type(exc).__name__}: {exc}")
        return None


def rate(n: int, fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def measure(sides: dict[str, Callable[[], float] | None]) -> dict[str, float]:
    """Best of ROUNDS for every side, interleaved so that machine noise hits all alike."""
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, fn in sides.items():
            if fn is not None:
                best[name] = max(best.get(name, 0.0), fn())
    return best


def loop_lookup(lookup: Callable[[int], object]) -> Callable[[], float]:
    def run() -> None:
        for i in range(N_OPS):
            lookup(i % N_KEYS)

    return lambda: rate(N_OPS, run)


def loop_update(update: Callable[[int, int], object]) -> Callable[[], float]:
    def run() -> None:
        for i in range(N_OPS):
            update(i % N_KEYS, i)

    return lambda: rate(N_OPS, run)


def loop_delete(delete: Callable[[int], object], refill: Callable[[], object]) -> Callable[[], float]:
    def run() -> None:
        for i in range(N_KEYS):
            delete(i)

    def timed() -> float:
        refill()
        return rate(N_KEYS, run)

    return timed


class Floor:
    """The raw ctypes floor for one map fd."""

    def __init__(self, fd: int, value_words: int = 1) -> None:
        self.key = ctypes.c_uint32()
        self.value = (ctypes.c_uint64 * value_words)()
        self.attr = attrs.MapElemAttr(map_fd=fd, key=ctypes.addressof(self.key), value=ctypes.addressof(self.value))
        self.dattr = attrs.MapElemAttr(map_fd=fd, key=ctypes.addressof(self.key))
        self.fd = fd

    def lookup(self) -> float:
        k, a, sz = self.key, ctypes.addressof(self.attr), ELEM_SIZE
        v = self.value
        one = len(v) == 1

        def run() -> None:
            for i in range(N_OPS):
                k.value = i % N_KEYS
                sc(SYS_BPF, 1, a, sz)
                _ = v[0] if one else v[:]

        return rate(N_OPS, run)

    def update(self) -> float:
        k, v, a, sz = self.key, self.value, ctypes.addressof(self.attr), ELEM_SIZE

        def run() -> None:
            for i in range(N_OPS):
                k.value = i % N_KEYS
                v[0] = i
                sc(SYS_BPF, 2, a, sz)

        return rate(N_OPS, run)

    def delete(self, refill: Callable[[], object]) -> Callable[[], float]:
        k, a, sz = self.key, ctypes.addressof(self.dattr), ELEM_SIZE

        def run() -> None:
            for i in range(N_KEYS):
                k.value = i
                sc(SYS_BPF, 3, a, sz)

        def timed() -> float:
            refill()
            return rate(N_KEYS, run)

        return timed

    def batch_lookup(self, columns: bool) -> Callable[[], float]:
        """BPF_MAP_LOOKUP_BATCH into preallocated buffers; the result as two array.array or as tuples."""
        keys = ctypes.create_string_buffer(N_KEYS * 4)
        vals = ctypes.create_string_buffer(N_KEYS * 8)
        tok_in, tok_out = ctypes.c_uint64(), ctypes.c_uint64()
        attr = attrs.MapBatchAttr(map_fd=self.fd, keys=ctypes.addressof(keys), values=ctypes.addressof(vals),
                                  out_batch=ctypes.addressof(tok_out))

        def run() -> object:
            ko, vo = array.array("I"), array.array("Q")
            out: list[tuple[int, int]] = []
            attr.in_batch = 0
            while True:
                attr.count = N_KEYS
                ret = sc(SYS_BPF, 24, ctypes.addressof(attr), BATCH_SIZE)
                n = attr.count
                kv, vv = memoryview(keys).cast("B")[: 4 * n], memoryview(vals).cast("B")[: 8 * n]
                if columns:
                    ko.frombytes(kv)
                    vo.frombytes(vv)
                else:
                    out.extend(zip(kv.cast("I").tolist(), vv.cast("Q").tolist()))
                if ret < 0:
                    return (ko, vo) if columns else out
                tok_in.value = tok_out.value
                attr.in_batch = ctypes.addressof(tok_in)

        return lambda: rate(N_KEYS, run)

    def batch_update(self) -> float:
        items = {i: i for i in range(N_KEYS)}

        def run() -> None:
            kb = ctypes.create_string_buffer(struct.pack(f"={N_KEYS}I", *items.keys()), N_KEYS * 4)
            vb = ctypes.create_string_buffer(struct.pack(f"={N_KEYS}Q", *items.values()), N_KEYS * 8)
            attr = attrs.MapBatchAttr(map_fd=self.fd, keys=ctypes.addressof(kb), values=ctypes.addressof(vb),
                                      count=N_KEYS)
            sc(SYS_BPF, 26, ctypes.addressof(attr), BATCH_SIZE)

        return rate(N_KEYS, run)

    def iterate(self) -> float:
        cur, nxt = ctypes.c_uint32(), ctypes.c_uint32()
        v = self.value
        first = attrs.MapElemAttr(map_fd=self.fd, key=0, value=ctypes.addressof(nxt))
        step = attrs.MapElemAttr(map_fd=self.fd, key=ctypes.addressof(cur), value=ctypes.addressof(nxt))
        look = attrs.MapElemAttr(map_fd=self.fd, key=ctypes.addressof(nxt), value=ctypes.addressof(v))
        fa, sa, la = ctypes.addressof(first), ctypes.addressof(step), ctypes.addressof(look)

        def run() -> list[tuple[int, int]]:
            out = []
            a = fa
            while sc(SYS_BPF, 4, a, ELEM_SIZE) == 0:
                sc(SYS_BPF, 1, la, ELEM_SIZE)
                out.append((nxt.value, v[0]))
                cur.value = nxt.value
                a = sa
            return out

        return rate(N_KEYS, run)


def emit(figure: str, res: dict[str, float], c: dict[str, float], ref: str, plb_ref: str = "") -> None:
    """One figure: ``res`` has "ours" and optionally "floor" and "pylibbpf" (ops/s)."""
    ours = res["ours"]
    rec: dict[str, object] = {"figure": figure, "ops_per_s": round(ours, 1), "ref": f"c:{ref}"}
    if ref in c:
        rec["ref_ops_per_s"] = round(c[ref], 1)
        rec["ratio"] = round(ours / c[ref], 3)
    if "floor" in res:
        rec["floor_ops_per_s"] = round(res["floor"], 1)
        rec["ratio_floor"] = round(ours / res["floor"], 3)
    if "pylibbpf" in res:
        rec["pylibbpf_ref"] = plb_ref or figure
        rec["pylibbpf_ops_per_s"] = round(res["pylibbpf"], 1)
        rec["ratio_pylibbpf"] = round(ours / res["pylibbpf"], 3)
    rec["python"] = PYTHON
    print(json.dumps(rec), flush=True)


def single_ops(c: dict[str, float], plb: tuple[Any, Any, Any] | None) -> None:
    m = create_hash_map(20_000, key_size=4, value_size=8, name="bench_hash")
    floor = Floor(m.fd)
    items = {i: i for i in range(N_KEYS)}

    def refill() -> None:
        m.update_batch(items)

    ph: Any = plb[1] if plb else None
    pm: Map | None = Map.from_fd(ph.get_fd()) if ph is not None else None  # fills pylibbpf's map fast

    def prefill() -> None:
        assert pm is not None
        pm.update_batch(items)

    res = measure({"floor": floor.update, "ours": loop_update(m.update),
                   "pylibbpf": loop_update(ph.update) if ph else None})
    emit("hash_update", res, c, "hash_update")
    res = measure({"floor": floor.lookup, "ours": loop_lookup(m.lookup),
                   "pylibbpf": loop_lookup(ph.lookup) if ph else None})
    emit("hash_lookup", res, c, "hash_lookup")
    res = measure({"floor": floor.delete(refill), "ours": loop_delete(m.delete, refill),
                   "pylibbpf": loop_delete(ph.delete_elem, prefill) if ph else None})
    emit("hash_delete", res, c, "hash_delete")

    refill()
    if pm is not None:
        prefill()
    plb_items = (lambda: rate(N_KEYS, ph.items)) if ph else None
    res = measure({"floor": floor.batch_lookup(columns=True), "ours": lambda: rate(N_KEYS, m.lookup_batch_columns),
                   "pylibbpf": plb_items})
    emit("batch_lookup", res, c, "batch_lookup", "items")
    res = measure({"floor": floor.batch_lookup(columns=False), "ours": lambda: rate(N_KEYS, m.lookup_batch),
                   "pylibbpf": plb_items})
    emit("batch_lookup_pairs", res, c, "batch_lookup", "items")
    res = measure({"floor": floor.batch_update, "ours": lambda: rate(N_KEYS, lambda: m.update_batch(items))})
    emit("batch_update", res, c, "batch_update")
    res = measure({"floor": floor.iterate, "ours": lambda: rate(N_KEYS, lambda: list(m.items())),
                   "pylibbpf": plb_items})
    emit("items", res, c, "iterate", "items")
    m.close()
    if pm is not None:
        pm.close()


def array_ops(c: dict[str, float], plb: tuple[Any, Any, Any] | None) -> None:
    arr = create_array_map(N_KEYS, value_size=8, name="bench_array")
    floor = Floor(arr.fd)
    pa: Any = plb[2] if plb else None
    res = measure({"floor": floor.lookup, "ours": loop_lookup(arr.lookup),
                   "pylibbpf": loop_lookup(pa.lookup) if pa else None})
    emit("array_lookup", res, c, "array_lookup")
    syscall_floor, plb_lookup = res["floor"], res.get("pylibbpf")

    mm = create_array_map(N_KEYS, value_size=8, name="bench_mmap", mmapable=True)
    view = mm.view()

    def getitem() -> None:
        for i in range(N_OPS):
            mm[i % N_KEYS]

    def setitem() -> None:
        for i in range(N_OPS):
            mm[i % N_KEYS] = i

    def view_lookup() -> None:
        v = view
        for i in range(N_OPS):
            v[i % N_KEYS]

    def view_update() -> None:
        v = view
        for i in range(N_OPS):
            v[i % N_KEYS] = i

    # the floor and pylibbpf of these are the syscall lookups measured just above
    extra = {"floor": syscall_floor, **({"pylibbpf": plb_lookup} if plb_lookup else {})}
    res = measure({"ours": loop_lookup(mm.lookup)})
    emit("mmap_array_lookup", {**res, **extra}, c, "array_lookup", "array_lookup")
    res = measure({"ours": lambda: rate(N_OPS, getitem)})
    emit("mmap_array_getitem", {**res, **extra}, c, "array_lookup", "array_lookup")
    res = measure({"ours": loop_update(mm.update)})
    emit("mmap_array_update", {**res, **extra}, c, "array_lookup", "array_lookup")
    res = measure({"ours": lambda: rate(N_OPS, setitem)})
    emit("mmap_array_setitem", {**res, **extra}, c, "array_lookup", "array_lookup")
    res = measure({"ours": lambda: rate(N_OPS, view_lookup)})
    emit("mmap_array_view_lookup", {**res, **extra}, c, "array_lookup", "array_lookup")
    res = measure({"ours": lambda: rate(N_OPS, view_update)})
    emit("mmap_array_view_update", {**res, **extra}, c, "array_lookup", "array_lookup")
    view.release()
    arr.close()
    mm.close()


def percpu_ops(c: dict[str, float]) -> None:
    m = create_percpu_hash_map(20_000, key_size=4, value_size=8, name="bench_percpu")
    m.update_batch({i: i for i in range(N_KEYS)})
    floor = Floor(m.fd, value_words=cpu_count())
    emit("percpu_hash_lookup", measure({"floor": floor.lookup, "ours": loop_lookup(m.lookup)}), c,
         "percpu_hash_lookup")
    m.close()


def lock_cost() -> None:
    """What a lock would cost per operation (the hot path takes none), for reading the ratios above."""
    import threading

    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release

    def run() -> None:
        for _ in range(N_OPS):
            acquire()
            release()

    def empty() -> None:
        for _ in range(N_OPS):
            pass

    per_op = min(1 / rate(N_OPS, run) - 1 / rate(N_OPS, empty) for _ in range(ROUNDS))
    print(json.dumps({"figure": "lock_acquire_release", "ns_per_op": round(per_op * 1e9, 1), "python": PYTHON}),
          flush=True)


def main() -> None:
    print_interpreter("bench_maps")
    c = c_reference()
    for name, ops in c.items():
        print(json.dumps({"figure": f"c:{name}", "ops_per_s": ops, "python": PYTHON}), flush=True)
    plb = pylibbpf_maps()
    single_ops(c, plb)
    array_ops(c, plb)
    percpu_ops(c)
    lock_cost()


if __name__ == "__main__":
    main()
