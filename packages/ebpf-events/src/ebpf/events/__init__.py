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
- :mod:`ebpf.events.userringbuf`: :class:`~ebpf.events.userringbuf.UserRingBuffer`, Python producing
  samples a program drains with ``bpf_user_ringbuf_drain``.
- :mod:`ebpf.events.hist`: :class:`~ebpf.events.hist.Histogram` read from a map, printed as bcc does.
- :mod:`ebpf.events.printk`: :class:`~ebpf.events.printk.TracePipe` and ``trace_print`` for ``bpf_printk`` output.
- :mod:`ebpf.events.symbols`: addresses to names (kallsyms, ELF symbols and debug files, perf maps):
  ``ksym``, ``usym``, ``symbolize``, :class:`~ebpf.events.symbols.ProcessSymbols`.
- :mod:`ebpf.events.profile`: :class:`~ebpf.events.profile.Profiler` (CPU) and
  :class:`~ebpf.events.profile.OffCpuProfiler`, folded stacks and flame graphs (``ebpf trace profile|offcpu``).

The package registers with ebpf-core through the ``ebpf`` entry-point group
(``ebpf.events.plugin``), so ``program.attach("syscalls:sys_enter_execve")`` and
``ebpf.core.open_events(ringbuf_map)`` work once it is installed.  Submodules are imported
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = ["ringbuf", "perf", "tracing", "tracers", "iterators", "userringbuf", "hist", "printk", "symbols", "profile"]
#: Names re-exported from a submodule, imported on first use.
_NAMES = {"attach_iter": "iterators", "IterLink": "iterators", "UserRingBuffer": "userringbuf",
          "Histogram": "hist", "TracePipe": "printk", "trace_print": "printk"}
__all__ = [*_MODULES, *_NAMES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        module = importlib.import_module(f"ebpf.events.{name}")
        globals()[name] = module
        return module
    if name in _NAMES:
        value = getattr(importlib.import_module(f"ebpf.events.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ebpf.events' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
