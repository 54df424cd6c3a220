"""The user ring buffer: Python produces records, a BPF program consumes them.

A ``BPF_MAP_TYPE_USER_RINGBUF`` map is a ring buffer with the roles of the ordinary one
swapped: user space reserves and submits samples, and a program drains them with
``bpf_user_ringbuf_drain(map, callback, ctx, flags)``, which calls ``callback`` once per
submitted sample, in order.  The layout is the ring buffer's (a consumer page the kernel
owns, a producer page and the data area mapped twice); this module is the producer:

- :meth:`UserRingBuffer.reserve` writes a busy header (``len | BUSY``) at the producer
  position and advances it; the kernel stops draining at a busy sample, so nothing is read
  before :meth:`UserRingBuffer.submit` clears the bit (or :meth:`~UserRingBuffer.discard`
  sets DISCARD, and the kernel skips the sample).
- A full ring refuses the reservation (:class:`~ebpf.core.errors.MapFullError`) or, with
  ``timeout``, waits on the map's fd, which polls writable once the kernel has consumed
  enough.

One producer per ring (not thread-safe), as libbpf's ``user_ring_buffer``.
Requires Linux >= 6.1.
"""

from __future__ import annotations

import mmap
import select
import time
import weakref
from typing import Any

from ebpf.core.errors import EBPFError, MapFullError
from ebpf.core.types import MapType
from ebpf.events._common import check_map, close_mmap, map_shared

__all__ = ["UserRingBuffer", "UserRingBufferSample", "HEADER_SIZE"]

HEADER_SIZE = 8  # BPF_RINGBUF_HDR_SZ: u32 len (with the BUSY/DISCARD bits), u32 pad
_BUSY = 1 << 31
_DISCARD = 1 << 30


def _release(views: list[memoryview], maps: list[mmap.mmap], epoll: select.epoll) -> None:
    for v in views:
        try:
            v.release()
        except BufferError:
            pass
    for m in maps:
        close_mmap(m)
    epoll.close()


class UserRingBufferSample:
    """A reserved sample: write into :attr:`data` (a writable memoryview), then submit or discard it."""

    def __init__(self, ring: UserRingBuffer, offset: int, size: int) -> None:
        """Reserved by :meth:`UserRingBuffer.reserve` (not created directly)."""
        self._ring = ring
        self._offset = offset  # of the header in the data area
        self.size = size
        self.data: memoryview = ring._data[offset + HEADER_SIZE:offset + HEADER_SIZE + size]
        self.done = False

    def submit(self) -> None:
        """Hand the sample to the kernel (see :meth:`UserRingBuffer.submit`)."""
        self._ring.submit(self)

    def discard(self) -> None:
        """Give the space back unread (see :meth:`UserRingBuffer.discard`)."""
        self._ring.discard(self)

    def __repr__(self) -> str:
        return f"<UserRingBufferSample {self.size} bytes{' done' if self.done else ''}>"


