"""ebpf-events: ring buffer and perf buffer readers, and tracing attach for ebpf-core.

``from ebpf.events import ringbuf, perf, tracing``:

- :mod:`ebpf.events.ringbuf`: :class:`~ebpf.events.ringbuf.RingBuffer` (zero-copy, batched,
  NumPy bulk, asyncio), :class:`~ebpf.events.ringbuf.RingBufferConsumer` (background thread).
- :mod:`ebpf.events.perf`: :class:`~ebpf.events.perf.PerfBuffer`,
  :class:`~ebpf.events.perf.PerfConsumer` (lost samples counted, never hidden).
- :mod:`ebpf.events.tracing`: tracepoints, raw tracepoints, tp_btf, fentry/fexit, kprobes,
  uprobes, USDT, perf_event programs; every attach returns a core ``Link``.
- :mod:`ebpf.events.tracers`: ready-made exec, open and tcp-connect tracers (``ebpf trace``).
- :mod:`ebpf.events.iterators`: BPF iterators (``attach_iter`` -> ``IterLink``, read as a file).

The package registers with ebpf-core through the ``ebpf`` entry-point group
(``ebpf.events.plugin``), so ``program.attach("syscalls:sys_enter_execve")`` and
``ebpf.core.open_events(ringbuf_map)`` work once it is installed.  Submodules are imported
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ringbuf", "perf", "tracing", "tracers", "iterators"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f"ebpf.events.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ebpf.events' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
