"""How keys and values sit in kernel buffers: single elements, per-CPU values, batch arrays."""

from __future__ import annotations

import array
import struct
from collections.abc import Iterable, MutableSequence, Sequence
from typing import Any

from ebpf.core.codecs import Codec, IntCodec, StructCodec
from ebpf.core.errors import EBPFError

__all__ = ["round8", "is_percpu_sequence", "encode_percpu", "decode_percpu", "Layout"]

_BAD = (TypeError, ValueError, OverflowError, struct.error, AttributeError)


def round8(n: int) -> int:
    """``n`` rounded up to a multiple of 8 (per-CPU values are 8-byte aligned per CPU)."""
    return (n + 7) & ~7


def is_percpu_sequence(value: object, codec: Codec) -> bool:
    """True when ``value`` is one value per CPU rather than one value to replicate.

    A list is always per-CPU values; a tuple is too, unless the codec's own values are
    tuples (a multi-field struct).
    """
    if isinstance(value, list):
        return True
    if isinstance(value, tuple):
        return not (isinstance(codec, StructCodec) and not codec.single)
    return False


def encode_percpu(codec: Codec, value: object, ncpus: int, value_size: int) -> bytes:
    """The kernel buffer for a per-CPU value: ``ncpus`` slots of ``round8(value_size)`` bytes.

    :param value: one value (replicated on every CPU) or a sequence of exactly ``ncpus`` values.
    :raises EBPFError: on a wrong count or an unencodable value.
    """
    stride = round8(value_size)
    if is_percpu_sequence(value, codec):
        values: Sequence[Any] = value  # type: ignore[assignment]
        if len(values) != ncpus:
            raise EBPFError(f"per-CPU update needs {ncpus} values (one per possible CPU), got {len(values)}")
        encoded = [codec.encode(v) for v in values]
    else:
        encoded = [codec.encode(value)] * ncpus
    pad = bytes(stride - value_size)
    return b"".join(e + pad for e in encoded)


def decode_percpu(codec: Codec, buf: bytes | bytearray | memoryview, ncpus: int, value_size: int) -> list[Any]:
    """Split a per-CPU kernel buffer into one decoded value per CPU.

    :raises EBPFError: when ``buf`` is shorter than ``ncpus`` slots.
    """
    stride = round8(value_size)
    if len(buf) < stride * ncpus:
        raise EBPFError(f"per-CPU buffer of {len(buf)} bytes is too short for {ncpus} CPUs x {stride} bytes")
    view = memoryview(buf)
    if isinstance(codec, IntCodec) and codec.size == 8:
        return view[: 8 * ncpus].cast(codec.code).tolist()
    if isinstance(codec, IntCodec):
        per = stride // codec.size
        return view[: stride * ncpus].cast(codec.code)[::per].tolist()
    return [codec.decode(view[i * stride : i * stride + value_size]) for i in range(ncpus)]


class Layout:
    """Keys or values of one map in a batch buffer: ``elem_size`` bytes each, encoded with ``codec``.

    ``ncpus`` > 0 makes every element a per-CPU value.
    """

    def __init__(self, codec: Codec, size: int, ncpus: int = 0) -> None:
        self.codec = codec
        self.size = size
        self.ncpus = ncpus
        self.elem_size = round8(size) * ncpus if ncpus else size
        self._int = isinstance(codec, IntCodec) and not ncpus
        # array.array typecode for columns: the struct code, when array's item has the same size
        self._array_code: str | None = None
        if isinstance(codec, IntCodec) and not ncpus and array.array(codec.code).itemsize == size:
            self._array_code = codec.code

    def column(self) -> MutableSequence[Any]:
        """An empty column of elements: an ``array.array`` for integers (no object per element), else a list."""
        if self._array_code is not None:
            return array.array(self._array_code)
        return []

    def encode(self, obj: object) -> bytes:
        """One element."""
        if self.ncpus:
            return encode_percpu(self.codec, obj, self.ncpus, self.size)
        return self.codec.encode(obj)

    def decode(self, buf: bytes | bytearray | memoryview) -> Any:
        """One element."""
        if self.ncpus:
            return decode_percpu(self.codec, buf, self.ncpus, self.size)
        return self.codec.decode(buf)

    def encode_many(self, objs: Sequence[Any]) -> bytes:
        """``len(objs)`` elements back to back.

        :raises EBPFError: when one does not encode.
        """
        if self._int:
            assert isinstance(self.codec, IntCodec)
            try:
                return struct.pack(f"={len(objs)}{self.codec.code}", *objs)
            except _BAD as exc:
                raise EBPFError(f"cannot encode {self.codec!r} batch: {exc}") from None
        encode = self.encode
        return b"".join([encode(o) for o in objs])

    def pack_into(self, buf: Any, objs: Sequence[Any]) -> None:
        """Write ``len(objs)`` elements into the writable buffer ``buf`` (no intermediate bytes for ints)."""
        if self._int:
            assert isinstance(self.codec, IntCodec)
            try:
                struct.pack_into(f"={len(objs)}{self.codec.code}", buf, 0, *objs)
            except _BAD as exc:
                raise EBPFError(f"cannot encode {self.codec!r} batch: {exc}") from None
            return
        data = self.encode_many(objs)
        memoryview(buf).cast("B")[: len(data)] = data

    def decode_many(self, buf: bytes | bytearray | memoryview | Any, count: int) -> list[Any]:
        """The first ``count`` elements of ``buf``."""
        view = memoryview(buf).cast("B")[: count * self.elem_size]
        if self._int:
            assert isinstance(self.codec, IntCodec)
            return view.cast(self.codec.code).tolist()
        size = self.elem_size
        decode = self.decode
        return [decode(view[i * size : (i + 1) * size]) for i in range(count)]

    def decode_column(self, buf: Any, count: int) -> MutableSequence[Any]:
        """The first ``count`` elements of ``buf`` as a :meth:`column` (integers: one copy, no decoding)."""
        if self._array_code is not None:
            col = array.array(self._array_code)
            col.frombytes(memoryview(buf).cast("B")[: count * self.elem_size])
            return col
        return self.decode_many(buf, count)

    def decode_iter(self, objs: Iterable[bytes]) -> list[Any]:
        """Decode each of ``objs``."""
        return [self.decode(o) for o in objs]