class UserRingBuffer:
    """Produce samples for a ``BPF_MAP_TYPE_USER_RINGBUF`` map that a program drains.

    ``rb.write(b"...")`` (reserve, copy, submit), or ``s = rb.reserve(n)``, fill ``s.data``,
    ``rb.submit(s)`` / ``rb.discard(s)``.

    :param map: the user ring buffer map (kept alive by this object).
    :raises EBPFError: when ``map`` is not an open user ring buffer map (before any syscall).
    :raises BPFSyscallError: when the mmap fails.
    """

    def __init__(self, map: Any) -> None:
        """Map the consumer page read-only, the producer page and the data area writable."""
        fd = check_map(map, MapType.USER_RINGBUF, "UserRingBuffer")
        size = int(map.max_entries)
        if size <= 0 or size & (size - 1):
            raise EBPFError(f"user ring buffer size {size} is not a power of two")
        self.map = map
        self.size = size
        self._mask = size - 1
        page = mmap.PAGESIZE
        # the kernel refuses a writable mapping of its consumer page (EPERM)
        cons = map_shared(fd, page, 0, writable=False)
        try:
            prod = map_shared(fd, page + 2 * size, page, writable=True)
        except BaseException:
            cons.close()
            raise
        epoll = select.epoll()
        epoll.register(fd, select.EPOLLOUT)
        self._epoll = epoll
        self._cons = memoryview(cons).cast("Q")
        whole = memoryview(prod)
        self._prod = whole[:8].cast("Q")
        self._data = whole[page:]
        self._words = self._data.cast("I")
        self._pending: list[UserRingBufferSample] = []
        self._finalizer = weakref.finalize(self, _release, [self._cons, self._prod, self._words, self._data, whole],
                                           [cons, prod], epoll)
        self._closed = False

    # -- state -------------------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self._closed:
            raise EBPFError("user ring buffer is closed")

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def max_sample_size(self) -> int:
        """The largest sample one reservation can hold (the ring minus one header)."""
        return self.size - HEADER_SIZE

    def free_space(self) -> int:
        """Bytes the kernel has consumed and a reservation may reuse (headers and padding included)."""
        self._check()
        return self.size - int(self._prod[0] - self._cons[0])

    def fileno(self) -> int:
        """An epoll fd that polls readable when the ring has free space (for ``selectors``/asyncio)."""
        self._check()
        return self._epoll.fileno()

    # -- producing -----------------------------------------------------------------------------------------------
    def reserve(self, size: int, timeout: float | None = 0) -> UserRingBufferSample:
        """Reserve a sample of ``size`` bytes.

        :param size: the sample's length (1 .. :attr:`max_sample_size`).
        :param timeout: seconds to wait for room when the ring is full; 0 (the default) does not
            wait, None waits forever.
        :returns: the :class:`UserRingBufferSample` to fill and submit.
        :raises EBPFError: for a bad size, or when the ring is closed.
        :raises MapFullError: when there is no room (after ``timeout``).
        """
        self._check()
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise EBPFError(f"sample size must be a positive int, not {size!r}")
        if size > self.max_sample_size:
            raise EBPFError(f"a {size}-byte sample does not fit a {self.size}-byte user ring buffer "
                            f"(at most {self.max_sample_size} bytes)")
        total = (size + HEADER_SIZE + 7) & ~7
        if total > self.size - int(self._prod[0] - self._cons[0]):
            self._wait_room(total, timeout)
        prod = int(self._prod[0])
        off = prod & self._mask
        self._words[off // 4] = size | _BUSY
        self._words[off // 4 + 1] = 0
        # x86 and arm64 Python stores: the header is written before the position moves
        self._prod[0] = prod + total
        sample = UserRingBufferSample(self, off, size)
        self._pending.append(sample)
        return sample

    def _wait_room(self, total: int, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while total > self.size - int(self._prod[0] - self._cons[0]):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise MapFullError("user ring buffer reserve")
            # the fd polls writable whenever the ring is not completely full, so a wake-up may come
            # with too little room: then wait a little for the kernel's next drain
            if self._epoll.poll(-1 if left is None else left) and total > self.free_space():
                time.sleep(0.001 if left is None else min(0.001, max(left, 0.0)))

    def _finish(self, sample: UserRingBufferSample, discard: bool) -> None:
        self._check()
        if not isinstance(sample, UserRingBufferSample) or sample._ring is not self:
            raise EBPFError("not a sample reserved from this user ring buffer")
        if sample.done:
            raise EBPFError("sample was already submitted or discarded")
        sample.done = True
        sample.data.release()
        self._pending.remove(sample)
        self._words[sample._offset // 4] = sample.size | (_DISCARD if discard else 0)

    def submit(self, sample: UserRingBufferSample) -> None:
        """Clear the sample's busy bit: the next drain passes it to the program.

        :raises EBPFError: for a sample of another ring or one already submitted/discarded.
        """
        self._finish(sample, False)

    def discard(self, sample: UserRingBufferSample) -> None:
        """Mark the sample discarded: the kernel skips it and frees its space.

        :raises EBPFError: for a sample of another ring or one already submitted/discarded.
        """
        self._finish(sample, True)

    def write(self, data: bytes | bytearray | memoryview, timeout: float | None = 0) -> None:
        """Reserve, copy ``data`` in and submit: one sample.

        :raises EBPFError: for empty or oversized data.
        :raises MapFullError: when the ring has no room (after ``timeout`` seconds; None: wait).
        """
        raw = memoryview(data).cast("B")
        sample = self.reserve(len(raw), timeout)
        sample.data[:] = raw
        self.submit(sample)

    def close(self) -> None:
        """Unmap the ring (idempotent); reservations not yet submitted are discarded first."""
        if self._closed:
            return
        for sample in list(self._pending):
            self._finish(sample, True)
        self._closed = True
        self._finalizer()

    def __enter__(self) -> UserRingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.size} bytes"
        return f"<UserRingBuffer {getattr(self.map, 'name', '')!r} {state}>"
