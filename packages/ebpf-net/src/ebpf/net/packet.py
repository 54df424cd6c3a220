"""A packet-processing DSL on top of :mod:`ebpf.core.asm`: header parsing with the bounds checks the
verifier demands, fields by name, checksum-correct rewrites and the NAT step.

    from ebpf.net.packet import Packet
    p = Packet("xdp")                        # or "tc" (sched_cls/sched_act: checksums through helpers)
    udp = p.ethernet().ipv4().udp()          # a wrong EtherType/protocol or a short packet jumps to p.miss
    p.jump_if(udp.dport, "!=", 5000, p.miss)
    p.set(udp.dport, 6000)                   # writes the field and fixes the UDP checksum
    insns = p.program(on_miss=XdpAction.PASS, verdict=XdpAction.PASS)

Values are in host order: ``p.load(R3, tcp.dport)`` leaves the port as a number, ``p.set`` takes
an int or a register holding one.  Registers: the DSL owns r6 (context), r7 (packet start),
r8 (L4 header) and r9 (L4 offset) and the stack slots fp-8..fp-24; instructions added with
:meth:`Packet.emit` may use r0-r5 and the rest of the stack.  For TC programs the IPv4 and L4
checksums are updated with ``bpf_l3_csum_replace``/``bpf_l4_csum_replace`` (correct for offloaded
checksums too); for XDP they are computed in the program (RFC 1624 incremental update).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ebpf.core.asm import (
    DW,
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    B,
    H,
    Instruction,
    Label,
    W,
    add64,
    and64,
    be16,
    be32,
    call,
    exit_,
    ja,
    jeq,
    jeq32,
    jge32,
    jgt,
    jgt32,
    jle32,
    jlt,
    jlt32,
    jne,
    jne32,
    label,
    ldx_mem,
    lsh64,
    mov32,
    mov64,
    rsh64,
    stx_mem,
    xor64,
)  # fmt: skip
from ebpf.core.asm.opcodes import Reg
from ebpf.core.errors import EBPFError
from ebpf.core.records import dataclass

__all__ = ["Packet", "Header", "Field", "PacketError", "ETH_P_IP", "ETH_P_IPV6", "ETH_P_8021Q", "ETH_P_8021AD"]

Item = Instruction | Label
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
_SIZES = {1: B, 2: H, 4: W}
_CTX = {"xdp": (0, 4), "tc": (76, 80), "sched_cls": (76, 80), "sched_act": (76, 80)}
_BPF_F_PSEUDO_HDR, _BPF_F_MARK_MANGLED_0 = 0x10, 0x20
_JUMPS = {"==": jeq32, "!=": jne32, ">": jgt32, ">=": jge32, "<": jlt32, "<=": jle32}
_OLD, _NEW, _WORD = -8, -16, -24  # stack slots of the DSL (old/new values around helper calls)


class PacketError(EBPFError):
    """A DSL misuse: a field the header does not have, a header in the wrong place, a bad value."""


# name -> (offset, size) per header kind; sizes 6 and 16 are byte strings (swap only).
_LAYOUTS: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {
    "Ethernet": (14, {"dst": (0, 6), "src": (6, 6), "type": (12, 2)}),
    "VLAN": (4, {"tci": (0, 2), "type": (2, 2)}),
    "IPv4": (20, {"version_ihl": (0, 1), "tos": (1, 1), "tot_len": (2, 2), "id": (4, 2), "frag_off": (6, 2),
                  "ttl": (8, 1), "protocol": (9, 1), "check": (10, 2), "saddr": (12, 4), "daddr": (16, 4)}),
    "IPv6": (40, {"version_tc_flow": (0, 4), "payload_len": (4, 2), "nexthdr": (6, 1), "hop_limit": (7, 1),
                  "saddr": (8, 16), "daddr": (24, 16)}),
    "TCP": (20, {"sport": (0, 2), "dport": (2, 2), "seq": (4, 4), "ack_seq": (8, 4), "doff_flags": (12, 2),
                 "window": (14, 2), "check": (16, 2), "urg_ptr": (18, 2)}),
    "UDP": (8, {"sport": (0, 2), "dport": (2, 2), "len": (4, 2), "check": (6, 2)}),
}  # fmt: skip


@dataclass(frozen=True)
class Field:
    """One field of a parsed header: ``offset`` inside the header, ``size`` in bytes."""

    header: Header
    name: str
    offset: int
    size: int

    def __repr__(self) -> str:
        return f"<{self.header.kind}.{self.name}>"

    def word(self, index: int) -> Field:
        """The ``index``-th 32-bit word of a 16-byte field (IPv6 addresses), as a field of its own."""
        if self.size != 16 or not 0 <= index < 4:
            raise PacketError(f"{self!r}: word(i) is for 16-byte fields, i in 0..3")
        return Field(self.header, f"{self.name}[{index}]", self.offset + 4 * index, 4)


class Header:
    """A parsed header; its fields are attributes (``ip.daddr``), and it parses the next one."""

    def __init__(self, packet: Packet, kind: str, offset: int, l4: bool, parent: Header | None) -> None:
        self.packet, self.kind, self.offset, self.l4, self.parent = packet, kind, offset, l4, parent
        self.length, self._fields = _LAYOUTS[kind]

    def __repr__(self) -> str:
        where = "L4 offset" if self.l4 else f"offset {self.offset}"
        return f"<{self.kind} header at {where}>"

    def __getattr__(self, name: str) -> Field:
        fields = self.__dict__.get("_fields")
        if fields is None or name.startswith("_"):
            raise AttributeError(name)
        if name not in fields:
            raise PacketError(f"the {self.kind} header has no field {name!r}; it has: {', '.join(fields)}")
        offset, size = fields[name]
        return Field(self, name, offset, size)

    @property
    def fields(self) -> list[str]:
        """The names of this header's fields."""
        return list(self._fields)

    def _next_l3(self, kind: str, ethertypes: Iterable[int]) -> Header:
        if self.kind not in ("Ethernet", "VLAN"):
            raise PacketError(f"{kind} follows an Ethernet or VLAN header, not {self.kind}")
        self.packet._check_type(self.type, ethertypes)
        return self.packet._parse(kind, self.offset + self.length, self)

    def vlan(self) -> Header:
        """Parse one 802.1Q/802.1ad tag after this Ethernet header (miss when there is none)."""
        return self._next_l3("VLAN", (ETH_P_8021Q, ETH_P_8021AD))

    def ipv4(self) -> Header:
        """Parse an IPv4 header (options allowed; the L4 offset follows the IHL)."""
        return self._next_l3("IPv4", (ETH_P_IP,))

    def ipv6(self) -> Header:
        """Parse a fixed IPv6 header (the next header must be the transport header)."""
        return self._next_l3("IPv6", (ETH_P_IPV6,))

    def _next_l4(self, kind: str, proto: int) -> Header:
        if self.kind not in ("IPv4", "IPv6"):
            raise PacketError(f"{kind} follows an IPv4 or IPv6 header, not {self.kind}")
        return self.packet._parse_l4(kind, proto, self)

    def tcp(self) -> Header:
        """Parse a TCP header (miss for other protocols and non-first fragments)."""
        return self._next_l4("TCP", 6)

    def udp(self) -> Header:
        """Parse a UDP header (miss for other protocols and non-first fragments)."""
        return self._next_l4("UDP", 17)


