"""ebpf-events's part of ``ebpf demo``: an execve tracer (tracepoint + ring buffer) watching
the process launches the demo triggers itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

__all__ = ["exec_step", "LAUNCHES"]

#: The commands the step launches (each must exist on a minimal system; missing ones are skipped).
LAUNCHES = (("true",), ("uname", "-r"), ("id", "-u"), ("sleep", "0"), ("date", "+%s"))


def exec_step(ctx: Any) -> None:
    """Load and attach the execve tracer, launch a few processes, show them as the kernel reports them.

    :param ctx: the :class:`ebpf.core.demo.DemoContext`.
    :raises AssertionError: when a launch was not seen.
    """
    from ebpf.events.tracers import exec_tracer

    tracer = exec_tracer()
    ctx.defer(tracer.close, "detach the execve tracer")
    ctx.track(tracer.program)
    ctx.print(f"loaded tracepoint program {tracer.program.name!r} (id {tracer.program.info().id}) on "
              f"{tracer.tracepoint}, events through a {tracer.map.max_entries // 1024} KiB ring buffer")
    me = os.getpid()
    commands = [[path, *rest] for cmd, *rest in LAUNCHES if (path := shutil.which(cmd))]
    launched: set[int] = set()
    seen: set[int] = set()
    gap = max(ctx.duration, 0.2) / (len(commands) + 1)
    def show(events: list[Any]) -> None:
        for event in events:
            if event.ppid == me or event.pid in launched:
                seen.add(event.pid)
                view.add_row(event.pid, event.ppid, event.uid, event.comm, event.filename)

    with ctx.live_table(["PID", "PPID", "UID", "COMM", "FILENAME"], "process launches seen by the tracer:") as view:
        for argv in commands:  # one launch per time slot, so a terminal shows them arrive
            slot_end = time.monotonic() + gap
            child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            launched.add(child.pid)
            child.wait()
            while (left := slot_end - time.monotonic()) > 0:
                show(tracer.poll(min(left, 0.1) * 1000))
        deadline = time.monotonic() + 1.0
        while not launched <= seen and time.monotonic() < deadline:
            show(tracer.poll(100))
    missed = launched - seen
    if missed:
        raise AssertionError(f"the tracer missed {len(missed)} of {len(launched)} launches")
    ctx.summary(f"ebpf-events: execve tracer (tracepoint + ring buffer) saw all {len(launched)} launches it triggered")
