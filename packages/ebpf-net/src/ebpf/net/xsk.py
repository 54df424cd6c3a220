"""AF_XDP sockets in pure Python: a UMEM and its fill/completion rings, RX/TX rings, all mmap'ed.

    from ebpf.net.xsk import Umem, XskSocket
    with XskSocket("veth0", 0, umem=Umem(4096, 2048), udp_port=9000) as xsk:
        for frame in xsk.recv_batch(timeout=1.0):   # memoryviews into the UMEM, no copy
            ...
        xsk.send([reply_frame])

The socket talks to the kernel through ``socket(AF_XDP)``, ``setsockopt``/``getsockopt``
(``XDP_UMEM_REG``, ring sizes, ``XDP_MMAP_OFFSETS``) and ``bind`` through ctypes; the rings are
shared memory driven from Python (producer/consumer indexes and descriptors read and written
in place).  By default an XSKMAP and an XDP program that redirects the queue's frames (all of
them, or only UDP to ``udp_port``) into the socket are installed, and removed on close.
Frames seen by :meth:`XskSocket.recv_batch` stay valid until the next call: copy what you keep.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
import socket
import struct
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ebpf.core.errors import AttachError, BPFSyscallError, EBPFError, UnsupportedFeatureError
from ebpf.core.features import feature_test
from ebpf.net import _netlink

if TYPE_CHECKING:
    from ebpf.core.links import Link
    from ebpf.core.maps import Map
    from ebpf.core.programs import Program

__all__ = ["Umem", "XskSocket", "XskStats", "AF_XDP", "SOL_XDP", "load_xsk_redirect_program", "probe_af_xdp"]

AF_XDP, SOL_XDP = 44, 283
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_TX_RING, XDP_UMEM_REG = 1, 2, 3, 4
XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS = 5, 6, 7
XDP_COPY, XDP_ZEROCOPY = 2, 4
_PGOFF = {"rx": 0, "tx": 0x80000000, "fill": 0x100000000, "comp": 0x180000000}
_MODES = {"copy": XDP_COPY, "zerocopy": XDP_ZEROCOPY, "auto": 0}
_libc = ctypes.CDLL(None, use_errno=True)


@feature_test
def probe_af_xdp() -> None:
    """AF_XDP sockets (``socket(AF_XDP, SOCK_RAW)`` succeeds).  Requires Linux >= 4.18 (CONFIG_XDP_SOCKETS)."""
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0).close()
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EINVAL):
            raise UnsupportedFeatureError("AF_XDP sockets", "4.18", str(exc)) from None
        raise BPFSyscallError(exc.errno or errno.EIO, "socket(AF_XDP)", str(exc)) from None


class _SockaddrXdp(ctypes.Structure):
    _fields_ = [("family", ctypes.c_uint16), ("flags", ctypes.c_uint16), ("ifindex", ctypes.c_uint32),
                ("queue_id", ctypes.c_uint32), ("shared_umem_fd", ctypes.c_uint32)]  # fmt: skip


def _pow2(value: object, what: str, low: int = 1, high: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value > high or value & (value - 1):
        raise EBPFError(f"{what} must be a power of two in {low}..{high}, got {value!r}")
    return value


class _Ring:
    """One mmap'ed ring: free-running u32 producer/consumer and ``size`` entries."""

    def __init__(self, fd: int, kind: str, size: int, offsets: tuple[int, int, int, int], entry: int) -> None:
        producer, consumer, desc, _flags = offsets
        self.mm = mmap.mmap(fd, desc + size * entry, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                            mmap.PROT_READ | mmap.PROT_WRITE, offset=_PGOFF[kind])  # fmt: skip
        self.u32 = memoryview(self.mm).cast("I")
        self.u64 = memoryview(self.mm).cast("Q")
        self.prod, self.cons, self.desc, self.mask, self.size = producer // 4, consumer // 4, desc, size - 1, size

    def close(self) -> None:
        self.u32.release()
        self.u64.release()
        self.mm.close()


