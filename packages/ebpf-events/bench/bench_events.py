"""Event reading speed: ring buffer and perf buffer consumers against a C reference.

Events come from an XDP program run with ``test_run(repeat=N)`` that emits one 16-byte
record per run (``bpf_ringbuf_output`` / ``bpf_perf_event_output``).  The ring is filled
first, then one consumer drains it and only the draining is timed (best of ``--rounds``):

- ``ringbuf.callback``: ``RingBuffer.consume(callback)``, one Python call per event (bytes);
- ``ringbuf.callback_zero_copy``: the same with memoryview records;
- ``ringbuf.read_batch``: ``read_batch(65536)`` lists of bytes;
- ``ringbuf.numpy``: ``read_array(dtype)``, a structured array per drain;
- ``ringbuf.c_reference``: ``ref/ringbuf_ref.c`` (raw mmap + epoll, no libbpf, libbpf's
  per-record algorithm with a copy of each record), built with
  ``python3 -m ziglang cc -O2 -target x86_64-linux-gnu`` in this run; it opens the same
  map through a pin on bpffs;
- ``perf.callback``, ``perf.read_batch``, ``perf.numpy``: the perf buffer reader, against
- ``perf.c_reference``: ``ref/perf_ref.c`` (perf_event_open per CPU, raw mmap, wrapped
  records stitched, libbpf's per-ring algorithm), which puts its own rings into the same
  map, waits while this script fills them, then drains.

Prints one JSON line per figure: events/s, the C consumer's events/s, their ratio, the
target ratio from the issue and whether it is met.  Every drain is checked: exactly the
number of events produced, none lost, nothing left in the ring (an error otherwise).
Run as root: ``python3 packages/ebpf-events/bench/bench_events.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CURRENT_CPU = 0xFFFFFFFF
RECORD = [("value", "<u8"), ("seven", "<u8")]


def emit(**fields: Any) -> None:
    """Print one JSON line."""
    print(json.dumps(fields), flush=True)


def ringbuf_program(rb: Any) -> Any:
    """XDP: bpf_ringbuf_output(&rb, &{0x1122, 7}, 16, 0)."""
    from ebpf.core import asm
    from ebpf.core.programs import load_program

    R0, R1, R2, R3, R4, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R10
    insns = [asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7),
             asm.ld_map_fd(R1, rb), asm.mov64(R2, R10), asm.add64(R2, -16), asm.mov64(R3, 16), asm.mov64(R4, 0),
             asm.call("ringbuf_output"), asm.mov64(R0, 2), asm.exit_()]
    return load_program(prog_type="xdp", insns=insns, name="bench_rb", maps=(rb,))


def perf_program(pm: Any) -> Any:
    """XDP: bpf_perf_event_output(ctx, &pm, BPF_F_CURRENT_CPU, &{0x1122, 7}, 16)."""
    from ebpf.core import asm
    from ebpf.core.programs import load_program

    R0, R2, R3, R4, R5, R10 = asm.R0, asm.R2, asm.R3, asm.R4, asm.R5, asm.R10
    insns = [asm.st_mem("dw", R10, -16, 0x1122), asm.st_mem("dw", R10, -8, 7),
             asm.ld_map_fd(R2, pm), asm.ld_imm64(R3, CURRENT_CPU), asm.mov64(R4, R10), asm.add64(R4, -16),
             asm.mov64(R5, 16), asm.call("perf_event_output"), asm.mov64(R0, 2), asm.exit_()]
    return load_program(prog_type="xdp", insns=insns, name="bench_perf", maps=(pm,))


def fill(prog: Any, n: int) -> None:
    """Run ``prog`` ``n`` times (in chunks so a run never exceeds the kernel's test-run time slice)."""
    left = n
    while left:
        chunk = min(left, 1_000_000)
        prog.test_run(bytes(64), repeat=chunk)
        left -= chunk


def best_rate(rounds: int, n: int, prog: Any, drain: Callable[[], int]) -> float:
    """Best events/s of ``rounds`` fill-then-drain rounds (only the drain is timed)."""
    best = 0.0
    for _ in range(rounds):
        fill(prog, n)
        t0 = time.perf_counter()
        got = drain()
        dt = time.perf_counter() - t0
        if got != n:
            raise RuntimeError(f"drained {got} events, expected {n}")
        best = max(best, n / dt)
    return best


def build_reference(workdir: str, name: str) -> str | None:
    """Compile ref/<name>.c with the ziglang toolchain; None (and a JSON error line) when that fails."""
    out = os.path.join(workdir, name)
    cmd = [sys.executable, "-m", "ziglang", "cc", "-O2", "-target", "x86_64-linux-gnu",
           os.path.join(HERE, "ref", f"{name}.c"), "-o", out]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or exc
        emit(bench=f"{name}.build", error=f"cannot build the C reference: {detail}")
        return None
    return out


class Pinned:
    """``m`` pinned on bpffs for the life of the ``with`` block (how the C consumers open the same map)."""

    def __init__(self, m: Any, tag: str) -> None:
        from ebpf.core.system import ensure_bpf_fs

        self.m = m
        self.path = os.path.join(ensure_bpf_fs(), f"ebpf-bench-{tag}-{os.getpid()}")

    def __enter__(self) -> str:
        self.m.pin(self.path)
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


def c_ringbuf(binary: str, rb: Any, prog: Any, n: int, rounds: int) -> float:
    """Best events/s of the C ring buffer consumer draining ``rb`` (filled first) through a bpffs pin."""
    best = 0.0
    with Pinned(rb, "rb") as pin:
        for _ in range(rounds):
            fill(prog, n)
            res = json.loads(subprocess.run([binary, pin, str(n)], check=True, capture_output=True,
                                            text=True).stdout)
            if res["events"] != n:
                raise RuntimeError(f"C ring buffer consumer drained {res['events']} events, expected {n}")
            best = max(best, n / (res["ns"] / 1e9))
    return best


def c_perf(binary: str, pm: Any, prog: Any, n: int, rounds: int, pages: int, watermark: int) -> float:
    """Best events/s of the C perf consumer: it opens its per-CPU rings into ``pm``, we fill, it drains."""
    best = 0.0
    with Pinned(pm, "perf") as pin:
        for _ in range(rounds):
            proc = subprocess.Popen([binary, pin, str(pages), str(watermark), str(n)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdin is not None and proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("C perf consumer did not start")
                fill(prog, n)
                proc.stdin.write("go\n")
                proc.stdin.flush()
                res = json.loads(proc.stdout.readline())
            finally:
                proc.communicate(timeout=60)
            if res["events"] != n or res["lost"]:
                raise RuntimeError(f"C perf consumer drained {res['events']} events ({res['lost']} lost), "
                                   f"expected {n}")
            best = max(best, n / (res["ns"] / 1e9))
    return best


class Report:
    """Prints one JSON line per figure with its ratio to the C consumer of the same kind of ring."""

    def __init__(self, kind: str, n: int, ref: float | None) -> None:
        self.kind, self.n, self.ref = kind, n, ref

    def __call__(self, name: str, rate: float, target: float | None, **extra: Any) -> None:
        ratio = rate / self.ref if self.ref else None
        emit(bench=f"{self.kind}.{name}", python=sys.executable, events=self.n, events_per_s=round(rate),
             c_events_per_s=round(self.ref) if self.ref else None,
             ratio=round(ratio, 4) if ratio is not None else None,
             target_ratio=target, met=(ratio >= target) if ratio is not None and target is not None else None,
             totals_checked=True, **extra)


def drain_batches(read: Callable[[int], list[Any]]) -> int:
    """Call ``read(65536)`` until it returns nothing; the number of records read."""
    total = 0
    while True:
        got = len(read(65536))
        if not got:
            return total
        total += got


def bench_ringbuf(args: argparse.Namespace, workdir: str) -> None:
    """Ring buffer figures against the C ring buffer consumer."""
    from ebpf.core.maps import create_ringbuf_map
    from ebpf.events.ringbuf import RingBuffer

    n, rounds = args.events, args.rounds
    size = 1 << max(22, (n * 24 * 2 - 1).bit_length())
    with create_ringbuf_map(size, name="bench_rb") as rbm, ringbuf_program(rbm) as prog:
        ref = None
        binary = build_reference(workdir, "ringbuf_ref")
        if binary is not None:
            ref = c_ringbuf(binary, rbm, prog, n, rounds)
            emit(bench="ringbuf.c_reference", python=sys.executable, events=n, events_per_s=round(ref), ratio=1.0)
        report = Report("ringbuf", n, ref)

        def noop(record: Any) -> None:
            pass

        def checked(rb: RingBuffer, drain: Callable[[], int]) -> Callable[[], int]:
            def run() -> int:
                got = drain()
                if rb.available():  # every record consumed, the consumer position published
                    raise RuntimeError(f"{rb.available()} bytes left in the ring after the drain")
                return got
            return run

        with RingBuffer(rbm, noop) as rb:
            report("callback", best_rate(rounds, n, prog, checked(rb, rb.consume)), 0.02)
        with RingBuffer(rbm, noop, zero_copy=True) as rb:
            report("callback_zero_copy", best_rate(rounds, n, prog, checked(rb, rb.consume)), None)
        with RingBuffer(rbm) as rb:
            report("read_batch", best_rate(rounds, n, prog, checked(rb, lambda: drain_batches(rb.read_batch))),
                   0.03)
            try:
                import numpy as np
            except ImportError:
                emit(bench="ringbuf.numpy", skipped="NumPy is not installed (pip install ebpf-events[numpy])")
                return
            dtype = np.dtype(RECORD)
            report("numpy", best_rate(rounds, n, prog, checked(rb, lambda: len(rb.read_array(dtype)))), 0.5)


def bench_perf(args: argparse.Namespace, workdir: str) -> None:
    """Perf buffer figures against the C perf consumer."""
    from ebpf.events.perf import PerfBuffer, create_perf_event_array

    n, rounds = args.events // 2, args.rounds
    pages = 1 << max(4, (n * 32 * 2 // 4096 - 1).bit_length())  # every event may land on one CPU
    # A watermark instead of a wake-up per sample: the fill is not timed, and a wake-up
    # (an IPI) per sample would make it slow.
    watermark = pages * 4096 // 2
    with create_perf_event_array(name="bench_perf") as pm, perf_program(pm) as prog:
        ref = None
        binary = build_reference(workdir, "perf_ref")
        if binary is not None:
            ref = c_perf(binary, pm, prog, n, rounds, pages, watermark)
            emit(bench="perf.c_reference", python=sys.executable, events=n, events_per_s=round(ref), ratio=1.0)
        report = Report("perf", n, ref)

        def noop(data: bytes) -> None:
            pass

        with PerfBuffer(pm, noop, buffer_pages=pages, watermark_bytes=watermark) as pb:
            def checked(drain: Callable[[], int]) -> Callable[[], int]:
                def run() -> int:
                    got = drain()
                    if pb.lost:
                        raise RuntimeError(f"{pb.lost} samples lost")
                    if pb.consume(max_events=1):
                        raise RuntimeError("samples left in the rings after the drain")
                    return got
                return run

            report("callback", best_rate(rounds, n, prog, checked(pb.consume)), 0.026, lost=pb.lost)
            report("read_batch", best_rate(rounds, n, prog, checked(lambda: drain_batches(pb.read_batch))), None,
                   lost=pb.lost)
            try:
                import numpy as np
            except ImportError:
                emit(bench="perf.numpy", skipped="NumPy is not installed (pip install ebpf-events[numpy])")
                return
            dtype = np.dtype(RECORD)
            report("numpy", best_rate(rounds, n, prog, checked(lambda: len(pb.read_array(dtype)))), 0.3,
                   lost=pb.lost)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; one JSON line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per ring buffer round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the best is reported)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_events.py needs root (BPF programs and maps)", file=sys.stderr)
        return 2
    emit(bench="environment", python=sys.executable, base_prefix=sys.base_prefix, version=platform.python_version(),
         implementation=platform.python_implementation(), kernel=platform.release(), cpus=os.cpu_count())
    workdir = tempfile.mkdtemp(prefix="ebpf-bench-events-")
    try:
        bench_ringbuf(args, workdir)
        bench_perf(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
