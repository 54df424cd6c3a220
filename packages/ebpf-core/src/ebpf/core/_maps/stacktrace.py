"""Stack trace maps (BPF_MAP_TYPE_STACK_TRACE): what ``bpf_get_stackid`` fills.

A stack trace map is keyed by a u32 stack id; its value is an array of ``depth`` instruction
pointers (u64, zero after the last frame) or, with ``BPF_F_STACK_BUILD_ID``, of
``struct bpf_stack_build_id`` (status, 20-byte build id, file offset or ip: 32 bytes each).
``bpf_get_stackid`` returns the id, or a negative errno: those are named by
:func:`stack_id_error` so a profiler can count them instead of silently dropping samples.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

from ebpf.core._maps.base import Map
from ebpf.core._maps.batch import raw_keys
from ebpf.core.errors import EBPFError, KeyNotFoundError

__all__ = ["StackTraceMap", "BuildIdFrame", "stack_id_error", "BUILD_ID_FRAME_SIZE"]

#: sizeof(struct bpf_stack_build_id)
BUILD_ID_FRAME_SIZE = 32
_BUILD_ID = struct.Struct("<i20sQ")  # s32 status, u8 build_id[20], u64 offset (at 24: aligned)
_STATUS = {0: "empty", 1: "valid", 2: "ip"}
_STACK_BUILD_ID_FLAG = 1 << 5

# What a negative bpf_get_stackid() result means (kernel/bpf/stackmap.c).
_STACKID_ERRORS = {
    errno.EFAULT: "no stack could be read (a user stack of a kernel thread, or a frame-pointer walk that failed)",
    errno.EEXIST: "hash collision: another stack holds this bucket (BPF_F_REUSE_STACKID not set)",
    errno.ENOMEM: "the stack trace map is full (raise max_entries)",
    errno.EINVAL: "bad flags passed to bpf_get_stackid",
}


class BuildIdFrame(NamedTuple):
    """One frame of a build-id stack: ``status`` ("valid": ``build_id`` + file ``offset``;
    "ip": the build id was unavailable and ``offset`` is the raw instruction pointer)."""

    status: str
    build_id: bytes
    offset: int


def stack_id_error(stack_id: int) -> str | None:
    """Name a ``bpf_get_stackid`` result: None for a valid id (>= 0), else ``"EFAULT: ..."``.

    :param stack_id: the signed value the program stored.
    :returns: the errno name and what it means, or None.
    """
    if stack_id >= 0:
        return None
    code = -stack_id
    name = errno.errorcode.get(code, f"errno {code}")
    why = _STACKID_ERRORS.get(code, "unexpected error")
    return f"{name}: {why}"


class StackTraceMap(Map):
    """A BPF_MAP_TYPE_STACK_TRACE map: :meth:`stack` gives the frames of a stack id.

    Made by :func:`ebpf.core.maps.create_stack_trace_map`, and for every stack trace map of an
    ELF object or read back with ``Map.from_id``.
    """

    @property
    def build_id(self) -> bool:
        """True when the map stores build-id + offset frames (BPF_F_STACK_BUILD_ID)."""
        return bool(int(self.flags) & _STACK_BUILD_ID_FLAG)

    @property
    def depth(self) -> int:
        """The most frames a stack can hold."""
        return self.value_size // (BUILD_ID_FRAME_SIZE if self.build_id else 8)

    def _decode_frames(self, raw: bytes) -> list[Any]:
        if self.build_id:
            frames: list[Any] = []
            for off in range(0, len(raw) - BUILD_ID_FRAME_SIZE + 1, BUILD_ID_FRAME_SIZE):
                status, bid, offset = _BUILD_ID.unpack_from(raw, off)
                if status == 0:
                    break
                frames.append(BuildIdFrame(_STATUS.get(status, str(status)), bid, offset))
            return frames
        ips = list(struct.unpack_from(f"<{len(raw) // 8}Q", raw))
        n = len(ips)
        while n and not ips[n - 1]:
            n -= 1
        return ips[:n]

    def stack(self, stack_id: int) -> list[Any]:
        """The frames of ``stack_id``, innermost first.

        :returns: instruction pointers (ints), or :class:`BuildIdFrame` s for a build-id map.
        :raises EBPFError: for a negative id (what ``bpf_get_stackid`` failed with, by name).
        :raises KeyNotFoundError: when no stack has this id (never stored, or deleted).
        """
        if isinstance(stack_id, bool) or not isinstance(stack_id, int):
            raise EBPFError(f"stack id must be an int, got {stack_id!r}")
        if stack_id < 0:
            raise EBPFError(f"stack id {stack_id} is an error from bpf_get_stackid: {stack_id_error(stack_id)}")
        if stack_id >= 1 << 32:
            raise EBPFError(f"stack id must fit in 32 bits, got {stack_id}")
        raw = self.lookup_bytes(stack_id.to_bytes(4, "little"))
        if raw is None:
            raise KeyNotFoundError(stack_id)
        return self._decode_frames(raw)

    def stacks(self) -> Iterator[tuple[int, list[Any]]]:
        """Every stored stack as ``(stack_id, frames)`` (stacks deleted meanwhile are skipped)."""
        for key in list(raw_keys(self)):
            raw = self.lookup_bytes(bytes(key))
            if raw is not None:
                yield int.from_bytes(key, "little"), self._decode_frames(raw)
