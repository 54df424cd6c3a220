"""``ebpf demo``: a tour of what is installed, run as root in well under a minute.

Core's own part needs only ebpf-core and a BPF-capable kernel: it creates a hash map,
assembles an XDP program that counts packets by length in that map, runs it on made-up
packets with BPF_PROG_TEST_RUN (no network needed), and shows what the kernel counted.
Installed plugins add their parts through the ``ebpf_demo_steps`` hook (ebpf-events: an
execve tracer; ebpf-net: namespaces + veth with XDP/TC, a cgroup connect() blocker).  At the
end the demo lists the programs it loaded and prints a one-screen summary; every object a
step created is released afterwards, even on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from ebpf.core._cli._signals import sigterm_as_interrupt
from ebpf.core.demo import DemoContext, DemoStep

__all__ = ["add_commands", "build_program", "core_step", "run_demo", "OPTIONAL_PARTS"]

XDP_PASS = 2
#: (packet length, how many runs) fed to the program.
PACKETS = ((64, 1000), (128, 250), (1500, 10))
#: What each first-party plugin adds to the demo, shown when it is not installed.
OPTIONAL_PARTS = {
    "ebpf-events": "an execve tracer (tracepoint + ring buffer) showing the process launches it triggers",
    "ebpf-net": "two network namespaces joined by a veth pair with an XDP counter and a TC drop filter, "
    "and a cgroup program that makes connect() fail with EPERM",
}


def build_program(counts: Any) -> list[Any]:
    """The XDP program: ``counts[packet length] += 1``, then XDP_PASS.

    :param counts: the hash map (u32 key, u64 value) the program updates.
    :returns: the instructions (for ``load_program(insns=...)``).
    """
    from ebpf.core import asm  # deferred: start-up time (only this command needs it)

    R0, R1, R2, R3, R4, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
    return [
        # key = ctx->data_end - ctx->data, kept on the stack at fp-4
        asm.ldx_mem("w", R2, R1, 4),
        asm.ldx_mem("w", R3, R1, 0),
        asm.sub64(R2, R3),
        asm.stx_mem("w", R10, R2, -4),
        # value = bpf_map_lookup_elem(&counts, &key)
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "first"),
        # seen before: *value += 1, atomically (XDP may run on several CPUs at once)
        asm.mov64(R6, 1),
        asm.atomic_add("dw", R0, R6, 0),
        asm.jmp_a("out"),
        # first packet of this length: counts[key] = 1
        asm.label("first"),
        asm.st_mem("dw", R10, -16, 1),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.mov64(R3, R10),
        asm.add64(R3, -16),
        asm.mov64(R4, 0),
        asm.call("map_update_elem"),
        asm.label("out"),
        asm.mov64(R0, XDP_PASS),
        asm.exit_insn(),
    ]


def _num(value: Any, fmt: str) -> int:
    if isinstance(value, (bytes, bytearray)):
        return int(struct.unpack(fmt, bytes(value))[0])
    return int(value)


def core_step(ctx: DemoContext) -> None:
    """Core's part: a hash map, an assembled XDP program, test runs, and what it counted.

    :param ctx: the demo context (output, cleanups, summary).
    :raises EBPFError: when the kernel refuses the map or the program.
    """
    from ebpf.core import asm  # deferred: start-up time (only this command needs it)
    from ebpf.core.maps import create_map  # deferred: start-up time (only this command needs it)
    from ebpf.core.programs import load_program  # deferred: start-up time (only this command needs it)

    counts = create_map(map_type="hash", key_size=4, value_size=8, max_entries=64, name="demo_counts")
    ctx.defer(counts.close, "close map demo_counts")
    ctx.print(f"created hash map {counts.name!r} (u32 packet length -> u64 count), id {counts.info().id}")
    insns = build_program(counts)
    prog = ctx.track(load_program(prog_type="xdp", insns=insns, name="demo_xdp", maps=(counts,)))
    ctx.defer(prog.close, "close program demo_xdp")
    info = prog.info()
    count = sum(1 for i in insns if isinstance(i, asm.Instruction))
    ctx.print(f"assembled and loaded XDP program {prog.name!r}: {count} instructions, id {info.id}, tag {info.tag}")
    rows = []
    for length, repeat in PACKETS:
        result = prog.test_run(bytes(length), repeat=repeat)
        verdict = "XDP_PASS" if result.retval == XDP_PASS else f"retval {result.retval}"
        rows.append([length, repeat, verdict, result.duration_ns])
    ctx.table(["PACKET_BYTES", "RUNS", "VERDICT", "NS_PER_RUN"], rows, "ran it on test packets with BPF_PROG_TEST_RUN:")
    seen = {_num(k, "<I"): _num(v, "<Q") for k, v in counts.items()}
    ctx.table(["PACKET_BYTES", "COUNT"], sorted(seen.items()), f"what the program counted in {counts.name!r}:")
    expected = {length: repeat for length, repeat in PACKETS}
    if seen != expected:
        raise AssertionError(f"counts do not match the runs: got {seen}, expected {expected}")
    total = sum(expected.values())
    ctx.summary(f"core: XDP program counted {total} test-run packets by length in a hash map (counts match)")


#: Core's own step, first in the tour.
CORE_STEP = DemoStep("core", "maps, the assembler and BPF_PROG_TEST_RUN (ebpf-core)", core_step, order=10,
                     distribution="ebpf-core")


@contextlib.contextmanager
def _run_stats() -> Iterator[None]:
    """Switch run-time statistics on, so the listing shows how often each program ran."""
    from ebpf.core.errors import EBPFError  # deferred: start-up time (only this command needs it)
    from ebpf.core.links import Stats  # deferred: start-up time (only this command needs it)

    try:
        stats = Stats()
    except EBPFError:  # an old kernel: the listing shows zeros
        yield
        return
    try:
        yield
    finally:
        stats.close()


def _list_programs(ctx: DemoContext) -> None:
    from ebpf.core._cli._objects import _PROG_COLUMNS  # deferred: start-up time (only this command needs it)
    from ebpf.core.programs import programs  # deferred: start-up time (only this command needs it)

    wanted = set(ctx.program_ids)
    infos = sorted((p for p in programs() if p.id in wanted), key=lambda p: p.id)
    cols = [c for c in _PROG_COLUMNS if c != "btf_id" and infos and hasattr(infos[0], c)]  # one screen wide
    ctx.table([c.upper() for c in cols], [[getattr(i, c, "") for c in cols] for i in infos],
              "what the demo loaded (`ebpf prog list`, filtered to the demo's programs):")


def _select(steps: list[DemoStep], only: Sequence[str] | None) -> list[DemoStep]:
    if not only:
        return steps
    from ebpf.core.errors import EBPFError  # deferred: start-up time (only this command needs it)

    known = {s.name for s in steps}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise EBPFError(f"unknown demo step(s) {', '.join(unknown)}; available: {', '.join(sorted(known))}")
    return [s for s in steps if s.name in only]


def _run_step(ctx: DemoContext, number: int, step: DemoStep, results: list[tuple[str, str]]) -> None:
    from ebpf.core.errors import NotSupportedError  # deferred: start-up time (only this command needs it)

    ctx.heading(f"{number}. {step.title}")
    started = time.monotonic()
    try:
        step.run(ctx)
    except NotSupportedError as exc:  # UnsupportedFeatureError included: this machine cannot show it
        ctx.print(f"skipped: {exc}")
        results.append((step.name, f"skipped ({exc})"))
        return
    except KeyboardInterrupt:
        results.append((step.name, "interrupted"))
        raise
    except Exception as exc:
        ctx.print(f"FAILED: {type(exc).__name__}: {exc}")
        results.append((step.name, f"FAILED ({type(exc).__name__}: {exc})"))
        return
    results.append((step.name, f"ok ({time.monotonic() - started:.1f}s)"))


def run_demo(out: TextIO | None = None, live: bool | None = None, duration: float = 2.0,
             only: Sequence[str] | None = None) -> int:
    """Run the tour: core's part, then every plugin's :class:`~ebpf.core.demo.DemoStep`, the
    listing of what was loaded and a summary; everything created is released at the end.

    :param out: where to print (default stdout).
    :param live: live ``rich`` display (None: when ``out`` is a terminal and rich is installed).
    :param duration: seconds each event-watching step may spend.
    :param only: run only the steps with these names.
    :returns: the exit status: 0 when every step worked or was skipped as unsupported, 1 otherwise.
    :raises KeyboardInterrupt: after cleaning up, when interrupted.
    """
    from ebpf.core import plugins  # deferred: start-up time (only this command needs it)
    from ebpf.core.system import kernel_version  # deferred: start-up time (only this command needs it)

    ctx = DemoContext(out=out, live=live, duration=duration)
    steps = _select([CORE_STEP, *plugins.demo_steps()], only)
    results: list[tuple[str, str]] = []
    cleanup_failures: list[str] = []
    ctx.print(f"ebpf demo on Linux {'.'.join(map(str, kernel_version()))}: {len(steps)} part(s)")
    started = time.monotonic()
    with sigterm_as_interrupt(), _run_stats():  # also when called as a function, not through main()
        try:
            for number, step in enumerate(steps, 1):
                _run_step(ctx, number, step, results)
            ctx.heading(f"{len(steps) + 1}. what was loaded")
            _list_programs(ctx)
        except KeyboardInterrupt:
            ctx.print("interrupted: cleaning up")
            raise
        finally:
            cleanup_failures = ctx.run_cleanups()
            ctx.print(f"released everything the demo created ({len(cleanup_failures)} cleanup failure(s))")
            for failure in cleanup_failures:
                ctx.print(f"  cleanup failed: {failure}")
    _summary(ctx, steps, results, time.monotonic() - started)
    failed = any(r.startswith("FAILED") for _, r in results) or bool(cleanup_failures)
    return 1 if failed else 0


def _summary(ctx: DemoContext, steps: list[DemoStep], results: list[tuple[str, str]], elapsed: float) -> None:
    ctx.heading(f"summary ({elapsed:.1f}s)")
    ctx.table(["PART", "RESULT"], results)
    for line in ctx.summaries:
        ctx.print(f"- {line}")
    present = {s.distribution for s in steps}
    for dist, what in OPTIONAL_PARTS.items():
        if dist not in present:
            ctx.print(f"+ pip install {dist} to add {what}")


def _demo(args: argparse.Namespace) -> int:
    live = {"auto": None, "yes": True, "no": False}[args.live]
    return run_demo(live=live, duration=args.duration, only=args.only)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the ``ebpf`` parser."""
    p = sub.add_parser("demo", help="a self-contained tour of everything installed (root; cleans up after itself)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds each event-watching part runs (default 2)")
    p.add_argument("--live", choices=("auto", "yes", "no"), default="auto",
                   help="live terminal display (auto: when stdout is a terminal and rich is installed)")
    p.add_argument("--only", nargs="+", metavar="PART", help="run only these parts (core, trace-exec, network, ...)")
    p.set_defaults(func=_demo)
