"""NumPy bulk decoding of one perf ring (used by :meth:`ebpf.events.perf.PerfBuffer.read_array`)."""

from __future__ import annotations

import mmap
import struct
from typing import Any

__all__ = ["read_array"]

_HEAD4 = struct.Struct("<IHHI")
_RAW = struct.Struct("<I")
_SAMPLE = 9
_LOST = 2
_HEAD, _TAIL = 1024 // 8, 1032 // 8


def read_array(buf: Any, ring: Any, np: Any, dt: Any, limit: int, chunks: list[Any]) -> int:
    """Append arrays of raw ``dt.itemsize``-byte payloads of ``ring``'s samples to ``chunks``.

    Runs of samples with the same record size that do not cross the ring's end are viewed
    in place as one strided array and copied in one go; everything else (a wrapped record,
    a lost record, a sample of another size) goes through ``buf._record`` one at a time.

    :returns: the number of samples appended.
    """
    ctl, mm = ring.ctl, ring.mm
    head, tail = ctl[_HEAD], ctl[_TAIL]
    size, base = ring.size, mmap.PAGESIZE
    mask = size - 1
    isz = dt.itemsize
    void = np.dtype(f"V{isz}")
    total = 0
    try:
        while tail < head and total < limit:
            off = tail & mask
            if off + 12 <= size:
                typ, _misc, sz, raw = _HEAD4.unpack_from(mm, base + off)
                if typ == _SAMPLE and raw >= isz and sz >= 12 + raw and off + sz <= size:
                    k = min(min(head - tail, size - off) // sz, limit - total)
                    rec = np.dtype({"names": ["t", "s", "p"], "formats": ["<u4", "<u2", void],
                                    "offsets": [0, 6, 12], "itemsize": sz})
                    view = np.frombuffer(mm, dtype=rec, count=k, offset=base + off)
                    good = (view["t"] == _SAMPLE) & (view["s"] == sz)
                    j = k if good.all() else int(np.argmin(good))
                    chunks.append(view["p"][:j].copy())
                    del view, good
                    total += j
                    tail += j * sz
                    continue
            typ, sz, body = buf._record(ring, tail)
            tail += sz
            if typ == _SAMPLE and len(body) >= 4:
                data = body[4:4 + _RAW.unpack_from(body, 0)[0]]
                if len(data) >= isz:
                    chunks.append(np.frombuffer(data[:isz], dtype=void).copy())
                    total += 1
                else:
                    buf.skipped += 1
            elif typ == _LOST:
                buf._lost_record(ring, body)
    finally:
        ctl[_TAIL] = tail
    return total