class Umem:
    """The frame memory shared with the kernel: ``frames`` frames of ``frame_size`` bytes.

    :param frames: number of frames (a power of two).
    :param frame_size: bytes per frame, a power of two from 2048 to the page size.
    :param fill_size: entries of the fill ring (default: half the frames, for receiving).
    :param comp_size: entries of the completion ring (default: half the frames, for sending).
    :raises EBPFError: a bad size (before anything is allocated).
    """

    def __init__(self, frames: int = 4096, frame_size: int = 2048, fill_size: int | None = None,
                 comp_size: int | None = None) -> None:  # fmt: skip
        self.frames = _pow2(frames, "Umem frames", 2, 1 << 20)
        self.frame_size = _pow2(frame_size, "Umem frame_size", 2048, mmap.PAGESIZE)
        self.fill_size = _pow2(fill_size if fill_size is not None else frames // 2, "Umem fill_size")
        self.comp_size = _pow2(comp_size if comp_size is not None else frames // 2, "Umem comp_size")
        self.mem = mmap.mmap(-1, frames * frame_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view = memoryview(self.mem)
        self._anchor: Any = ctypes.c_char.from_buffer(self.mem)
        self.address = ctypes.addressof(self._anchor)
        self.owner: XskSocket | None = None

    def register(self, sock: socket.socket) -> None:
        """XDP_UMEM_REG plus the fill and completion ring sizes on ``sock``."""
        reg = struct.pack("<QQIIII", self.address, len(self.mem), self.frame_size, 0, 0, 0)
        sock.setsockopt(SOL_XDP, XDP_UMEM_REG, reg)
        sock.setsockopt(SOL_XDP, XDP_UMEM_FILL_RING, self.fill_size)
        sock.setsockopt(SOL_XDP, XDP_UMEM_COMPLETION_RING, self.comp_size)

    def close(self) -> None:
        """Free the memory (views handed out must be released first, else it goes with them)."""
        self.view.release()
        del self._anchor
        try:
            self.mem.close()
        except BufferError:
            pass  # a caller still holds a frame view: the memory is freed with it


class XskStats:
    """``XDP_STATISTICS`` of a socket."""

    __slots__ = (
        "rx_dropped",
        "rx_fill_ring_empty_descs",
        "rx_invalid_descs",
        "rx_ring_full",
        "tx_invalid_descs",
        "tx_ring_empty_descs",
    )  # fmt: skip

    def __init__(self, raw: bytes) -> None:
        values = struct.unpack_from(f"<{len(raw) // 8}Q", raw) + (0,) * 6
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)

    def __repr__(self) -> str:
        return "XskStats(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__) + ")"


def load_xsk_redirect_program(xskmap: Map, udp_port: int | None = None) -> Program:
    """An XDP program sending the frames of each queue to ``xskmap[queue]`` (all frames, or IPv4 UDP to
    ``udp_port``); frames with no socket on their queue, and all others, pass to the stack."""
    from ebpf.core.asm import R1, R2, R3, R6, W, call, exit_, ld_map_fd, ldx_mem, mov64
    from ebpf.net.packet import Packet
    from ebpf.net.xdp import XdpAction, load_xdp_program

    p = Packet("xdp")
    if udp_port is not None:
        udp = p.ethernet().ipv4().udp()
        p.jump_if(udp.dport, "!=", udp_port, p.miss)
    p.emit(ldx_mem(W, R2, R6, 16), ld_map_fd(R1, xskmap), mov64(R3, XdpAction.PASS), call("redirect_map"), exit_())
    return load_xdp_program(p.program(on_miss=XdpAction.PASS), name="xsk_redirect")


class XskSocket:
    """An AF_XDP socket bound to one queue of an interface (in the current network namespace).

    :param ifname: interface name or index.
    :param queue: receive queue id.
    :param umem: the frame memory (default ``Umem()``); one socket per UMEM.
    :param rx_size: RX ring entries; :param tx_size: TX ring entries (powers of two).
    :param mode: ``"copy"`` (every driver), ``"zerocopy"`` (driver support needed) or ``"auto"``.
    :param redirect: install an XSKMAP and XDP program redirecting the queue into this socket.
    :param udp_port: with ``redirect``, only IPv4 UDP to this port is redirected.
    :param xdp_mode: the XDP attach mode of that program (``"skb"``, ``"drv"``).
    :raises AttachError: no such interface or queue (before the socket is made), or the kernel refused.
    :raises EBPFError: bad sizes.  Nothing is left behind on failure.
    Requires Linux >= 4.18.
    """

    def __init__(self, ifname: str | int, queue: int = 0, umem: Umem | None = None, rx_size: int = 2048,
                 tx_size: int = 2048, mode: str = "copy", redirect: bool = True, udp_port: int | None = None,
                 xdp_mode: str = "skb") -> None:  # fmt: skip
        self._closed = True
        rx_size, tx_size = _pow2(rx_size, "rx_size"), _pow2(tx_size, "tx_size")
        if mode not in _MODES:
            raise EBPFError(f"AF_XDP mode must be one of {', '.join(_MODES)}, not {mode!r}")
        if udp_port is not None and (isinstance(udp_port, bool) or not isinstance(udp_port, int)
                                     or not 0 < udp_port < 65536):  # fmt: skip
            raise EBPFError(f"udp_port must be a port number, not {udp_port!r}")
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
            raise AttachError(f"an AF_XDP queue is a non-negative int, not {queue!r}")
        self.ifindex, self.ifname = _netlink.resolve_interface(ifname)
        queues = _netlink.rx_queue_count(self.ifindex, self.ifname)
        if queue >= queues:
            raise AttachError(f"{self.ifname} has {queues} receive queue(s); there is no queue {queue}")
        if umem is not None and not isinstance(umem, Umem):
            raise EBPFError(f"umem must be a Umem, not {type(umem).__name__}")
        if umem is not None and umem.owner is not None:
            raise EBPFError("this Umem already belongs to another XskSocket (shared UMEMs are not supported)")
        self.queue, self.rx_size, self.tx_size = queue, rx_size, tx_size
        self._own_umem = umem is None
        self.umem = umem if umem is not None else Umem()
        self._rings: dict[str, _Ring] = {}
        self._link: Link | None = None
        self._prog: Program | None = None
        self._map: Map | None = None
        try:
            self.sock = socket.socket(AF_XDP, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        except OSError as exc:
            self._release_umem()
            raise BPFSyscallError(exc.errno or errno.EINVAL, "socket(AF_XDP)", str(exc)) from None
        try:
            self._setup(mode, redirect, udp_port, xdp_mode)
        except BaseException:
            self._closed = False
            self.close()
            raise
        self._closed = False

    def _setup(self, mode: str, redirect: bool, udp_port: int | None, xdp_mode: str) -> None:
        try:
            self.umem.register(self.sock)
            self.sock.setsockopt(SOL_XDP, XDP_RX_RING, self.rx_size)
            self.sock.setsockopt(SOL_XDP, XDP_TX_RING, self.tx_size)
            raw = self.sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, 128)
        except OSError as exc:
            raise BPFSyscallError(exc.errno or errno.EINVAL, "setsockopt(SOL_XDP)", str(exc)) from None
        if len(raw) < 128:
            raise BPFSyscallError(errno.EOPNOTSUPP, "getsockopt(XDP_MMAP_OFFSETS)",
                                  "this kernel's AF_XDP ring layout has no flags (needs Linux >= 5.4)")  # fmt: skip
        off = struct.unpack("<16Q", raw)
        fd = self.sock.fileno()
        for i, (kind, size, entry) in enumerate((("rx", self.rx_size, 16), ("tx", self.tx_size, 16),
                                                 ("fill", self.umem.fill_size, 8),
                                                 ("comp", self.umem.comp_size, 8))):  # fmt: skip
            self._rings[kind] = _Ring(fd, kind, size, off[4 * i : 4 * i + 4], entry)
        self.umem.owner = self
        fs = self.umem.frame_size
        # The first fill_size frames go to the kernel for receiving, the rest are ours for sending.
        self._free = [i * fs for i in range(self.umem.fill_size, self.umem.frames)]
        self._fill([i * fs for i in range(self.umem.fill_size)])
        self._held: list[int] = []
        self._bind(mode)
        if redirect:
            self._install(udp_port, xdp_mode)

    def _bind(self, mode: str) -> None:
        for flags in ((XDP_ZEROCOPY, XDP_COPY) if mode == "auto" else (_MODES[mode],)):
            addr = _SockaddrXdp(AF_XDP, flags, self.ifindex, self.queue, 0)
            if _libc.bind(self.sock.fileno(), ctypes.byref(addr), ctypes.sizeof(addr)) == 0:
                self.mode = "zerocopy" if flags == XDP_ZEROCOPY else "copy"
                return
            err = ctypes.get_errno()
        hint = {errno.EOPNOTSUPP: " (the driver has no zero-copy support: use mode='copy')",
                errno.EBUSY: " (another AF_XDP socket is bound to this queue)"}.get(err, "")  # fmt: skip
        raise AttachError(f"bind AF_XDP socket to {self.ifname} queue {self.queue}: {errno.errorcode.get(err, err)}"
                          f"{hint}")  # fmt: skip

    def _install(self, udp_port: int | None, xdp_mode: str) -> None:
        from ebpf.net.xdp import attach_xdp, create_xskmap

        self._map = create_xskmap(self.queue + 1, name="xsk")
        self._map[self.queue] = self.sock.fileno()
        self._prog = load_xsk_redirect_program(self._map, udp_port)
        self._link = attach_xdp(self.ifindex, self._prog, mode=xdp_mode)

    # -- rings ---------------------------------------------------------------------------------
    def _fill(self, addrs: list[int]) -> int:
        ring = self._rings["fill"]
        u32, u64 = ring.u32, ring.u64
        prod = u32[ring.prod]
        room = ring.size - (prod - u32[ring.cons]) % (1 << 32)
        n = min(room, len(addrs))
        base = ring.desc // 8
        for i in range(n):
            u64[base + ((prod + i) & ring.mask)] = addrs[i]
        u32[ring.prod] = (prod + n) & 0xFFFFFFFF
        return n

    def _reclaim(self) -> None:
        """Frames the kernel finished sending (completion ring) become free again."""
        ring = self._rings["comp"]
        u32, u64 = ring.u32, ring.u64
        cons, prod = u32[ring.cons], u32[ring.prod]
        base = ring.desc // 8
        while cons != prod:
            self._free.append(u64[base + (cons & ring.mask)])
            cons = (cons + 1) & 0xFFFFFFFF
        u32[ring.cons] = cons

    def fileno(self) -> int:
        """The socket's fd (for select/poll)."""
        return self.sock.fileno()

    def recv_batch(self, max_frames: int = 64, timeout: float | None = 0.0) -> list[memoryview]:
        """Take up to ``max_frames`` received frames: memoryviews into the UMEM, valid until the next call.

        :param timeout: seconds to wait for the first frame (None: forever, 0: do not wait).
        :raises EBPFError: the socket is closed.
        """
        self._check_open()
        if self._held:  # the previous batch goes back to the kernel for new frames
            n = self._fill(self._held)
            self._held = self._held[n:]
        ring = self._rings["rx"]
        u32 = ring.u32
        deadline = None if timeout is None else time.monotonic() + timeout
        while u32[ring.prod] == u32[ring.cons]:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return []
            select.select([self.sock], [], [], wait)
        cons, prod = u32[ring.cons], u32[ring.prod]
        count = min(max_frames, (prod - cons) % (1 << 32))
        frames, view, u64 = [], self.umem.view, ring.u64
        for i in range(count):
            slot = ring.desc + ((cons + i) & ring.mask) * 16
            addr, length = u64[slot // 8], u32[slot // 4 + 2]
            self._held.append(addr - addr % self.umem.frame_size)
            frames.append(view[addr : addr + length])
        u32[ring.cons] = (cons + count) & 0xFFFFFFFF
        return frames

    def send(self, frames: Iterable[bytes | bytearray | memoryview]) -> int:
        """Queue whole Ethernet frames on the TX ring and kick the kernel; returns how many were queued
        (fewer when the ring or the free frames run out).

        :raises EBPFError: the socket is closed, or a frame is larger than a UMEM frame.
        """
        self._check_open()
        self._reclaim()
        ring = self._rings["tx"]
        u32, u64 = ring.u32, ring.u64
        prod = u32[ring.prod]
        room = ring.size - (prod - u32[ring.cons]) % (1 << 32)
        sent, view, fs = 0, self.umem.view, self.umem.frame_size
        for data in frames:
            if len(data) > fs:
                raise EBPFError(f"a frame of {len(data)} bytes does not fit a {fs}-byte UMEM frame")
            if sent >= room or not self._free:
                break
            addr = self._free.pop()
            view[addr : addr + len(data)] = data
            slot = ring.desc + ((prod + sent) & ring.mask) * 16
            u64[slot // 8] = addr
            u32[slot // 4 + 2] = len(data)
            u32[slot // 4 + 3] = 0
            sent += 1
        u32[ring.prod] = (prod + sent) & 0xFFFFFFFF
        if sent:
            self._kick()
        return sent

    def _kick(self) -> None:
        try:
            self.sock.send(b"", socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOBUFS, errno.EBUSY, errno.ENETDOWN):
                raise BPFSyscallError(exc.errno or errno.EIO, "sendto(AF_XDP)", str(exc)) from None

    def flush(self, timeout: float = 1.0) -> bool:
        """Wait until every queued frame was sent (the completion ring gave all frames back)."""
        deadline = time.monotonic() + timeout
        want = self.umem.frames - self.umem.fill_size
        while True:
            self._reclaim()
            if len(self._free) >= want or time.monotonic() >= deadline:
                return len(self._free) >= want
            self._kick()
            time.sleep(0.001)

    def stats(self) -> XskStats:
        """The kernel's counters for this socket (``XDP_STATISTICS``)."""
        self._check_open()
        return XskStats(self.sock.getsockopt(SOL_XDP, XDP_STATISTICS, 48))

    # -- life cycle ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise EBPFError("the AF_XDP socket is closed")

    def _release_umem(self) -> None:
        if self.umem.owner is self:
            self.umem.owner = None
        if self._own_umem:
            self.umem.close()

    def close(self) -> None:
        """Detach the redirect program, close the map, rings and socket (and the UMEM made for it)."""
        if self._closed:
            return
        self._closed = True
        for obj in (self._link, self._prog, self._map):
            if obj is not None:
                obj.close()
        for ring in self._rings.values():
            ring.close()
        self._rings.clear()
        self.sock.close()
        self._release_umem()

    def __enter__(self) -> XskSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self.sock.fileno()} {getattr(self, 'mode', '?')}"
        return f"<XskSocket {self.ifname} queue {self.queue} {state}>"
