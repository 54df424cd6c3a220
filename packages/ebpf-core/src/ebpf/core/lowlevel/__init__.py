"""The supported low-level API for plugin packages: the ``bpf()`` command wrappers and their structures.

ebpf-net, ebpf-events, ebpf-security, ebpf-elf and third-party plugins use this module (and
:mod:`ebpf.core.lowlevel.perf` for ``perf_event_open``) for the commands core does not wrap in
objects, instead of the private ``ebpf.core._sys``: a plugin package is built exactly as a third
party would build one.  The names here are a promise within a major version of ebpf-core, as the
names of API.md are.

- one function per bpf command (:func:`prog_attach`, :func:`prog_query`, :func:`link_create`, ...),
  each raising :class:`~ebpf.core.errors.BPFSyscallError` with the kernel's errno;
- one ``ctypes.Structure`` per command's ``union bpf_attr`` member (``MapCreateAttr``, ...), per
  info record (``ProgInfo``, ``LinkInfo``, ...) and per variant of their per-type unions
  (``LinkCreateKprobeMulti``, ``LinkCreateNetfilter``, ``LinkInfoPerfEvent``, ...: pass one as
  ``link_create(..., extra=...)``), every layout checked against the kernel's BTF by ebpf-core's
  ``test_sys_layout.py``;
- :func:`bpf` itself with :class:`Cmd`, for commands that have no wrapper yet.
"""

from __future__ import annotations

from ebpf.core._sys import attrs as _attrs
from ebpf.core._sys import commands as _commands
from ebpf.core._sys import unions as _unions
from ebpf.core._sys.attrs import *  # noqa: F403  (the names of this module are those of the _sys modules' __all__)
from ebpf.core._sys.commands import *  # noqa: F403
from ebpf.core._sys.syscall import SYS_BPF, Cmd, bpf, check, close_fd, get_errno, raw_syscall
from ebpf.core._sys.unions import *  # noqa: F403

__all__ = ["Cmd", "bpf", "check", "close_fd", "get_errno", "raw_syscall", "SYS_BPF"]
__all__ += _commands.__all__
__all__ += _attrs.__all__
__all__ += _unions.__all__
