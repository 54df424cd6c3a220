"""An on-disk cache of CO-RE relocation results, so a fresh process need not read the kernel's BTF.

A load of a CO-RE object reads and indexes ``/sys/kernel/btf/vmlinux`` (5 MB) to compute a
few dozen numbers.  Those numbers are a pure function of

- the object's relocation records and its own BTF (hashed here, not the file's path),
- the kernel's BTF: :func:`ebpf.core.btf.cache.kernel_btf_identity` (the boot: the running
  kernel's BTF cannot change until the next one; the kernel release; the identity of
  ``/sys/kernel/btf/vmlinux``),
- the code that computes them: the format version below and the size and mtime of the
  modules doing the work (a new release or an edit changes them),

and all of those go into the file's name (a blake2b digest), which is stored again inside the
file and checked, so an answer is never stale: a reboot, another kernel, another object or
another loader looks up another file.  Only the running kernel's BTF is cached (not
``btf_path=``); typeless ``__ksym`` addresses (``/proc/kallsyms``, moved by KASLR) are never
cached; errors are never cached (nothing is written unless every relocation succeeded).
The directory is :func:`ebpf.core.btf.cache.cache_dir` (``$EBPF_CACHE_DIR``; ``""`` turns it
off).  A file that is unreadable, short, foreign or inconsistent is ignored and rewritten;
failing to read or write it is never an error.
"""

from __future__ import annotations

import marshal
import os
import struct
import sys
from typing import TYPE_CHECKING, Any

from ebpf.core.records import write_cache_file

if TYPE_CHECKING:
    from ebpf.elf.core_relo import CoreData

__all__ = ["CoreCache", "FORMAT"]

#: Bumped when what is stored, or how it is computed, changes.
FORMAT = 1
_MAGIC = b"EBPFCORE"

# (value, poison, orig_size, new_size, reason) of a CoreResult.
Result = tuple[int, bool, int, int, str]


def _code_identity() -> bytes | None:
    """The loader's version: the format and the modules that compute the results."""
    from ebpf.core.btf import spec as btf_spec
    from ebpf.core.btf import types as btf_types
    from ebpf.elf import core_relo

    parts = [b"format %d" % FORMAT, sys.implementation.cache_tag.encode(), b"marshal %d" % marshal.version]
    for module in (core_relo, btf_spec, btf_types, sys.modules[__name__]):
        path = getattr(module, "__file__", None)
        if not path:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        parts.append(b"%s:%d:%d" % (os.fsencode(path), st.st_size, st.st_mtime_ns))
    return b"\0".join(parts)


def _inputs(data: CoreData) -> bytes:
    """The relocation records and the object's BTF: everything the results depend on from the object."""
    out = [data.local.data if data.local is not None else b"-"]
    for name in sorted(data.relos):
        out.append(b"R" + name.encode())
        out.append(b"".join(struct.pack("<iIIII", idx, r.insn_off, r.type_id, r.access_str_off, r.kind)
                            for idx, r in data.relos[name]))
    for name in sorted(data.externs):
        out.append(b"E" + name.encode())
        for e in data.externs[name]:
            out.append(b"%d:%s:%s:%d" % (e.insn, e.name.encode(), e.kind.encode(), e.weak))
    return b"\0".join(out)


class CoreCache:
    """The cached results of one object's relocations against the running kernel.

    :ivar relos: program name -> its relocations' results, in record order.
    :ivar externs: program name -> its externs' kernel BTF ids (-1: not found; 0: not looked up).
    """

    def __init__(self, path: str | None, key: bytes) -> None:
        self.path = path
        self.key = key
        self.relos: dict[str, tuple[Result, ...]] = {}
        self.externs: dict[str, tuple[int, ...]] = {}
        self.dirty = False

    @classmethod
    def open(cls, data: CoreData, options: dict[str, Any]) -> CoreCache:
        """The cache entry for ``data`` (empty when missing; never written when caching is off).

        :param data: the object's relocation records.
        :param options: the load options (``btf_path``: another kernel BTF, which is not cached).
        """
        from ebpf.core.btf.cache import cache_dir, digest, kernel_btf_identity

        directory = cache_dir()
        kernel = kernel_btf_identity() if directory is not None and options.get("btf_path") is None else None
        code = _code_identity() if kernel is not None else None
        if directory is None or kernel is None or code is None:
            return cls(None, b"")
        key = bytes.fromhex(digest(b"\0\0".join([code, kernel, _inputs(data)])))
        self = cls(os.path.join(directory, f"core-{key.hex()[:40]}.bin"), key)
        self._read()
        return self

    def _read(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, "rb") as fh:
                blob = fh.read()
        except OSError:
            return
        if blob[:8] != _MAGIC or blob[8:40] != self.key:
            return
        try:
            relos, externs = marshal.loads(blob[40:])
        except (EOFError, ValueError, TypeError):
            return
        if _well_formed(relos, externs):
            self.relos, self.externs = relos, externs

    def store(self) -> None:
        """Write the entry (when results were added); the file appears whole or not at all."""
        if self.path is None or not self.dirty:
            return
        if write_cache_file(self.path, _MAGIC + self.key + marshal.dumps((self.relos, self.externs))):
            self.dirty = False


def _well_formed(relos: object, externs: object) -> bool:
    """The shape written by :meth:`CoreCache.store` (a damaged or foreign file is ignored)."""
    if not isinstance(relos, dict) or not isinstance(externs, dict):
        return False
    for name, results in relos.items():
        if not isinstance(name, str) or not isinstance(results, tuple):
            return False
        for r in results:
            if not (isinstance(r, tuple) and len(r) == 5 and type(r[0]) is int and type(r[1]) is bool
                    and type(r[2]) is int and type(r[3]) is int and type(r[4]) is str):
                return False
    for name, ids in externs.items():
        if not isinstance(name, str) or not isinstance(ids, tuple) or not all(type(i) is int for i in ids):
            return False
    return True