def _value(value: object, size: int, what: str) -> int:
    if isinstance(value, str) and size in (4, 16):
        try:
            value = int(ipaddress.ip_address(value))
        except ValueError as exc:
            raise PacketError(f"{what}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise PacketError(f"{what}: expected an int of {size} byte(s), a register, or an address, got {value!r}")
    return value


def _raw(value: int, size: int) -> int:
    """The value as the register holds it after a plain load from the packet (network order, little-endian host)."""
    return int.from_bytes(value.to_bytes(size, "big"), "little")


class Packet:
    """An instruction builder for XDP (``"xdp"``) or TC (``"tc"``) programs that touch packet headers.

    :param ctx: ``"xdp"`` or ``"tc"`` (``"sched_cls"``/``"sched_act"``), or the register holding the
        context (``Packet(R1, kind="tc")``; r1 at program start).
    :param kind: with a register ``ctx``: the program kind (default ``"xdp"``).
    :param miss: the label jumped to when a header is missing or the packet is too short.
    :raises PacketError: unknown context kind.
    """

    def __init__(self, ctx: str | Reg = "xdp", miss: str = "packet_miss", kind: str | None = None) -> None:
        reg = R1
        if isinstance(ctx, Reg):  # Packet(R1, kind="tc"): the register that holds the context
            if ctx in (R0, R7, R8, R9, R10):
                raise PacketError(f"the context register is r1-r6, not {ctx!r}")
            reg, ctx = ctx, kind if kind is not None else "xdp"
        elif kind is not None and kind != ctx:
            raise PacketError(f"kind={kind!r} goes with a context register, not with ctx={ctx!r}")
        if not isinstance(ctx, str) or ctx not in _CTX:
            raise PacketError(f"unknown packet context {ctx!r}; expected 'xdp' or 'tc'")
        if not isinstance(miss, str) or not miss:
            raise PacketError("the miss label is a non-empty str")
        self.ctx, self.miss = ctx, miss
        self.tc = ctx != "xdp"
        self._data_off, self._end_off = _CTX[ctx]
        self._insns: list[Item] = [mov64(R6, reg)]
        self._l3_end = 0  # bytes from the start known to be in bounds (static part)
        self._l4: Header | None = None
        self._ip: Header | None = None
        self._eth: Header | None = None
        self._labels = 0
        self._load_data()

    # -- building blocks -----------------------------------------------------------------------
    @property
    def insns(self) -> list[Item]:
        """The instructions built so far (a copy)."""
        return list(self._insns)

    def emit(self, *items: Item | Iterable[Item]) -> Packet:
        """Append user instructions (they may use r0-r5 and the stack below fp-24)."""
        for item in items:
            if isinstance(item, (Instruction, Label)):
                self._insns.append(item)
            else:
                self._insns.extend(item)
        return self

    def ret(self, value: int) -> Packet:
        """Append ``return value``."""
        self._insns += [mov64(R0, int(value)), exit_()]
        return self

    def program(self, on_miss: int, verdict: int | None = None) -> list[Item]:
        """The finished program: the instructions, ``return verdict`` (when given) and the miss handler.

        :param on_miss: what the program returns when parsing missed (e.g. ``XdpAction.PASS``).
        """
        tail: list[Item] = [] if verdict is None else [mov64(R0, int(verdict)), exit_()]
        return [*self._insns, *tail, label(self.miss), mov64(R0, int(on_miss)), exit_()]

    def _fresh(self, name: str) -> str:
        self._labels += 1
        return f"{self.miss}_{name}{self._labels}"

    def _load_data(self) -> None:
        self._insns.append(ldx_mem(W, R7, R6, self._data_off))

    def _end(self, reg: Reg) -> Instruction:
        return ldx_mem(W, reg, R6, self._end_off)

    def _bounds(self, upto: int) -> list[Item]:
        """Miss unless ``upto`` bytes from the packet start are there."""
        return [mov64(R2, R7), add64(R2, upto), self._end(R3), jgt(R2, R3, self.miss)]

    def _l4_bounds(self, length: int) -> list[Item]:
        return [mov64(R8, R7), add64(R8, R9), mov64(R2, R8), add64(R2, length), self._end(R3),
                jgt(R2, R3, self.miss)]  # fmt: skip

    def _revalidate(self) -> None:
        """Packet pointers die at helper calls that may move the data: load and check them again."""
        self._load_data()
        self._insns += self._bounds(self._l3_end)
        if self._l4 is not None:
            self._insns += self._l4_bounds(self._l4.length)

    # -- parsing -------------------------------------------------------------------------------
    def ethernet(self) -> Header:
        """Parse the Ethernet header at the start of the packet.

        :raises PacketError: called twice.
        """
        if self._eth is not None:
            raise PacketError("the Ethernet header is already parsed")
        self._eth = self._parse("Ethernet", 0, None)
        return self._eth

    def _parse(self, kind: str, offset: int, parent: Header | None) -> Header:
        if self._l4 is not None or (parent is not None and parent.kind in ("IPv4", "IPv6")):
            raise PacketError(f"{kind}: only one chain of headers per packet")
        hdr = Header(self, kind, offset, False, parent)
        self._l3_end = max(self._l3_end, offset + hdr.length)
        self._insns += self._bounds(offset + hdr.length)
        if kind == "IPv4":
            self._ip = hdr
            # r9 = L4 offset from the IHL; reject IHL < 5 and fragments after the first.
            self._insns += [
                ldx_mem(B, R9, R7, offset), and64(R9, 0x0F), lsh64(R9, 2),
                jlt(R9, 20, self.miss),
                ldx_mem(H, R2, R7, offset + 6), be16(R2), and64(R2, 0x1FFF), jne(R2, 0, self.miss),
                add64(R9, offset),
            ]  # fmt: skip
        elif kind == "IPv6":
            self._ip = hdr
            self._insns.append(mov64(R9, offset + hdr.length))
        return hdr

    def _parse_l4(self, kind: str, proto: int, ip: Header) -> Header:
        if self._l4 is not None:
            raise PacketError(f"{kind}: the transport header is already parsed ({self._l4.kind})")
        self.jump_if(ip.protocol if ip.kind == "IPv4" else ip.nexthdr, "!=", proto, self.miss)
        hdr = Header(self, kind, 0, True, ip)
        self._l4 = hdr
        self._insns += self._l4_bounds(hdr.length)
        return hdr

    def _check_type(self, field: Field, allowed: Iterable[int]) -> None:
        ok = self._fresh("type_ok")
        self._insns.append(ldx_mem(H, R2, R7, field.header.offset + field.offset))
        self._insns += [jeq(R2, _raw(t, 2), ok) for t in allowed]
        self._insns += [ja(self.miss), label(ok)]

    # -- fields --------------------------------------------------------------------------------
    def _field(self, field: object, sizes: tuple[int, ...] = (1, 2, 4)) -> tuple[Field, Reg, int]:
        if not isinstance(field, Field) or field.header.packet is not self:
            raise PacketError(f"expected a field of a header parsed by this Packet, got {field!r}")
        if field.size not in sizes:
            raise PacketError(f"{field!r} is {field.size} bytes; this operation takes fields of {sizes} bytes")
        if field.header.l4:
            return field, R8, field.offset
        return field, R7, field.header.offset + field.offset

    def load(self, reg: Reg, field: Field, raw: bool = False) -> Packet:
        """``reg = field`` in host order (``raw=True``: as stored, network order).

        :raises PacketError: not a 1, 2 or 4-byte field of this packet.
        """
        f, base, off = self._field(field)
        self._insns.append(ldx_mem(_SIZES[f.size], reg, base, off))
        if not raw and f.size > 1:
            self._insns.append(be16(reg) if f.size == 2 else be32(reg))
        return self

    def jump_if(self, field: Field, op: str, value: int | str, target: str) -> Packet:
        """``if field <op> value goto target`` (host order; ``op`` one of == != < <= > >=).  Uses r0."""
        if op not in _JUMPS:
            raise PacketError(f"unknown comparison {op!r}; expected one of: {', '.join(_JUMPS)}")
        f, _, _ = self._field(field)
        self.load(R0, f)
        self._insns.append(_JUMPS[op](R0, _value(value, f.size, repr(f)), target))
        return self

    def set(self, field: Field, value: int | str | bytes | Reg) -> Packet:
        """Write ``field`` (an int, an address string, or a register in host order) and update the checksums
        that cover it: the IPv4 header checksum for IPv4 fields, the L4 checksum for L4 fields and for the
        addresses (pseudo header).  MACs take ``"02:00:00:00:00:01"`` or 6 bytes; IPv6 addresses an
        address string (written word by word).  Uses r0-r5.

        :raises PacketError: not a field of this packet, or a bad value.
        """
        f, _, _ = self._field(field, (1, 2, 4, 6, 16))
        if f.size == 6:
            return self._set_mac(f, value)
        if f.size == 16:
            raw = _value(value, 16, repr(f)).to_bytes(16, "big")
            for i in range(4):
                self.set(f.word(i), int.from_bytes(raw[4 * i : 4 * i + 4], "big"))
            return self
        self._new_value(f, value)
        if self.tc:
            self._set_tc(f)
        else:
            self._set_xdp(f)
        return self

    def _set_mac(self, f: Field, value: object) -> Packet:
        if isinstance(value, str):
            try:
                value = bytes.fromhex(value.replace(":", "").replace("-", ""))
            except ValueError:
                raise PacketError(f"{f!r}: {value!r} is not a MAC address") from None
        if not isinstance(value, (bytes, bytearray)) or len(value) != 6:
            raise PacketError(f"{f!r}: a MAC address is 6 bytes or 'aa:bb:cc:dd:ee:ff', not {value!r}")
        _, base, off = self._field(f, (6,))
        self._insns += [mov32(R0, int.from_bytes(value[:4], "little")), stx_mem(W, base, R0, off),
                        mov32(R0, int.from_bytes(value[4:], "little")), stx_mem(H, base, R0, off + 4)]  # fmt: skip
        return self

    def _new_value(self, f: Field, value: int | str | bytes | Reg) -> None:
        """Put the new value, network order, in the fp-16 slot."""
        if isinstance(value, Reg):
            self._insns.append(mov64(R5, value))
            if f.size > 1:
                self._insns.append(be16(R5) if f.size == 2 else be32(R5))
        else:
            self._insns.append(mov32(R5, _raw(_value(value, f.size, repr(f)), f.size)))
        self._insns += [mov64(R0, 0), stx_mem(DW, R10, R0, _NEW), stx_mem(_SIZES[f.size], R10, R5, _NEW)]

    def _checksums(self, f: Field) -> tuple[Field | None, Field | None, bool]:
        """(IPv4 check field, L4 check field, pseudo header) that ``f`` is covered by."""
        if f.header.l4:
            return None, f.header.check, False
        if f.header.kind == "IPv4":
            pseudo = f.name in ("saddr", "daddr")
            l4 = self._l4.check if pseudo and self._l4 is not None else None
            return f.header.check, l4, pseudo
        if f.header.kind == "IPv6" and f.name.startswith(("saddr", "daddr")):
            return None, self._l4.check if self._l4 is not None else None, True
        return None, None, False

    # TC: the kernel's csum helpers, then a direct store.
    def _set_tc(self, f: Field) -> None:
        _, base, off = self._field(f)
        l3, l4, pseudo = self._checksums(f)
        word = f.size if f.size != 1 else 2
        woff = off - (off % 2) if f.size == 1 else off
        self._insns += [mov64(R0, 0), stx_mem(DW, R10, R0, _OLD), ldx_mem(_SIZES[word], R0, base, woff),
                        stx_mem(_SIZES[word], R10, R0, _OLD)]  # fmt: skip
        if f.size == 1:  # a byte field: the checksums see its 16-bit word, old and new
            self._insns += [ldx_mem(H, R0, R10, _OLD), stx_mem(H, R10, R0, _WORD),
                            ldx_mem(B, R0, R10, _NEW), stx_mem(B, R10, R0, _WORD + off % 2)]  # fmt: skip
        new_slot = _WORD if f.size == 1 else _NEW
        if l4 is not None:
            flags = word | (_BPF_F_PSEUDO_HDR if pseudo else 0) | (_BPF_F_MARK_MANGLED_0 if l4.header.kind == "UDP" else 0)
            self._insns += [mov64(R1, R6), mov64(R2, R9), add64(R2, l4.offset), ldx_mem(_SIZES[word], R3, R10, _OLD),
                            ldx_mem(_SIZES[word], R4, R10, new_slot), mov64(R5, flags), call("l4_csum_replace")]  # fmt: skip
        if l3 is not None:
            self._insns += [mov64(R1, R6), mov64(R2, l3.header.offset + l3.offset),
                            ldx_mem(_SIZES[word], R3, R10, _OLD), ldx_mem(_SIZES[word], R4, R10, new_slot),
                            mov64(R5, word), call("l3_csum_replace")]  # fmt: skip
        if l3 is not None or l4 is not None:
            self._revalidate()
        _, base, off = self._field(f)
        self._insns += [ldx_mem(_SIZES[f.size], R0, R10, _NEW), stx_mem(_SIZES[f.size], base, R0, off)]

    # XDP: store, then RFC 1624 over each 16-bit word the field covers.
    def _set_xdp(self, f: Field) -> None:
        _, base, off = self._field(f)
        l3, l4, _ = self._checksums(f)
        first = off - (off % 2)
        words = [first + 2 * i for i in range(max(1, (off + f.size - first + 1) // 2))]
        for i, w in enumerate(words):  # old words to fp-24.. (two at most)
            self._insns += [ldx_mem(H, R0, base, w), stx_mem(H, R10, R0, _WORD + 2 * i)]
        self._insns += [ldx_mem(_SIZES[f.size], R0, R10, _NEW), stx_mem(_SIZES[f.size], base, R0, off)]
        for check in (c for c in (l3, l4) if c is not None):
            self._csum_update(check, base, words)

    def _csum_update(self, check: Field, base: Reg, words: list[int]) -> None:
        _, cbase, coff = self._field(check)
        skip = self._fresh("csum_done")
        ins: list[Item] = [ldx_mem(H, R4, cbase, coff)]
        if check.header.kind == "UDP":
            ins.append(jeq(R4, 0, skip))  # UDP over IPv4 without a checksum stays without one
        ins.append(xor64(R4, 0xFFFF))
        for i, w in enumerate(words):
            ins += [ldx_mem(H, R2, R10, _WORD + 2 * i), xor64(R2, 0xFFFF), add64(R4, R2),
                    ldx_mem(H, R2, base, w), add64(R4, R2)]  # fmt: skip
        for _ in range(2):
            ins += [mov64(R2, R4), rsh64(R2, 16), and64(R4, 0xFFFF), add64(R4, R2)]
        ins += [xor64(R4, 0xFFFF), and64(R4, 0xFFFF)]
        if check.header.kind == "UDP":
            nonzero = self._fresh("csum_nonzero")
            ins += [jne(R4, 0, nonzero), mov64(R4, 0xFFFF), label(nonzero)]
        ins += [stx_mem(H, cbase, R4, coff), label(skip)]
        self._insns += ins

    def swap(self, a: Field, b: Field) -> Packet:
        """Exchange two fields of the same size (MACs, addresses, ports); checksums hold, sums commute."""
        fa, ba, oa = self._field(a, (1, 2, 4, 6, 16))
        fb, bb, ob = self._field(b, (1, 2, 4, 6, 16))
        if fa.size != fb.size:
            raise PacketError(f"swap: {fa!r} is {fa.size} bytes, {fb!r} is {fb.size}")
        done = 0
        while done < fa.size:
            step = 4 if fa.size - done >= 4 else 2 if fa.size - done >= 2 else 1
            size = _SIZES[step]
            self._insns += [ldx_mem(size, R2, ba, oa + done), ldx_mem(size, R3, bb, ob + done),
                            stx_mem(size, ba, R3, oa + done), stx_mem(size, bb, R2, ob + done)]  # fmt: skip
            done += step
        return self

    def nat(self, *, saddr: int | str | bytes | Reg | None = None, daddr: int | str | bytes | Reg | None = None,
            sport: int | Reg | None = None, dport: int | Reg | None = None) -> Packet:
        """The NAT step: rewrite any of the addresses and ports, fixing the IPv4 and L4 checksums.

        :raises PacketError: no IPv4 and transport header parsed, or a bad value.
        """
        if self._ip is None or self._ip.kind != "IPv4" or self._l4 is None:
            raise PacketError("nat() needs ethernet().ipv4() and .tcp() or .udp() parsed first")
        for name, value in (("saddr", saddr), ("daddr", daddr)):
            if value is not None:
                self.set(getattr(self._ip, name), value)
        for name, value in (("sport", sport), ("dport", dport)):
            if value is not None:
                self.set(getattr(self._l4, name), value)
        return self
