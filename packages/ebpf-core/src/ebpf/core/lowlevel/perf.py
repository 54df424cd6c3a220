"""``perf_event_open(2)`` for plugin packages: ``struct perf_event_attr``, the syscall and the ioctls BPF needs.

The supported home of what ``ebpf.core._sys.perf`` implements (see :mod:`ebpf.core.lowlevel`):
tracepoint, kprobe/uprobe PMU and perf_event attachments, and perf buffers, are built on it.
"""

from __future__ import annotations

from ebpf.core._sys import perf as _perf
from ebpf.core._sys.perf import *  # noqa: F403  (the names of this module are those of _sys.perf's __all__)

__all__: list[str] = []
__all__ += _perf.__all__
