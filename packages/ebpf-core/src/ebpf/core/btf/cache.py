"""An on-disk cache of the kernel BTF's record index, so a fresh process skips the pass over 125k types.

The index (each record's word offset, and each record's name offset packed for name lookups)
is a pure function of the blob, so the cache file is named after the blob's sha256: a new
kernel (or a changed ``/sys/kernel/btf/vmlinux``) has another hash and never sees an old
index.  The running kernel's BTF is named by :func:`kernel_btf_identity` instead (the boot and
the file's identity: it cannot change before the next boot), so it is not hashed at all.  A file that is short, foreign or inconsistent with the blob is ignored and rewritten.
The directory is ``$EBPF_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebpf``, else ``~/.cache/ebpf``;
``EBPF_CACHE_DIR=""`` turns the cache off.  Failing to read or write it is never an error.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array

from ebpf.core.btf.records import record_words
from ebpf.core.btf.spec import Spec
from ebpf.core.records import cache_digest, cache_dir, write_cache_file

__all__ = ["cache_dir", "use_index_cache", "kernel_btf_identity", "VMLINUX"]

#: The running kernel's BTF.
VMLINUX = "/sys/kernel/btf/vmlinux"

_MAGIC = b"EBPFBTFI"
_HEAD = struct.Struct("<8sII")  # magic, format version, record count
_VERSION = 1


def kernel_btf_identity() -> bytes | None:
    """What identifies the running kernel's BTF for as long as it can stay the same (None: unknown).

    The kernel's BTF cannot change while it runs: the boot (``/proc/sys/kernel/random/boot_id``,
    random per boot), the kernel release and the identity of :data:`VMLINUX` (device, inode,
    size, mtime) name it without reading or hashing its 5 MB.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            boot = fh.read().strip()
        st = os.stat(VMLINUX)
    except OSError:
        return None
    if len(boot) < 16:
        return None
    return b"\0".join([boot, os.uname().release.encode(),
                       b"%d:%d:%d:%d" % (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)])


def digest(data: bytes) -> str:
    """A hex digest for cache file names (:func:`ebpf.core.records.cache_digest`)."""
    return cache_digest(data).hex()


def _valid(spec: Spec, offsets: array[int]) -> bool:
    """Cheap consistency checks of a cached index against the blob (the hash already matched)."""
    words = spec._hdr.words
    if not offsets:
        return len(words) == 0
    if offsets[0] != 0:
        return False
    last = offsets[-1]
    return last + 1 < len(words) and last + record_words(words[last + 1]) == len(words)


def use_index_cache(spec: Spec, identity: bytes | None = None) -> None:
    """Give ``spec`` its record index from the cache, or build it and store it there.

    :param spec: a spec without a base (vmlinux); its index is built as usual when the cache
        is off, missing or unusable.
    :param identity: what names the blob instead of its sha256, when that is known to stand for
        exactly this blob (:func:`kernel_btf_identity` for the running kernel's, read during the boot
        it names); hashing 5 MB is most of a fresh process's cost of reading vmlinux BTF.
    """
    directory = cache_dir()
    if directory is None or spec.base is not None or sys.byteorder != "little" or spec.byteorder != "little":
        return
    if identity is not None:
        name = f"btf-index-k{digest(identity)[:40]}.bin"
    else:
        import hashlib  # deferred: start-up time (only this path needs it)

        name = f"btf-index-{hashlib.sha256(spec.data).hexdigest()[:40]}.bin"
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
        magic, version, count = _HEAD.unpack_from(blob, 0)
        if magic == _MAGIC and version == _VERSION and len(blob) == _HEAD.size + 8 * count:
            offsets = array("I")
            offsets.frombytes(blob[_HEAD.size : _HEAD.size + 4 * count])
            if _valid(spec, offsets):
                spec._index = offsets
                spec._name_words = blob[_HEAD.size + 4 * count :]
                return
    except (OSError, struct.error, ValueError):
        pass
    offsets = spec._offsets()
    names = spec._names()
    write_cache_file(path, _HEAD.pack(_MAGIC, _VERSION, len(offsets)) + offsets.tobytes() + names)
