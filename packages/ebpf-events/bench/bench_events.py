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
- ``perf.callback``, ``perf.read_batch``, ``perf.numpy``: the perf buffer reader.

Prints one JSON line per figure (events/s, ratio to the C reference, the target).
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


def build_reference(workdir: str) -> str | None:
    """Compile ref/ringbuf_ref.c with the ziglang toolchain; None when it is not installed."""
    out = os.path.join(workdir, "ringbuf_ref")
    cmd = [sys.executable, "-m", "ziglang", "cc", "-O2", "-target", "x86_64-linux-gnu",
           os.path.join(HERE, "ref", "ringbuf_ref.c"), "-o", out]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        emit(bench="ringbuf.c_reference", error=f"cannot build the C reference: {exc}")
        return None
    return out


def c_reference(binary: str, rb: Any, prog: Any, n: int, rounds: int) -> float:
    """Best events/s of the C consumer draining ``rb`` through a bpffs pin."""
    from ebpf.core.system import ensure_bpf_fs

    pin = os.path.join(ensure_bpf_fs(), f"ebpf-bench-events-{os.getpid()}")
    rb.pin(pin)
    try:
        best = 0.0
        for _ in range(rounds):
            fill(prog, n)
            res = json.loads(subprocess.run([binary, pin, str(n)], check=True, capture_output=True,
                                            text=True).stdout)
            if res["events"] != n:
                raise RuntimeError(f"C reference drained {res['events']} events, expected {n}")
            best = max(best, n / (res["ns"] / 1e9))
        return best
    finally:
        os.unlink(pin)


def bench_ringbuf(args: argparse.Namespace, workdir: str) -> None:
    """Ring buffer figures and the C reference."""
    from ebpf.core.maps import create_ringbuf_map
    from ebpf.events.ringbuf import RingBuffer

    n, rounds = args.events, args.rounds
    size = 1 << max(22, (n * 24 * 2 - 1).bit_length())
    with create_ringbuf_map(size, name="bench_rb") as rbm, ringbuf_program(rbm) as prog:
        ref = None
        binary = build_reference(workdir)
        if binary is not None:
            ref = c_reference(binary, rbm, prog, n, rounds)
            emit(bench="ringbuf.c_reference", events=n, events_per_s=round(ref), ratio_to_c=1.0)

        def report(name: str, rate: float, target: str, ok: bool | None) -> None:
            emit(bench=f"ringbuf.{name}", events=n, events_per_s=round(rate),
                 ratio_to_c=round(rate / ref, 3) if ref else None, target=target, met=ok)

        def noop(record: Any) -> None:
            pass

        with RingBuffer(rbm, noop) as rb:
            rate = best_rate(rounds, n, prog, rb.consume)
            report("callback", rate, ">= 1,000,000 events/s", rate >= 1e6)
        with RingBuffer(rbm, noop, zero_copy=True) as rb:
            rate = best_rate(rounds, n, prog, rb.consume)
            report("callback_zero_copy", rate, ">= 1,000,000 events/s", rate >= 1e6)
        with RingBuffer(rbm) as rb:
            def batches() -> int:
                total = 0
                while True:
                    got = len(rb.read_batch(65536))
                    if not got:
                        return total
                    total += got

            report("read_batch", best_rate(rounds, n, prog, batches), "", None)
            try:
                import numpy as np
            except ImportError:
                emit(bench="ringbuf.numpy", skipped="NumPy is not installed (pip install ebpf-events[numpy])")
                return
            dtype = np.dtype(RECORD)
            rate = best_rate(rounds, n, prog, lambda: len(rb.read_array(dtype)))
            report("numpy", rate, ">= 0.5 x C reference", rate >= 0.5 * ref if ref else None)


def bench_perf(args: argparse.Namespace) -> None:
    """Perf buffer figures."""
    from ebpf.events.perf import PerfBuffer, create_perf_event_array

    n, rounds = args.events // 2, args.rounds
    pages = 1 << max(4, (n * 32 * 2 // 4096 - 1).bit_length())  # every event may land on one CPU
    with create_perf_event_array(name="bench_perf") as pm, perf_program(pm) as prog:
        def noop(data: bytes) -> None:
            pass

        # A watermark instead of a wake-up per sample: the fill is not timed, and a wake-up
        # (an IPI) per sample would make it slow.
        with PerfBuffer(pm, noop, buffer_pages=pages, watermark_bytes=pages * 4096 // 2) as pb:
            rate = best_rate(rounds, n, prog, pb.consume)
            emit(bench="perf.callback", events=n, events_per_s=round(rate), target=">= 500,000 events/s",
                 met=rate >= 5e5, lost=pb.lost)

            def batches() -> int:
                total = 0
                while True:
                    got = len(pb.read_batch(65536))
                    if not got:
                        return total
                    total += got

            rate = best_rate(rounds, n, prog, batches)
            emit(bench="perf.read_batch", events=n, events_per_s=round(rate), target=">= 500,000 events/s",
                 met=rate >= 5e5, lost=pb.lost)
            try:
                import numpy as np
            except ImportError:
                return
            dtype = np.dtype(RECORD)
            rate = best_rate(rounds, n, prog, lambda: len(pb.read_array(dtype)))
            emit(bench="perf.numpy", events=n, events_per_s=round(rate), lost=pb.lost)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; one JSON line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per ring buffer round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the best is reported)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_events.py needs root (BPF programs and maps)", file=sys.stderr)
        return 2
    emit(bench="environment", python=sys.executable, version=platform.python_version(),
         implementation=platform.python_implementation(), kernel=platform.release(), cpus=os.cpu_count())
    workdir = tempfile.mkdtemp(prefix="ebpf-bench-events-")
    try:
        bench_ringbuf(args, workdir)
        bench_perf(args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
